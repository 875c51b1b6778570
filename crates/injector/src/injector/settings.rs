//! The injector's settings (`injector.*`), and the settings of the
//! `kuma-injector` program that serves it alone.

use crate::resources::TransparentProxying;
use crate::settings::{ConfigError, LoggingConfig, Settings};
use serde::{Deserialize, Serialize};

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

/// What `kuma-injector run` reads: the keys and `KUMA_*` variables it
/// shares with `kuma-cp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectorSettings {
    /// The namespace of the control plane.
    pub system_namespace: String,
    pub injector: InjectorConfig,
    pub logging: LoggingConfig,
}

impl Default for InjectorSettings {
    fn default() -> Self {
        InjectorSettings {
            system_namespace: "kuma-system".into(),
            injector: InjectorConfig::default(),
            logging: LoggingConfig::default(),
        }
    }
}

impl Settings for InjectorSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    fn logging(&self) -> &LoggingConfig {
        &self.logging
    }
}
