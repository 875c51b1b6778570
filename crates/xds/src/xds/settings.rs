//! The settings of the servers proxies talk to: ADS (`xdsServer.*`), SDS
//! (`sdsServer.*`) and how their streams authenticate (`dpServer.*`).

use crate::settings::{ConfigError, in_range};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct XdsServerConfig {
    /// Port of the ADS server (gRPC) Envoys connect to.
    pub grpc_port: u16,
    /// Health endpoints `/healthy` and `/ready`.
    pub diagnostics_port: u16,
    /// After a change, wait this long for more before rebuilding proxies,
    /// so a burst costs one rebuild.
    pub debounce_ms: u64,
    /// Dataplane insights are written at most this often per stream.
    pub insight_flush_interval_ms: u64,
}

impl Default for XdsServerConfig {
    fn default() -> Self {
        XdsServerConfig {
            grpc_port: 5678,
            diagnostics_port: 5680,
            debounce_ms: 10,
            insight_flush_interval_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SdsServerConfig {
    /// Port of the SDS server (gRPC), for Envoys that ask secrets apart.
    pub grpc_port: u16,
    /// Lifetime of a workload certificate.
    pub cert_validity_seconds: u64,
    /// A certificate is renewed when it has less than this left.
    pub cert_renewal_margin_seconds: u64,
}

impl Default for SdsServerConfig {
    fn default() -> Self {
        SdsServerConfig {
            grpc_port: 5677,
            cert_validity_seconds: 24 * 3600,
            cert_renewal_margin_seconds: 8 * 3600,
        }
    }
}

/// How data planes prove who they are on xDS and SDS streams.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpServerConfig {
    pub auth: DpAuthConfig,
    /// Serve ADS, SDS and the bootstrap in plain text, for local
    /// development only: every dataplane token and workload private key
    /// then crosses the network readable by anyone on it. Logged loudly.
    pub insecure_plaintext: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DpAuthConfig {
    #[serde(rename = "type")]
    pub auth_type: DpAuthType,
}

/// How data planes prove who they are on xDS and SDS streams.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum DpAuthType {
    /// `serviceAccountToken` with the kubernetes store, `dpToken` otherwise.
    #[default]
    Auto,
    /// A dataplane token on every stream.
    DpToken,
    /// Kubernetes: the pod's service-account token, checked with a
    /// TokenReview against the pod behind the Dataplane.
    ServiceAccountToken,
    /// Any stream naming a registered dataplane is served.
    None,
}

/// Longest workload certificate: the lifetime of a mesh CA (ten years).
pub const MAX_CERT_VALIDITY_SECONDS: u64 = 10 * 365 * 24 * 3600;

impl XdsServerConfig {
    /// Checks what the types cannot say; `key` is where these settings sit.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        in_range(&format!("{key}.debounceMs"), self.debounce_ms, 0..=60_000)?;
        in_range(
            &format!("{key}.insightFlushIntervalMs"),
            self.insight_flush_interval_ms,
            1..=3_600_000,
        )
    }
}

impl SdsServerConfig {
    /// Checks what the types cannot say; `key` is where these settings sit.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        in_range(
            &format!("{key}.certValiditySeconds"),
            self.cert_validity_seconds,
            1..=MAX_CERT_VALIDITY_SECONDS,
        )?;
        if self.cert_renewal_margin_seconds >= self.cert_validity_seconds {
            return Err(ConfigError::invalid(
                &format!("{key}.certRenewalMarginSeconds"),
                format!(
                    "must be less than {key}.certValiditySeconds ({})",
                    self.cert_validity_seconds
                ),
            ));
        }
        Ok(())
    }
}
