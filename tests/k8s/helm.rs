//! Real Helm 4 installs, upgrades and uninstalls the chart on a real API
//! server: what the release holds at each step, by the labels every object
//! of the release carries, and what Helm leaves (the CRDs).

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use common::KubeClients;
use control_plane::ControlPlane;

/// `Kind/name` of every object of the release, of the kinds it installs.
fn chart_objects(api: &ControlPlane) -> Vec<String> {
    let mut names = Vec::new();
    for (kind, path) in [
        (
            "Deployment",
            "/apis/apps/v1/namespaces/kuma-system/deployments",
        ),
        ("Service", "/api/v1/namespaces/kuma-system/services"),
        (
            "ServiceAccount",
            "/api/v1/namespaces/kuma-system/serviceaccounts",
        ),
        (
            "ClusterRole",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        ),
        (
            "MutatingWebhookConfiguration",
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        ),
        (
            "ValidatingWebhookConfiguration",
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        ),
    ] {
        let released = format!("{path}?labelSelector=app.kubernetes.io%2Finstance%3Dkuma");
        for object in api.list(&released) {
            names.push(format!(
                "{kind}/{}",
                object["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
    names.sort();
    names
}

fn kuma_crds(api: &ControlPlane) -> usize {
    api.list("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        .iter()
        .filter(|crd| crd["spec"]["group"] == "kuma.io")
        .count()
}

#[test]
fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let k = KubeClients::new(&api.admin_kubeconfig);
    let installed = k.chart("install", &[]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(
        chart_objects(api),
        [
            "ClusterRole/kuma-control-plane",
            "ClusterRole/kuma-policy-editor",
            "ClusterRole/kuma-policy-viewer",
            "Deployment/kuma-control-plane",
            "MutatingWebhookConfiguration/kuma-injector",
            "Service/kuma-control-plane",
            "ServiceAccount/kuma-control-plane",
            "ValidatingWebhookConfiguration/kuma-validator",
        ]
    );
    assert_eq!(kuma_crds(api), kuma::k8s::crd::CRDS.len());
    assert!(k.helm(&["list", "-n", "kuma-system"]).contains("deployed"));

    k.chart("upgrade", &["injector.separate=true"]);
    assert!(chart_objects(api).contains(&"Deployment/kuma-injector".to_string()));
    let cp = api
        .get("/apis/apps/v1/namespaces/kuma-system/deployments/kuma-control-plane")
        .unwrap();
    let env = cp["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(!env.contains("KUMA_INJECTOR_ENABLED"), "{env}");

    k.chart("upgrade", &["injector.separate=false"]);
    assert!(!chart_objects(api).contains(&"Deployment/kuma-injector".to_string()));
    let history = k.helm(&["history", "kuma", "-n", "kuma-system"]);
    assert_eq!(history.matches("superseded").count(), 2, "{history}");

    k.helm(&["uninstall", "kuma", "-n", "kuma-system"]);
    assert_eq!(chart_objects(api), Vec::<String>::new());
    let release_secrets = api
        .list("/api/v1/namespaces/kuma-system/secrets?labelSelector=owner%3Dhelm")
        .len();
    assert_eq!(release_secrets, 0, "Helm's release records stayed");
    // Helm leaves CRDs installed.
    assert_eq!(kuma_crds(api), kuma::k8s::crd::CRDS.len());
}
