//! Settings of `kuma-cp`.
//!
//! Every setting has a default, a key in the YAML file given by
//! `kuma-cp run -c FILE`, and a `KUMA_*` environment variable derived from
//! that key (`store.postgres.dbName` is `KUMA_STORE_POSTGRES_DB_NAME`), with
//! precedence flag > environment > file > default. The variables are derived
//! from the defaults rather than listed by hand, so a new setting cannot
//! lack one and `kuma-cp run --help` lists them all.

use crate::resources::TransparentProxying;
pub use crate::runtime::env_var_name;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

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

/// The log line format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
    pub injector: InjectorConfig,
    pub dp_server: DpServerConfig,
    pub general: GeneralConfig,
    pub defaults: DefaultsConfig,
    pub logging: LoggingConfig,
    pub leader_election: LeaderElectionConfig,
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
    pub postgres: PostgresConfig,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapServerConfig {
    /// Port of the bootstrap server kuma-dp asks (`POST /bootstrap`).
    pub port: u16,
    pub xds_api_type: XdsApiType,
    /// What the bootstrap tells Envoy to connect to.
    pub params: BootstrapParams,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DataplaneTokenServerConfig {
    pub local: TokenServerLocalConfig,
    pub public: TokenServerPublicConfig,
    /// Validity of tokens whose request names none.
    pub token_validity_seconds: u64,
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

/// The sidecar injector (`kuma-injector run`, or inside `kuma-cp` when
/// `enabled`): its webhook server and what it injects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectorConfig {
    /// Serve the webhook from `kuma-cp` itself.
    pub enabled: bool,
    pub webhook_server: WebhookServerConfig,
    pub control_plane: InjectorControlPlaneConfig,
    pub sidecar_container: SidecarContainerConfig,
    pub init_container: InitContainerConfig,
    /// Inject `kuma-sidecar` as a native sidecar (an init container with
    /// `restartPolicy: Always`, Kubernetes 1.29+): the application starts
    /// once its proxy is ready, and a Job's pod completes when it exits.
    pub native_sidecars: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// Missing keys come from the defaults, merged in before parsing.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookServerConfig {
    /// The address the webhook listens on.
    pub address: String,
    /// Port of the webhook (HTTPS).
    pub port: u16,
    /// A directory holding `tls.crt` and `tls.key`.
    pub cert_dir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// Missing keys come from the defaults, merged in before parsing.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectorControlPlaneConfig {
    /// Where the injected `kuma-dp` fetches its bootstrap (spoken to in TLS).
    pub bootstrap_server_url: String,
    /// The CA (PEM) of the control plane's certificate, given to every
    /// injected kuma-dp (KUMA_CONTROL_PLANE_CA_CERT) so that it verifies
    /// the control plane; read at each injection, so a replaced CA reaches
    /// new pods. Empty in kuma-cp's own injector: its generated CA.
    pub ca_cert_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// Missing keys come from the defaults, merged in before parsing.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarContainerConfig {
    /// Image of the injected kuma-sidecar (kuma-dp and Envoy).
    pub image: String,
    /// Port the pod's inbound TCP is redirected to.
    pub redirect_port_inbound: u16,
    /// Port the pod's outbound TCP is redirected to.
    pub redirect_port_outbound: u16,
    /// User the sidecar runs as (its traffic is not redirected).
    pub uid: u32,
    /// Group the sidecar runs as.
    pub gid: u32,
    /// Port of Envoy's admin API inside the pod.
    pub admin_port: u16,
    /// How long Envoy drains a listener it replaces or removes.
    pub drain_time_seconds: u64,
    /// The sidecar's readiness probe.
    pub readiness_probe: ProbeConfig,
    /// The sidecar's liveness probe.
    pub liveness_probe: ProbeConfig,
    /// The sidecar's resource requests and limits.
    pub resources: ResourcesConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// Missing keys come from the defaults, merged in before parsing.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeConfig {
    /// Seconds before the first probe.
    pub initial_delay_seconds: u32,
    /// Seconds a probe may take.
    pub timeout_seconds: u32,
    /// Seconds between probes.
    pub period_seconds: u32,
    /// Passes in a row that make it pass.
    pub success_threshold: u32,
    /// Failures in a row that make it fail.
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourcesConfig {
    /// What the container is guaranteed.
    pub requests: ResourceAmounts,
    /// What it may use at most.
    pub limits: ResourceAmounts,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourceAmounts {
    /// CPU, in Kubernetes' units (50m, 1).
    pub cpu: String,
    /// Memory, in Kubernetes' units (64Mi).
    pub memory: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// Missing keys come from the defaults, merged in before parsing.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitContainerConfig {
    /// Image of the injected kuma-init (kumactl install transparent-proxy).
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// The host name other machines reach this control plane by.
    pub advertised_hostname: String,
    /// Where the control plane keeps its own files: the CA of its generated
    /// TLS certificate (kuma-cp-ca.crt, what kuma-dp --ca-cert-file takes).
    /// Empty: $HOME/.kuma.
    pub work_dir: String,
    /// The TLS certificate (PEM, chain) every server proxies talk to
    /// presents, and the HTTPS API unless it has its own; read again when
    /// the file changes. Empty: one issued by the control plane's own CA.
    pub tls_cert_file: String,
    /// The private key (PEM) of tlsCertFile.
    pub tls_key_file: String,
    /// More host names and addresses, comma-separated, for the generated
    /// certificate (it always names localhost, 127.0.0.1, ::1, the
    /// advertised host name, this machine's name and the bootstrap's xDS
    /// host).
    pub tls_subject_alt_names: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultsConfig {
    /// Do not create the `default` mesh on first start.
    pub skip_mesh_creation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A `tracing` filter: `info`, `debug`, `kuma=debug,info`, …
    pub level: String,
    pub format: LogFormat,
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
            injector: InjectorConfig::default(),
            dp_server: DpServerConfig::default(),
            general: GeneralConfig::default(),
            defaults: DefaultsConfig::default(),
            logging: LoggingConfig::default(),
            leader_election: LeaderElectionConfig::default(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_type: StoreType::Memory,
            postgres: PostgresConfig::default(),
        }
    }
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

impl Default for SdsServerConfig {
    fn default() -> Self {
        SdsServerConfig {
            grpc_port: 5677,
            cert_validity_seconds: 24 * 3600,
            cert_renewal_margin_seconds: 8 * 3600,
        }
    }
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

impl Default for DataplaneTokenServerConfig {
    fn default() -> Self {
        DataplaneTokenServerConfig {
            local: TokenServerLocalConfig { port: 5679 },
            public: TokenServerPublicConfig::default(),
            token_validity_seconds: 10 * 365 * 24 * 3600,
        }
    }
}

impl Default for InjectorConfig {
    fn default() -> Self {
        InjectorConfig {
            enabled: false,
            webhook_server: WebhookServerConfig {
                address: "0.0.0.0".into(),
                port: 8443,
                cert_dir: String::new(),
            },
            control_plane: InjectorControlPlaneConfig {
                bootstrap_server_url: "https://kuma-control-plane.kuma-system.svc:5682".into(),
                ca_cert_file: String::new(),
            },
            sidecar_container: SidecarContainerConfig {
                image: format!("kuma/kuma-dp:{}", crate::version::VERSION),
                redirect_port_inbound: TransparentProxying::INBOUND_PORT,
                redirect_port_outbound: TransparentProxying::OUTBOUND_PORT,
                uid: TransparentProxying::PROXY_UID,
                gid: TransparentProxying::PROXY_UID,
                admin_port: 9901,
                drain_time_seconds: 30,
                readiness_probe: ProbeConfig {
                    initial_delay_seconds: 1,
                    timeout_seconds: 3,
                    period_seconds: 5,
                    success_threshold: 1,
                    failure_threshold: 12,
                },
                liveness_probe: ProbeConfig {
                    initial_delay_seconds: 60,
                    timeout_seconds: 3,
                    period_seconds: 5,
                    success_threshold: 1,
                    failure_threshold: 12,
                },
                resources: ResourcesConfig {
                    requests: ResourceAmounts {
                        cpu: "50m".into(),
                        memory: "64Mi".into(),
                    },
                    limits: ResourceAmounts {
                        cpu: "1000m".into(),
                        memory: "512Mi".into(),
                    },
                },
            },
            init_container: InitContainerConfig {
                image: format!("kuma/kuma-init:{}", crate::version::VERSION),
            },
            native_sidecars: true,
        }
    }
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            advertised_hostname: "localhost".into(),
            work_dir: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_subject_alt_names: String::new(),
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Longest workload certificate: the lifetime of a mesh CA (ten years).
pub const MAX_CERT_VALIDITY_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// Longest dataplane token: a hundred years, far from any clock overflow.
pub const MAX_TOKEN_VALIDITY_SECONDS: u64 = 100 * 365 * 24 * 3600;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{var}={value:?}: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
    #[error("setting {key} ({var}): {message}")]
    Invalid {
        key: String,
        var: String,
        message: String,
    },
}

/// A setting given on the command line, as a dotted key and a value.
pub type Override = (&'static str, String);

/// One setting: its dotted key in the `-c` file, its environment
/// variable, its default.
pub struct Setting {
    pub key: String,
    pub var: String,
    pub default: Value,
}

/// Every setting, in file order: walked from the defaults once per
/// process, as every load looks each one up in the environment.
pub fn settings() -> &'static [Setting] {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<Setting>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, child, out);
                }
            }
            leaf => out.push(Setting {
                key: prefix.to_string(),
                var: env_var_name(prefix),
                default: leaf.clone(),
            }),
        }
    }
    static SETTINGS: std::sync::LazyLock<Vec<Setting>> = std::sync::LazyLock::new(|| {
        let mut out = Vec::new();
        walk("", defaults_value(), &mut out);
        out
    });
    &SETTINGS
}

/// The defaults as a JSON tree, what every load merges onto: built once.
fn defaults_value() -> &'static Value {
    static DEFAULTS: std::sync::LazyLock<Value> =
        std::sync::LazyLock::new(|| serde_json::to_value(Config::default()).unwrap_or(Value::Null));
    &DEFAULTS
}

