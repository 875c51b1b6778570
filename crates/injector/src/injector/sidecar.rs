//! What the injector adds to a pod, as a pure function of the pod, its
//! namespace's labels and the settings: the `kuma-init` init container
//! (transparent proxying), the `kuma-sidecar` container (`kuma-dp run`,
//! configured through its environment), and the annotations the pod
//! controller reads. The JSON patch is the difference between the pod and
//! the injected pod, so reviewing an injected pod again yields none.

use crate::injector::settings::{InjectorConfig, ProbeConfig};
use crate::k8s::crd::MESH_LABEL;
use crate::k8s::identity::DEFAULT_TOKEN_PATH;
use crate::k8s::pods::{
    INBOUND_REDIRECT_PORT, OUTBOUND_REDIRECT_PORT, SIDECAR_INJECTED, SIDECAR_INJECTION,
    TRANSPARENT_PROXYING, pod_mesh,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const SIDECAR_NAME: &str = "kuma-sidecar";
pub const INIT_NAME: &str = "kuma-init";

/// Why a pod is injected or left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its namespace is not labelled `kuma.io/sidecar-injection: enabled`.
    NamespaceNotLabelled,
    /// The pod says `kuma.io/sidecar-injection: disabled`.
    OptedOut,
    /// It has its sidecar already.
    AlreadyInjected,
    /// It joins this mesh.
    Inject { mesh: String },
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][key].as_str()
}

/// Whether to inject, from the pod and its namespace's labels and
/// annotations.
pub fn decide(
    pod: &Value,
    namespace_labels: &BTreeMap<String, String>,
    namespace_annotations: &BTreeMap<String, String>,
) -> Decision {
    if namespace_labels.get(SIDECAR_INJECTION).map(String::as_str) != Some("enabled") {
        return Decision::NamespaceNotLabelled;
    }
    if annotation(pod, SIDECAR_INJECTION) == Some("disabled") {
        return Decision::OptedOut;
    }
    let has_sidecar = ["containers", "initContainers"].iter().any(|list| {
        pod["spec"][list]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == SIDECAR_NAME))
    });
    if has_sidecar || annotation(pod, SIDECAR_INJECTED) == Some("true") {
        return Decision::AlreadyInjected;
    }
    let mesh = pod_mesh(
        annotation(pod, MESH_LABEL),
        namespace_annotations.get(MESH_LABEL).map(String::as_str),
    );
    Decision::Inject { mesh }
}

/// A probe that asks Envoy's admin `/ready` from inside the container (the
/// admin API listens on the pod's loopback only).
fn probe(config: &InjectorConfig, timings: &ProbeConfig) -> Value {
    json!({
        "exec": {"command": ["kuma-dp", "probe", "--admin-port",
                             config.sidecar_container.admin_port.to_string()]},
        "initialDelaySeconds": timings.initial_delay_seconds,
        "timeoutSeconds": timings.timeout_seconds,
        "periodSeconds": timings.period_seconds,
        "successThreshold": timings.success_threshold,
        "failureThreshold": timings.failure_threshold,
    })
}

fn env(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "value": value.to_string()})
}

fn field_env(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}

/// The `kuma-sidecar` container; `ca_pem` is the CA it verifies the
/// control plane with.
pub fn sidecar_container(config: &InjectorConfig, mesh: &str, ca_pem: Option<&str>) -> Value {
    let c = &config.sidecar_container;
    let mut container = json!({
        "name": SIDECAR_NAME,
        "image": c.image,
        "command": ["kuma-dp"],
        "args": ["run"],
        "env": [
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            env("KUMA_CONTROL_PLANE_URL", &config.control_plane.bootstrap_server_url),
            env("KUMA_DATAPLANE_MESH", mesh),
            env("KUMA_DATAPLANE_NAME", "$(POD_NAME).$(POD_NAMESPACE)"),
            env("KUMA_DATAPLANE_ADMIN_PORT", c.admin_port),
            env("KUMA_DATAPLANE_DRAIN_TIME", format!("{}s", c.drain_time_seconds)),
            env("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", DEFAULT_TOKEN_PATH),
        ],
        "securityContext": {"runAsUser": c.uid, "runAsGroup": c.gid},
        "readinessProbe": probe(config, &c.readiness_probe),
        "livenessProbe": probe(config, &c.liveness_probe),
        "resources": {
            "requests": {"cpu": c.resources.requests.cpu, "memory": c.resources.requests.memory},
            "limits": {"cpu": c.resources.limits.cpu, "memory": c.resources.limits.memory},
        },
    });
    if let (Some(ca), Some(env)) = (ca_pem, container["env"].as_array_mut()) {
        env.push(self::env("KUMA_CONTROL_PLANE_CA_CERT", ca));
    }
    if config.native_sidecars {
        // A native sidecar: the application's containers start once this
        // one's startup probe passes; it stops after them.
        container["restartPolicy"] = json!("Always");
        container["startupProbe"] = json!({
            "exec": container["readinessProbe"]["exec"].clone(),
            "periodSeconds": 1,
            "failureThreshold": 600,
        });
    }
    container
}

