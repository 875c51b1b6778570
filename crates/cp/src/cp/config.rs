//! The settings of `kuma-cp`: each component's own settings, gathered
//! into one [`Config`] (see [`crate::settings`] for how they are read: the
//! `KUMA_*` variables and the help text are derived from these types).

use crate::api::settings::{ApiServerConfig, GuiServerConfig};
use crate::api::token_server::DataplaneTokenServerConfig;
use crate::bootstrap::BootstrapServerConfig;
#[cfg(feature = "kubernetes")]
use crate::injector::InjectorConfig;
use crate::security::settings::GeneralConfig;
use crate::settings::{ConfigError, LoggingConfig, Settings};
#[cfg(feature = "universal")]
use crate::store::postgres::PostgresConfig;
use crate::xds::settings::{DpAuthType, DpServerConfig, SdsServerConfig, XdsServerConfig};
use serde::{Deserialize, Serialize};

/// Where `kuma-cp` runs: plain machines, or as a Kubernetes controller.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Environment {
    #[default]
    Universal,
    Kubernetes,
}

/// Where resources are kept.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum StoreType {
    #[default]
    Memory,
    Postgres,
    Kubernetes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    pub environment: Environment,
    /// Kubernetes mode: the namespace of the control plane, where it keeps
    /// its secrets (mesh CAs, token keys) and its leader lease.
    pub system_namespace: String,
    pub store: StoreConfig,
    pub api_server: ApiServerConfig,
    pub xds_server: XdsServerConfig,
    pub sds_server: SdsServerConfig,
    pub bootstrap_server: BootstrapServerConfig,
    pub gui_server: GuiServerConfig,
    pub dataplane_token_server: DataplaneTokenServerConfig,
    #[cfg(feature = "kubernetes")]
    pub injector: InjectorConfig,
    pub dp_server: DpServerConfig,
    pub general: GeneralConfig,
    pub defaults: DefaultsConfig,
    pub logging: LoggingConfig,
    pub leader_election: LeaderElectionConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: Environment::Universal,
            system_namespace: "kuma-system".into(),
            store: StoreConfig::default(),
            api_server: ApiServerConfig::default(),
            xds_server: XdsServerConfig::default(),
            sds_server: SdsServerConfig::default(),
            bootstrap_server: BootstrapServerConfig::default(),
            gui_server: GuiServerConfig::default(),
            dataplane_token_server: DataplaneTokenServerConfig::default(),
            #[cfg(feature = "kubernetes")]
            injector: InjectorConfig::default(),
            dp_server: DpServerConfig::default(),
            general: GeneralConfig::default(),
            defaults: DefaultsConfig::default(),
            logging: LoggingConfig::default(),
            leader_election: LeaderElectionConfig::default(),
        }
    }
}

/// Kubernetes: replicas elect the one that writes with a Lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// A leader that has not renewed the lease for this long is replaced.
    pub lease_duration_seconds: u64,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            lease_duration_seconds: 15,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StoreConfig {
    #[serde(rename = "type")]
    pub store_type: StoreType,
    #[cfg(feature = "universal")]
    pub postgres: PostgresConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_type: StoreType::Memory,
            #[cfg(feature = "universal")]
            postgres: PostgresConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultsConfig {
    /// Do not create the `default` mesh on first start.
    pub skip_mesh_creation: bool,
}

impl Settings for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.api_server.validate("apiServer")?;
        self.xds_server.validate("xdsServer")?;
        self.sds_server.validate("sdsServer")?;
        self.dataplane_token_server
            .validate("dataplaneTokenServer")?;
        #[cfg(feature = "universal")]
        self.store.postgres.validate("store.postgres")?;
        Ok(())
    }

    fn logging(&self) -> &LoggingConfig {
        &self.logging
    }
}

impl Config {
    /// The host the bootstraps tell Envoy to reach ADS at, which the
    /// control plane's certificate must name.
    pub fn xds_host(&self) -> String {
        match self.bootstrap_server.params.xds_host.as_str() {
            "" => self.general.advertised_hostname.clone(),
            host => host.to_string(),
        }
    }

    /// How streams authenticate, `auto` resolved for the environment.
    pub fn dp_auth(&self) -> DpAuthType {
        match (self.dp_server.auth.auth_type, self.store.store_type) {
            (DpAuthType::Auto, StoreType::Kubernetes) => DpAuthType::ServiceAccountToken,
            (DpAuthType::Auto, _) => DpAuthType::DpToken,
            (chosen, _) => chosen,
        }
    }

    /// The HTTP API refuses writes: always on Kubernetes (resources are
    /// changed with `kubectl`), and in Universal when configured so.
    pub fn api_read_only(&self) -> bool {
        self.environment == Environment::Kubernetes || self.api_server.read_only
    }
}

#[cfg(all(test, feature = "universal", feature = "kubernetes"))]
mod tests {
    use crate::bootstrap::XdsApiType;
    use crate::settings::{descriptions, env_help, load, settings};
    use crate::store::postgres::PostgresTlsMode;

