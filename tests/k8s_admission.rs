//! Admission as the API server does it: the chart, installed with real
//! Helm, registers `kuma-injector` as a mutating webhook; real `kubectl`
//! creates pods; the test API server matches the webhook's selectors, calls
//! it over HTTPS verifying the `caBundle` the chart generated, applies its
//! patch, and honours its failure policy. The injector runs as its pod
//! would: from the chart's Deployment (its environment, its certificate
//! Secret), at the pod's address and port.

#![cfg(feature = "kubernetes")]

mod common;
mod kube_api;

use base64::Engine;
use common::{KubeClients, bin, eventually};
use kube_api::KubeApi;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const INJECTOR: &str = "/apis/apps/v1/namespaces/kuma-system/deployments/kuma-injector";

/// A loopback address of each injector pod's own, so that it can listen on
/// the chart's port 8443 beside the other tests'.
fn pod_ip() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("127.77.{}.{}", std::process::id() % 256, n % 255)
}

/// `kuma-injector run` as the chart's Deployment runs it, with the
/// certificate now in the chart's Secret; and its pod, ready, in the API.
struct InjectorPod {
    child: Child,
    _certs: tempfile::TempDir,
}

impl Drop for InjectorPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_injector(api: &KubeApi) -> InjectorPod {
    let deployment = api.get(INJECTOR).expect("the chart's injector Deployment");
    let template = &deployment["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let secret = api
        .get("/api/v1/namespaces/kuma-system/secrets/kuma-injector-tls")
        .expect("the webhook certificate Secret");
    let certs = tempfile::tempdir().unwrap();
    for file in ["tls.crt", "tls.key"] {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(secret["data"][file].as_str().unwrap())
            .unwrap();
        std::fs::write(certs.path().join(file), pem).unwrap();
    }
    let mut command = Command::new(bin("kuma-injector"));
    command
        .args(
            container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap()),
        )
        .env_clear();
    for env in container["env"].as_array().unwrap() {
        command.env(
            env["name"].as_str().unwrap(),
            env["value"].as_str().unwrap_or(""),
        );
    }
    let ip = pod_ip();
    let child = command
        // Where the pod's volume and address would be.
        .env("KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR", certs.path())
        .env("KUMA_INJECTOR_WEBHOOK_SERVER_ADDRESS", &ip)
        .env("KUBECONFIG", api.kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kuma-injector runs");
    assert!(
        eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect((ip.as_str(), 8443)).is_ok()
        }),
        "the injector listens on {ip}:8443"
    );
    api.apply(
        "/api/v1/namespaces/kuma-system/pods",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "kuma-injector-0", "labels": template["metadata"]["labels"]},
               "spec": template["spec"],
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    InjectorPod {
        child,
        _certs: certs,
    }
}

fn pod(name: &str, namespace: &str, annotations: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "labels": {"app": "echo"},
                        "annotations": annotations},
           "spec": {"containers": [{"name": "echo", "image": "kuma/kuma-tcp-echo:0.1.0"}]}})
    .to_string()
}