/// The `kuma-init` container: redirects the pod's TCP to the sidecar.
pub fn init_container(config: &InjectorConfig) -> Value {
    let c = &config.sidecar_container;
    json!({
        "name": INIT_NAME,
        "image": config.init_container.image,
        "command": ["kumactl", "install", "transparent-proxy"],
        "args": [
            "--redirect-inbound-port", c.redirect_port_inbound.to_string(),
            "--redirect-outbound-port", c.redirect_port_outbound.to_string(),
            "--kuma-dp-uid", c.uid.to_string(),
        ],
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": false,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "10Mi"},
            "limits": {"cpu": "100m", "memory": "50Mi"},
        },
    })
}

/// The pod as it is after injection into `mesh`.
pub fn injected(pod: &Value, config: &InjectorConfig, mesh: &str, ca_pem: Option<&str>) -> Value {
    let mut pod = pod.clone();
    let c = &config.sidecar_container;
    let annotations = [
        (SIDECAR_INJECTED, "true".to_string()),
        (MESH_LABEL, mesh.to_string()),
        (TRANSPARENT_PROXYING, "enabled".to_string()),
        (INBOUND_REDIRECT_PORT, c.redirect_port_inbound.to_string()),
        (OUTBOUND_REDIRECT_PORT, c.redirect_port_outbound.to_string()),
    ];
    // The API server sends typed pods; a body that is not one still gets
    // an answer rather than a panic of the indexing below.
    for part in ["metadata", "spec"] {
        if !pod[part].is_object() {
            pod[part] = json!({});
        }
    }
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = json!({});
    }
    for (k, v) in annotations {
        pod["metadata"]["annotations"][k] = json!(v);
    }
    let existing_init = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut init = vec![init_container(config)];
    if config.native_sidecars {
        init.push(sidecar_container(config, mesh, ca_pem));
    } else {
        let mut containers = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        containers.push(sidecar_container(config, mesh, ca_pem));
        pod["spec"]["containers"] = Value::Array(containers);
    }
    init.extend(existing_init);
    pod["spec"]["initContainers"] = Value::Array(init);
    pod
}

/// The JSON patch that injects `pod`.
pub fn patch(
    pod: &Value,
    config: &InjectorConfig,
    mesh: &str,
    ca_pem: Option<&str>,
) -> json_patch::Patch {
    json_patch::diff(pod, &injected(pod, config, mesh, ca_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled() -> BTreeMap<String, String> {
        [(SIDECAR_INJECTION.to_string(), "enabled".to_string())].into()
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web-1", "namespace": "demo"},
               "spec": {"containers": [{"name": "web", "image": "web"}]}})
    }

    #[test]
    fn only_pods_of_labelled_namespaces_without_a_sidecar_are_injected() {
        let none = BTreeMap::new();
        assert_eq!(decide(&pod(), &none, &none), Decision::NamespaceNotLabelled);
        let mesh_of_namespace: BTreeMap<String, String> =
            [(MESH_LABEL.to_string(), "team-a".to_string())].into();
        assert_eq!(
            decide(&pod(), &labelled(), &mesh_of_namespace),
            Decision::Inject {
                mesh: "team-a".into()
            }
        );
        let mut opted_out = pod();
        opted_out["metadata"]["annotations"] = json!({SIDECAR_INJECTION: "disabled"});
        assert_eq!(decide(&opted_out, &labelled(), &none), Decision::OptedOut);
        let config = InjectorConfig::default();
        let done = injected(&pod(), &config, "default", None);
        assert_eq!(decide(&done, &labelled(), &none), Decision::AlreadyInjected);
    }

    #[test]
    fn a_native_sidecar_starts_before_the_application_and_a_classic_one_beside_it() {
        let mut config = InjectorConfig::default();
        let native = injected(&pod(), &config, "default", Some("CA PEM"));
        let init: Vec<&str> = native["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(init, [INIT_NAME, SIDECAR_NAME]);
        assert_eq!(
            native["spec"]["initContainers"][1]["restartPolicy"],
            "Always"
        );
        assert!(native["spec"]["initContainers"][1]["startupProbe"].is_object());
        assert_eq!(native["spec"]["containers"].as_array().unwrap().len(), 1);
        let env = native["spec"]["initContainers"][1]["env"]
            .as_array()
            .unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "KUMA_CONTROL_PLANE_CA_CERT" && e["value"] == "CA PEM"),
            "the sidecar is given the control plane's CA: {env:?}"
        );

        config.native_sidecars = false;
        let classic = injected(&pod(), &config, "default", None);
        assert_eq!(classic["spec"]["containers"][1]["name"], SIDECAR_NAME);
        assert!(classic["spec"]["containers"][1]["restartPolicy"].is_null());
    }
}
