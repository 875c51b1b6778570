//! The HTTP API's settings (`apiServer.*`) and the GUI redirect's
//! (`guiServer.*`).

use crate::settings::{ConfigError, in_range};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiServerConfig {
    /// Port of the HTTP API (and /metrics).
    pub port: u16,
    /// Refuse writes even in Universal mode.
    pub read_only: bool,
    /// Larger request bodies are refused with 413.
    pub max_request_body_bytes: usize,
    /// Page size of a list that asks for none.
    pub default_page_size: usize,
    /// Largest page a list may ask for.
    pub max_page_size: usize,
    /// Requests served at once; more are answered 503 at once rather than
    /// queued behind them.
    pub max_concurrent_requests: usize,
    /// A request that takes longer is answered 503.
    pub request_timeout_ms: u64,
    /// Who a request is from.
    pub authn: ApiAuthnConfig,
    /// The API over HTTPS, where clients may present a certificate.
    pub https: ApiHttpsConfig,
    /// Client certificates of the HTTPS port.
    pub auth: ApiAuthConfig,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 5681,
            read_only: false,
            max_request_body_bytes: 1024 * 1024,
            default_page_size: 100,
            max_page_size: 1000,
            max_concurrent_requests: 512,
            request_timeout_ms: 30_000,
            authn: ApiAuthnConfig::default(),
            https: ApiHttpsConfig::default(),
            auth: ApiAuthConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiAuthnConfig {
    /// A request from loopback without credentials is the admin. A request
    /// with credentials is always their user.
    pub localhost_is_admin: bool,
    pub tokens: ApiAuthnTokensConfig,
}

impl Default for ApiAuthnConfig {
    fn default() -> Self {
        ApiAuthnConfig {
            localhost_is_admin: true,
            tokens: ApiAuthnTokensConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiAuthnTokensConfig {
    /// Keep an admin user token in the global secret `admin-user-token`
    /// (on Kubernetes, the Secret of that name in the system namespace),
    /// so the first admin can reach the API from another host.
    pub bootstrap_admin_token: bool,
}

impl Default for ApiAuthnTokensConfig {
    fn default() -> Self {
        ApiAuthnTokensConfig {
            bootstrap_admin_token: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiHttpsConfig {
    /// Serve the API over HTTPS too.
    pub enabled: bool,
    /// Its port (5682, Kuma's, is the bootstrap server's here).
    pub port: u16,
    /// The address it listens on.
    pub interface: String,
    /// Server certificate (PEM); a self-signed one for localhost and this
    /// host is generated when unset.
    pub tls_cert_file: String,
    /// Key of that certificate (PEM).
    pub tls_key_file: String,
    /// Refuse clients without a certificate from apiServer.auth.clientCertsDir.
    pub require_client_cert: bool,
}

impl Default for ApiHttpsConfig {
    fn default() -> Self {
        ApiHttpsConfig {
            enabled: false,
            port: 5683,
            interface: "0.0.0.0".into(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            require_client_cert: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiAuthConfig {
    /// A directory of CA certificates (.pem, .crt): a client certificate
    /// they sign is the user of its common name, in the groups of its
    /// organizations (O).
    pub client_certs_dir: String,
}

/// The GUI is served by the HTTP API at `/gui/`; this port, where Kuma
/// 0.3 served it, redirects there. Not opened when the HTTPS API has the
/// same port (which serves `/gui/` itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GuiServerConfig {
    /// Port that redirects browsers to the GUI at the HTTP API's /gui/.
    pub port: u16,
}

impl Default for GuiServerConfig {
    fn default() -> Self {
        GuiServerConfig { port: 5683 }
    }
}

impl ApiServerConfig {
    /// Checks what the types cannot say; `key` is where these settings sit.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        in_range(
            &format!("{key}.maxConcurrentRequests"),
            self.max_concurrent_requests as u64,
            1..=1_000_000,
        )?;
        in_range(
            &format!("{key}.requestTimeoutMs"),
            self.request_timeout_ms,
            1..=3_600_000,
        )?;
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return Err(ConfigError::invalid(
                &format!("{key}.defaultPageSize"),
                format!(
                    "must be between 1 and {key}.maxPageSize ({})",
                    self.max_page_size
                ),
            ));
        }
        Ok(())
    }
}