fn has_sidecar(api: &KubeApi, namespace: &str, name: &str) -> bool {
    let pod = api
        .get(&format!("/api/v1/namespaces/{namespace}/pods/{name}"))
        .unwrap_or_else(|| panic!("pod {namespace}/{name} was created"));
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|c| c["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let injected = names("initContainers").contains(&"kuma-sidecar".to_string());
    assert_eq!(
        injected,
        pod["metadata"]["annotations"]["kuma.io/sidecar-injected"] == "true",
        "the sidecar and the annotation go together: {pod}"
    );
    injected
}

fn upgrade(k: &KubeClients, failure_policy: &str) {
    k.chart(
        "upgrade",
        &[
            "injector.separate=true",
            &format!("injector.failurePolicy={failure_policy}"),
        ],
    );
}

#[test]
fn pods_created_with_kubectl_get_their_sidecar_from_the_webhook_the_chart_registered() {
    let api = KubeApi::start();
    let k = KubeClients::new(api.kubeconfig_path());
    k.chart("install", &["injector.separate=true"]);
    let injector = start_injector(&api);
    for ns in ["demo", "plain"] {
        k.kubectl(&["create", "namespace", ns]);
    }
    k.kubectl(&[
        "label",
        "namespace",
        "demo",
        "kuma.io/sidecar-injection=enabled",
    ]);

    k.kubectl_with(&["apply", "-f", "-"], &pod("echo", "demo", json!({})));
    assert!(has_sidecar(&api, "demo", "echo"), "labelled namespace");
    k.kubectl_with(&["apply", "-f", "-"], &pod("echo", "plain", json!({})));
    assert!(
        !has_sidecar(&api, "plain", "echo"),
        "namespace not labelled"
    );
    k.kubectl_with(
        &["apply", "-f", "-"],
        &pod(
            "opted-out",
            "demo",
            json!({"kuma.io/sidecar-injection": "disabled"}),
        ),
    );
    assert!(!has_sidecar(&api, "demo", "opted-out"), "opted out");

    // An upgrade generates a new CA and certificate; the injector still
    // serves the old one, which the new caBundle does not verify. With
    // failurePolicy Fail the pod is refused, and the reason says so.
    upgrade(&k, "Fail");
    let ran = k.try_kubectl_with(
        &["apply", "-f", "-"],
        &pod("after-upgrade", "demo", json!({})),
    );
    assert!(!ran.ok, "refused while the certificate is stale");
    assert!(
        ran.stderr
            .contains("failed calling webhook \"kuma-injector.kuma.io\"")
            && ran.stderr.contains("certificate"),
        "{}",
        ran.stderr
    );
    assert!(
        api.get("/api/v1/namespaces/demo/pods/after-upgrade")
            .is_none()
    );

    // The injector restarted with the new Secret: accepted, injected.
    drop(injector);
    let injector = start_injector(&api);
    k.kubectl_with(
        &["apply", "-f", "-"],
        &pod("after-upgrade", "demo", json!({})),
    );
    assert!(has_sidecar(&api, "demo", "after-upgrade"));

    // The injector down: Fail refuses the pod, Ignore creates it bare.
    drop(injector);
    let ran = k.try_kubectl_with(&["apply", "-f", "-"], &pod("while-down", "demo", json!({})));
    assert!(
        !ran.ok && ran.stderr.contains("failed calling webhook"),
        "{}",
        ran.stderr
    );
    upgrade(&k, "Ignore");
    k.kubectl_with(&["apply", "-f", "-"], &pod("while-down", "demo", json!({})));
    assert!(
        !has_sidecar(&api, "demo", "while-down"),
        "created without a sidecar"
    );
}

#[test]
fn kumactl_install_control_plane_piped_to_kubectl_registers_the_same_webhook() {
    let api = KubeApi::start();
    let k = KubeClients::new(api.kubeconfig_path());
    let rendered = Command::new(bin("kumactl"))
        .args([
            "install",
            "control-plane",
            "--set",
            "injector.separate=true",
        ])
        .output()
        .expect("kumactl runs");
    assert!(rendered.status.success());
    let applied = k.kubectl_with(
        &["apply", "-f", "-"],
        &String::from_utf8(rendered.stdout).unwrap(),
    );
    assert!(
        applied.contains("namespace/kuma-system created"),
        "{applied}"
    );
    assert!(
        applied.contains(
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/kuma-injector created"
        ),
        "{applied}"
    );
    let _injector = start_injector(&api);
    k.kubectl_with(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo, labels: {kuma.io/sidecar-injection: enabled}}\n",
    );
    k.kubectl_with(&["apply", "-f", "-"], &pod("echo", "demo", json!({})));
    assert!(has_sidecar(&api, "demo", "echo"));
}