/// What each setting means (dotted key -> its doc comment), from the
/// settings' own types, so that the help and the code cannot drift apart.
fn descriptions() -> HashMap<String, String> {
    fn walk(prefix: &str, schema: &Value, out: &mut HashMap<String, String>) {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, child) in properties {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if let Some(text) = child.get("description").and_then(Value::as_str) {
                let mut meaning = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let choices: Vec<&str> = child
                    .get("enum")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if !choices.is_empty() {
                    meaning.push_str(&format!(" One of: {}.", choices.join(", ")));
                }
                out.insert(path.clone(), meaning);
            }
            walk(&path, child, out);
        }
    }
    let generator = schemars::generate::SchemaSettings::default()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = generator.into_root_schema_for::<Config>().to_value();
    let mut out = HashMap::new();
    walk("", &schema, &mut out);
    out
}

/// The help text listing every setting: its key in the `-c` file, its
/// environment variable, its default and what it means.
pub fn env_help() -> String {
    let meanings = descriptions();
    let mut out = String::from(
        "Settings (key in the -c file, environment variable, default; flags > environment > file > default):\n",
    );
    for Setting { key, var, default } in settings() {
        let shown = match default {
            Value::String(s) if s.is_empty() => "\"\"".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("  {key}\n      {var}  [default: {shown}]\n"));
        if let Some(meaning) = meanings.get(key) {
            out.push_str(&format!("      {meaning}\n"));
        }
    }
    out
}

