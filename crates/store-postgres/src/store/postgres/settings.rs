//! The PostgreSQL store's settings (`store.postgres.*`).

use crate::settings::{ConfigError, in_range};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Host of the PostgreSQL server.
    pub host: String,
    /// Port of the PostgreSQL server.
    pub port: u16,
    /// The user to connect as.
    pub user: String,
    /// Password of that user.
    pub password: String,
    /// The database holding Kuma's tables.
    pub db_name: String,
    /// Seconds to wait for a connection before answering 503.
    pub connection_timeout: u64,
    /// Size of the connection pool.
    pub max_open_connections: usize,
    pub tls: PostgresTlsConfig,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "kuma".into(),
            password: "kuma".into(),
            db_name: "kuma".into(),
            connection_timeout: 5,
            max_open_connections: 50,
            tls: PostgresTlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresTlsConfig {
    pub mode: PostgresTlsMode,
    /// CA certificate (PEM) the server's certificate is verified with.
    pub ca_path: String,
    /// Client certificate (PEM), for servers that ask for one.
    pub cert_path: String,
    /// Key of the client certificate (PEM).
    pub key_path: String,
}

impl Default for PostgresTlsConfig {
    fn default() -> Self {
        PostgresTlsConfig {
            mode: PostgresTlsMode::Disable,
            ca_path: String::new(),
            cert_path: String::new(),
            key_path: String::new(),
        }
    }
}

/// Kuma's TLS modes for the Postgres connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum PostgresTlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// Encrypted; any server certificate is accepted.
    VerifyNone,
    /// The server certificate must chain to the CA; any host name.
    VerifyCa,
    /// Chain and host name are checked.
    VerifyFull,
}

impl PostgresConfig {
    /// Checks what the types cannot say; `key` is where these settings sit.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        in_range(
            &format!("{key}.connectionTimeout"),
            self.connection_timeout,
            1..=3600,
        )
    }
}
