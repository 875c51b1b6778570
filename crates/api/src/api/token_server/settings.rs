//! The dataplane token server's settings (`dataplaneTokenServer.*`).

use crate::security::tokens::MAX_TOKEN_VALIDITY_SECONDS;
use crate::settings::{ConfigError, in_range};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DataplaneTokenServerConfig {
    pub local: TokenServerLocalConfig,
    pub public: TokenServerPublicConfig,
    /// Validity of tokens whose request names none.
    pub token_validity_seconds: u64,
}

impl Default for DataplaneTokenServerConfig {
    fn default() -> Self {
        DataplaneTokenServerConfig {
            local: TokenServerLocalConfig { port: 5679 },
            public: TokenServerPublicConfig::default(),
            token_validity_seconds: 10 * 365 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TokenServerLocalConfig {
    /// Port of the dataplane token server on localhost.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TokenServerPublicConfig {
    /// Also serve tokens over HTTPS to other machines (client certificates required).
    pub enabled: bool,
    /// The address it listens on.
    pub interface: String,
    /// 0 means the same port as the local server.
    pub port: u16,
    /// Server certificate (PEM) of the public token server.
    pub tls_cert_file: String,
    /// Key of that certificate (PEM).
    pub tls_key_file: String,
    /// A directory of the client certificates (.pem, .crt) it accepts.
    pub client_certs_dir: String,
}

impl DataplaneTokenServerConfig {
    /// Checks what the types cannot say; `key` is where these settings sit.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        in_range(
            &format!("{key}.tokenValiditySeconds"),
            self.token_validity_seconds,
            1..=MAX_TOKEN_VALIDITY_SECONDS,
        )?;
        let public = &self.public;
        if public.enabled
            && (public.interface.is_empty()
                || public.tls_cert_file.is_empty()
                || public.tls_key_file.is_empty()
                || public.client_certs_dir.is_empty())
        {
            return Err(ConfigError::Invalid {
                key: format!("{key}.public"),
                var: crate::settings::env_var_name(&format!("{key}.public.enabled")),
                message: "the public server needs KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_INTERFACE, _TLS_CERT_FILE, _TLS_KEY_FILE and _CLIENT_CERTS_DIR".into(),
            });
        }
        Ok(())
    }
}