fn set_path(root: &mut Value, key: &str, value: Value) {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        node = &mut node[*part];
    }
    node[parts[parts.len() - 1]] = value;
}

/// Parses a raw string into the type of the setting's default.
fn typed(default: &Value, raw: &str) -> Result<Value, String> {
    match default {
        Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "" => Ok(Value::Bool(false)),
            _ => Err("expected true or false".into()),
        },
        Value::Number(_) => raw
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| "expected a non-negative whole number".into()),
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// Checks a file's keys against the known settings, so a typo is an error
/// rather than a silently ignored line.
fn check_known(prefix: &str, file: &Value, defaults: &Value) -> Result<(), String> {
    let (Value::Object(f), Value::Object(d)) = (file, defaults) else {
        return Ok(());
    };
    for (k, v) in f {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match d.get(k) {
            None => return Err(format!("unknown setting \"{key}\"")),
            Some(dv @ Value::Object(_)) => {
                if !v.is_object() {
                    return Err(format!("\"{key}\" must be a map of settings"));
                }
                check_known(&key, v, dv)?
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

impl Config {
    /// Builds the configuration: defaults, then the file, then the
    /// environment (as `lookup` answers), then command-line overrides.
    pub fn load(
        file: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
        overrides: &[Override],
    ) -> Result<Config, ConfigError> {
        let defaults = defaults_value();
        let mut merged = defaults.clone();
        if let Some(path) = file {
            let file_err = |message: String| ConfigError::File {
                path: path.to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
            let parsed: Value =
                serde_yaml_ng::from_str(&text).map_err(|e| file_err(e.to_string()))?;
            if !parsed.is_null() {
                if !parsed.is_object() {
                    return Err(file_err(
                        "must be a map of settings (e.g. \"apiServer:\\n  port: 5681\"), not a list or a single value".into(),
                    ));
                }
                check_known("", &parsed, defaults).map_err(file_err)?;
                merge(&mut merged, parsed);
            }
        }
        for Setting { key, var, default } in settings() {
            if let Some(raw) = lookup(var) {
                let value = typed(default, &raw).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    value: raw.clone(),
                    message,
                })?;
                set_path(&mut merged, key, value);
            }
        }
        for (key, raw) in overrides {
            let empty = Value::String(String::new());
            let default = settings()
                .iter()
                .find(|s| s.key == *key)
                .map_or(&empty, |s| &s.default);
            let value = typed(default, raw).map_err(|message| ConfigError::Invalid {
                key: key.to_string(),
                var: env_var_name(key),
                message,
            })?;
            set_path(&mut merged, key, value);
        }
        let config: Config = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                var: env_var_name(&key),
                key,
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Loads from the process environment.
    pub fn from_env(file: Option<&str>, overrides: &[Override]) -> Result<Config, ConfigError> {
        Self::load(file, |k| std::env::var(k).ok(), overrides)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let in_range = |key: &str, value: u64, range: std::ops::RangeInclusive<u64>| {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key: key.to_string(),
                    var: env_var_name(key),
                    message: format!(
                        "{value} is out of range: expected {} to {}",
                        range.start(),
                        range.end()
                    ),
                })
            }
        };
        in_range(
            "sdsServer.certValiditySeconds",
            self.sds_server.cert_validity_seconds,
            1..=MAX_CERT_VALIDITY_SECONDS,
        )?;
        in_range(
            "dataplaneTokenServer.tokenValiditySeconds",
            self.dataplane_token_server.token_validity_seconds,
            1..=MAX_TOKEN_VALIDITY_SECONDS,
        )?;
        in_range(
            "xdsServer.debounceMs",
            self.xds_server.debounce_ms,
            0..=60_000,
        )?;
        in_range(
            "xdsServer.insightFlushIntervalMs",
            self.xds_server.insight_flush_interval_ms,
            1..=3_600_000,
        )?;
        in_range(
            "apiServer.maxConcurrentRequests",
            self.api_server.max_concurrent_requests as u64,
            1..=1_000_000,
        )?;
        in_range(
            "apiServer.requestTimeoutMs",
            self.api_server.request_timeout_ms,
            1..=3_600_000,
        )?;
        in_range(
            "store.postgres.connectionTimeout",
            self.store.postgres.connection_timeout,
            1..=3600,
        )?;
        if self.sds_server.cert_renewal_margin_seconds >= self.sds_server.cert_validity_seconds {
            return Err(ConfigError::Invalid {
                key: "sdsServer.certRenewalMarginSeconds".into(),
                var: env_var_name("sdsServer.certRenewalMarginSeconds"),
                message: format!(
                    "must be less than sdsServer.certValiditySeconds ({})",
                    self.sds_server.cert_validity_seconds
                ),
            });
        }
        let public = &self.dataplane_token_server.public;
        if public.enabled
            && (public.interface.is_empty()
                || public.tls_cert_file.is_empty()
                || public.tls_key_file.is_empty()
                || public.client_certs_dir.is_empty())
        {
            return Err(ConfigError::Invalid {
                key: "dataplaneTokenServer.public".into(),
                var: env_var_name("dataplaneTokenServer.public.enabled"),
                message: "the public server needs KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_INTERFACE, _TLS_CERT_FILE, _TLS_KEY_FILE and _CLIENT_CERTS_DIR".into(),
            });
        }
        if self.api_server.default_page_size == 0
            || self.api_server.default_page_size > self.api_server.max_page_size
        {
            return Err(ConfigError::Invalid {
                key: "apiServer.defaultPageSize".into(),
                var: env_var_name("apiServer.defaultPageSize"),
                message: format!(
                    "must be between 1 and apiServer.maxPageSize ({})",
                    self.api_server.max_page_size
                ),
            });
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_setting_says_what_it_means_in_the_help() {
        let meanings = super::descriptions();
        let undocumented: Vec<String> = super::settings()
            .iter()
            .map(|s| s.key.clone())
            .filter(|key| meanings.get(key).is_none_or(|m| m.is_empty()))
            .collect();
        assert!(
            undocumented.is_empty(),
            "settings without a doc comment: {undocumented:?}"
        );
        let help = super::env_help();
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
        let names: Vec<String> = settings().iter().map(|s| s.var.clone()).collect();
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
        let c = Config::load(Some(file), env(&[]), &[]).unwrap();
        assert_eq!(
            (c.api_server.port, c.store.postgres.host.as_str()),
            (1111, "db")
        );
        let c = Config::load(Some(file), env(&[("KUMA_API_SERVER_PORT", "2222")]), &[]).unwrap();
        assert_eq!(c.api_server.port, 2222);
        let c = Config::load(
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
        let err = Config::load(None, env(&[("KUMA_API_SERVER_PORT", "abc")]), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("KUMA_API_SERVER_PORT=\"abc\""),
            "{err}"
        );
        let err = Config::load(None, env(&[("KUMA_API_SERVER_PORT", "70000")]), &[]).unwrap_err();
        assert!(err.to_string().contains("KUMA_API_SERVER_PORT"), "{err}");
        let err = Config::load(None, env(&[("KUMA_STORE_TYPE", "mysql")]), &[]).unwrap_err();
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
            let err = Config::load(file.to_str(), env(&[("KUMA_API_SERVER_PORT", "1")]), &[])
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
            let err = Config::load(None, env(&[(var, &huge)]), &[]).unwrap_err();
            assert!(
                err.to_string().contains(var) && err.to_string().contains("out of range"),
                "{var}: {err}"
            );
        }
        let err = Config::load(None, env(&[("KUMA_API_SERVER_PORT", &huge)]), &[]).unwrap_err();
        assert!(err.to_string().contains("KUMA_API_SERVER_PORT"), "{err}");
    }

    #[test]
    fn modes_are_typed_and_a_typo_lists_the_allowed_values() {
        let c = Config::load(
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
        let err = Config::load(None, env(&[("KUMA_LOGGING_FORMAT", "jsn")]), &[]).unwrap_err();
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
        let err = Config::load(file.to_str(), env(&[]), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown setting \"store.postgress\""),
            "{err}"
        );
    }
}
