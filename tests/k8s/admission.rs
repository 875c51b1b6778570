//! Admission as a real API server does it: the chart, installed with real
//! Helm, registers `kuma-injector` as a mutating webhook; its Deployment's
//! pod runs on the test node; real `kubectl` creates pods; kube-apiserver
//! matches the webhook's selectors, calls the injector's pod over HTTPS
//! verifying the `caBundle` the chart generated, applies its patch, and
//! honours its failure policy.

use kuma_test_support as common;
use kuma_test_support::cluster;

use cluster::{Cluster, ControlPlane};
use common::{KubeClients, bin, eventually};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

fn pod(name: &str, namespace: &str, annotations: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "labels": {"app": "echo"},
                        "annotations": annotations},
           "spec": {"containers": [{"name": "echo", "image": "kuma/kuma-tcp-echo:0.1.0"}]}})
    .to_string()
}

fn has_sidecar(api: &ControlPlane, namespace: &str, name: &str) -> bool {
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

/// Waits until the injector Deployment has a ready pod of its current
/// template, and no other (a rollout finished).
fn injector_rolled_out(k: &KubeClients) {
    let status = k.try_kubectl(&[
        "-n",
        "kuma-system",
        "rollout",
        "status",
        "deployment/kuma-injector",
        "--timeout=120s",
    ]);
    assert!(
        status.ok,
        "the injector did not roll out: {}",
        status.stderr
    );
}

fn upgrade(k: &KubeClients, sets: &[&str]) {
    let mut all = vec!["injector.separate=true"];
    all.extend_from_slice(sets);
    k.chart("upgrade", &all);
}

#[test]
fn pods_created_with_kubectl_get_their_sidecar_from_the_webhook_the_chart_registered() {
    let cluster = Cluster::shared();
    let api = cluster.cp;
    let _only = api.exclusive();
    let k = KubeClients::new(&api.admin_kubeconfig);
    k.chart(
        "install",
        &["injector.separate=true", "injector.failurePolicy=Fail"],
    );
    injector_rolled_out(&k);
    let demo = api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"}));
    let plain = api.namespace("plain", json!({}));

    k.kubectl_with(&["apply", "-f", "-"], &pod("echo", &demo, json!({})));
    assert!(has_sidecar(api, &demo, "echo"), "labelled namespace");
    k.kubectl_with(&["apply", "-f", "-"], &pod("echo", &plain, json!({})));
    assert!(!has_sidecar(api, &plain, "echo"), "namespace not labelled");
    k.kubectl_with(
        &["apply", "-f", "-"],
        &pod(
            "opted-out",
            &demo,
            json!({"kuma.io/sidecar-injection": "disabled"}),
        ),
    );
    assert!(!has_sidecar(api, &demo, "opted-out"), "opted out");
    // A pod updated after its creation is not injected again.
    k.kubectl(&["-n", &demo, "label", "pod", "echo", "updated=yes"]);
    let echo = api
        .get(&format!("/api/v1/namespaces/{demo}/pods/echo"))
        .expect("the pod");
    let sidecars = echo["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "kuma-sidecar")
        .count();
    assert_eq!(sidecars, 1, "injected once: {echo}");

    // An upgrade generates a new CA and certificate; the injector's pod
    // still serves the old one, which the new caBundle does not verify.
    // With failurePolicy Fail the pod is refused, and the reason says so.
    upgrade(&k, &["injector.failurePolicy=Fail"]);
    let ran = k.try_kubectl_with(
        &["apply", "-f", "-"],
        &pod("after-upgrade", &demo, json!({})),
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
        api.get(&format!("/api/v1/namespaces/{demo}/pods/after-upgrade"))
            .is_none()
    );

    // The injector restarted with the new Secret: accepted, injected.
    k.kubectl(&[
        "-n",
        "kuma-system",
        "rollout",
        "restart",
        "deployment/kuma-injector",
    ]);
    injector_rolled_out(&k);
    k.kubectl_with(
        &["apply", "-f", "-"],
        &pod("after-upgrade", &demo, json!({})),
    );
    assert!(has_sidecar(api, &demo, "after-upgrade"));

    // The injector down: Fail refuses the pod, Ignore creates it bare.
    upgrade(&k, &["injector.failurePolicy=Fail", "injector.replicas=0"]);
    let no_injector = eventually(Duration::from_secs(60), || {
        api.list("/api/v1/namespaces/kuma-system/pods")
            .iter()
            .all(|p| {
                !p["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("kuma-injector")
            })
    });
    assert!(no_injector, "the injector's pod stayed");
    let ran = k.try_kubectl_with(&["apply", "-f", "-"], &pod("while-down", &demo, json!({})));
    assert!(
        !ran.ok && ran.stderr.contains("failed calling webhook"),
        "{}",
        ran.stderr
    );
    upgrade(
        &k,
        &["injector.failurePolicy=Ignore", "injector.replicas=0"],
    );
    k.kubectl_with(&["apply", "-f", "-"], &pod("while-down", &demo, json!({})));
    assert!(
        !has_sidecar(api, &demo, "while-down"),
        "created without a sidecar"
    );
    k.helm(&["uninstall", "kuma", "--namespace", "kuma-system"]);
}

#[test]
fn kumactl_install_control_plane_piped_to_kubectl_registers_the_same_webhook() {
    let cluster = Cluster::shared();
    let api = cluster.cp;
    let _only = api.exclusive();
    let k = KubeClients::new(&api.admin_kubeconfig);
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
    let manifests = String::from_utf8(rendered.stdout).unwrap();
    let applied = k.kubectl_with(&["apply", "-f", "-"], &manifests);
    assert!(
        applied.contains(
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/kuma-injector created"
        ),
        "{applied}"
    );
    injector_rolled_out(&k);
    let demo = api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"}));
    k.kubectl_with(&["apply", "-f", "-"], &pod("echo", &demo, json!({})));
    assert!(has_sidecar(api, &demo, "echo"));
    // What it installed, but the CRDs and the namespace (as helm
    // uninstall leaves them).
    let installed: Vec<&str> = manifests
        .split("\n---")
        .filter(|doc| {
            !doc.contains("kind: CustomResourceDefinition") && !doc.contains("\nkind: Namespace")
        })
        .collect();
    k.kubectl_with(
        &["delete", "--wait=false", "-f", "-"],
        &installed.join("\n---"),
    );
}

#[test]
fn the_tenancy_validator_refuses_objects_written_into_a_mesh_that_does_not_admit_their_namespace() {
    let cluster = Cluster::shared();
    let api = cluster.cp;
    let _only = api.exclusive();
    let k = KubeClients::new(&api.admin_kubeconfig);
    k.chart("install", &["injector.separate=true"]);
    injector_rolled_out(&k);
    let (team_a, team_b) = (
        api.namespace("team-a", json!({})),
        api.namespace("team-b", json!({})),
    );
    k.kubectl_with(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "team-a"},
                "spec": {"constraints": {"dataplaneProxy": {"requirements": [
                    {"tags": {"k8s.kuma.io/namespace": team_a}}]}}}})
        .to_string(),
    );
    let permission = |namespace: &str| {
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficPermission",
               "metadata": {"name": "allow-all", "namespace": namespace}, "mesh": "team-a",
               "spec": {"rules": [{"sources": [{"match": {"service": "*"}}],
                                   "destinations": [{"match": {"service": "*"}}]}]}})
        .to_string()
    };
    // Created by team b into team a's mesh: the API server refuses it with
    // the validator's reason.
    let ran = k.try_kubectl_with(&["apply", "-f", "-"], &permission(&team_b));
    assert!(!ran.ok, "team b wrote into team a's mesh");
    assert!(
        ran.stderr.contains("denied the request")
            && ran
                .stderr
                .contains(&format!("TrafficPermission {team_b}/allow-all")),
        "{}",
        ran.stderr
    );
    k.kubectl_with(&["apply", "-f", "-"], &permission(&team_a));

    // Updated into it: a Dataplane of team b's mesh moved to team a's is
    // refused too, and stays where it was.
    let dataplane = |mesh: &str| {
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
               "metadata": {"name": "web", "namespace": team_b}, "mesh": mesh,
               "spec": {"networking": {"inbound": [{"interface": "10.0.0.1:8080:8080",
                                                    "tags": {"service": "web"}}]}}})
        .to_string()
    };
    k.kubectl_with(&["apply", "-f", "-"], &dataplane("default"));
    let ran = k.try_kubectl_with(&["apply", "-f", "-"], &dataplane("team-a"));
    assert!(
        !ran.ok && ran.stderr.contains("denied the request"),
        "the update was taken: {}",
        ran.stderr
    );
    let stored = api
        .get(&format!(
            "/apis/kuma.io/v1alpha1/namespaces/{team_b}/dataplanes/web"
        ))
        .expect("the Dataplane");
    assert_eq!(stored["mesh"], "default");
    k.helm(&["uninstall", "kuma", "--namespace", "kuma-system"]);
}
