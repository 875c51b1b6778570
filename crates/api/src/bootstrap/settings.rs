//! The bootstrap server's settings (`bootstrapServer.*`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapServerConfig {
    /// Port of the bootstrap server kuma-dp asks (`POST /bootstrap`).
    pub port: u16,
    pub xds_api_type: XdsApiType,
    /// What the bootstrap tells Envoy to connect to.
    pub params: BootstrapParams,
}

impl Default for BootstrapServerConfig {
    fn default() -> Self {
        BootstrapServerConfig {
            port: 5682,
            xds_api_type: XdsApiType::Delta,
            params: BootstrapParams::default(),
        }
    }
}

/// The xDS address in the bootstraps, when the Envoys reach the control
/// planes through a load balancer rather than this one's own port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapParams {
    /// Empty: general.advertisedHostname.
    pub xds_host: String,
    /// 0: this control plane's xDS port.
    pub xds_port: u16,
}

/// Which ADS flavour the bootstraps tell Envoy to speak.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum XdsApiType {
    /// Incremental xDS.
    #[default]
    Delta,
    /// State of the world.
    Sotw,
}