    #[test]
    fn every_setting_says_what_it_means_in_the_help() {
        let meanings = descriptions::<Config>();
        let undocumented: Vec<String> = settings::<Config>()
            .iter()
            .map(|s| s.key.clone())
            .filter(|key| meanings.get(key).is_none_or(|m| m.is_empty()))
            .collect();
        assert!(
            undocumented.is_empty(),
            "settings without a doc comment: {undocumented:?}"
        );
        let help = env_help::<Config>();
        assert!(help.contains("store.postgres.host\n      KUMA_STORE_POSTGRES_HOST  [default: 127.0.0.1]\n      Host of the PostgreSQL server."), "{help}");
        assert!(
            help.contains("One of: memory, postgres, kubernetes."),
            "{help}"
        );
    }

    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_names_follow_kuma() {
        let names: Vec<String> = settings::<Config>().iter().map(|s| s.var.clone()).collect();
        for expected in [
            "KUMA_STORE_TYPE",
            "KUMA_STORE_POSTGRES_DB_NAME",
            "KUMA_STORE_POSTGRES_TLS_MODE",
            "KUMA_XDS_SERVER_GRPC_PORT",
            "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
            "KUMA_SDS_SERVER_GRPC_PORT",
            "KUMA_API_SERVER_PORT",
            "KUMA_BOOTSTRAP_SERVER_PORT",
            "KUMA_DATAPLANE_TOKEN_SERVER_LOCAL_PORT",
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_CLIENT_CERTS_DIR",
            "KUMA_GENERAL_ADVERTISED_HOSTNAME",
            "KUMA_INJECTOR_ENABLED",
            "KUMA_INJECTOR_WEBHOOK_SERVER_PORT",
            "KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR",
            "KUMA_INJECTOR_CONTROL_PLANE_BOOTSTRAP_SERVER_URL",
            "KUMA_INJECTOR_SIDECAR_CONTAINER_IMAGE",
            "KUMA_INJECTOR_SIDECAR_CONTAINER_ADMIN_PORT",
            "KUMA_INJECTOR_SIDECAR_CONTAINER_RESOURCES_LIMITS_MEMORY",
            "KUMA_INJECTOR_NATIVE_SIDECARS",
            "KUMA_DP_SERVER_AUTH_TYPE",
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_CERT_FILE",
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_INTERFACE",
        ] {
            assert!(names.iter().any(|n| n == expected), "missing {expected}");
        }
    }

    #[test]
    fn precedence_is_flag_env_file_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.yaml");
        std::fs::write(
            &file,
            "apiServer:\n  port: 1111\nstore:\n  postgres:\n    host: db\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let c = load::<Config>(Some(file), env(&[]), &[]).unwrap();
        assert_eq!(
            (c.api_server.port, c.store.postgres.host.as_str()),
            (1111, "db")
        );
        let c = load::<Config>(Some(file), env(&[("KUMA_API_SERVER_PORT", "2222")]), &[]).unwrap();
        assert_eq!(c.api_server.port, 2222);
        let c = load::<Config>(
            Some(file),
            env(&[("KUMA_API_SERVER_PORT", "2222")]),
            &[("apiServer.port", "3333".into())],
        )
        .unwrap();
        assert_eq!(c.api_server.port, 3333);
        assert_eq!(c.xds_server.grpc_port, 5678);
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = load::<Config>(None, env(&[("KUMA_API_SERVER_PORT", "abc")]), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("KUMA_API_SERVER_PORT=\"abc\""),
            "{err}"
        );
        let err = load::<Config>(None, env(&[("KUMA_API_SERVER_PORT", "70000")]), &[]).unwrap_err();
        assert!(err.to_string().contains("KUMA_API_SERVER_PORT"), "{err}");
        let err = load::<Config>(None, env(&[("KUMA_STORE_TYPE", "mysql")]), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected one of `memory`, `postgres`, `kubernetes`"),
            "{err}"
        );
    }

    #[test]
    fn a_settings_file_that_is_not_a_map_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        for body in ["- a\n- b\n", "42\n", "just text\n"] {
            let file = dir.path().join("cp.yaml");
            std::fs::write(&file, body).unwrap();
            let err = load::<Config>(file.to_str(), env(&[("KUMA_API_SERVER_PORT", "1")]), &[])
                .unwrap_err();
            assert!(
                err.to_string().contains("must be a map of settings"),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn hostile_numbers_are_refused_with_their_range() {
        let huge = u64::MAX.to_string();
        for var in [
            "KUMA_SDS_SERVER_CERT_VALIDITY_SECONDS",
            "KUMA_DATAPLANE_TOKEN_SERVER_TOKEN_VALIDITY_SECONDS",
            "KUMA_XDS_SERVER_DEBOUNCE_MS",
            "KUMA_XDS_SERVER_INSIGHT_FLUSH_INTERVAL_MS",
        ] {
            let err = load::<Config>(None, env(&[(var, &huge)]), &[]).unwrap_err();
            assert!(
                err.to_string().contains(var) && err.to_string().contains("out of range"),
                "{var}: {err}"
            );
        }
        let err = load::<Config>(None, env(&[("KUMA_API_SERVER_PORT", &huge)]), &[]).unwrap_err();
        assert!(err.to_string().contains("KUMA_API_SERVER_PORT"), "{err}");
    }

    #[test]
    fn modes_are_typed_and_a_typo_lists_the_allowed_values() {
        let c = load::<Config>(
            None,
            env(&[
                ("KUMA_ENVIRONMENT", "kubernetes"),
                ("KUMA_STORE_POSTGRES_TLS_MODE", "verifyCa"),
                ("KUMA_BOOTSTRAP_SERVER_XDS_API_TYPE", "sotw"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(c.environment, Environment::Kubernetes);
        assert_eq!(c.store.postgres.tls.mode, PostgresTlsMode::VerifyCa);
        assert_eq!(c.bootstrap_server.xds_api_type, XdsApiType::Sotw);
        assert!(c.api_read_only());
        let err = load::<Config>(None, env(&[("KUMA_LOGGING_FORMAT", "jsn")]), &[]).unwrap_err();
        assert!(
            err.to_string().contains("KUMA_LOGGING_FORMAT")
                && err.to_string().contains("expected `text` or `json`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cp.yaml");
        std::fs::write(&file, "store:\n  postgress: {}\n").unwrap();
        let err = load::<Config>(file.to_str(), env(&[]), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown setting \"store.postgress\""),
            "{err}"
        );
    }
}
