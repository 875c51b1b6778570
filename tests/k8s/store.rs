//! `kuma-cp` in Kubernetes mode against a real API server, as the chart's
//! ServiceAccount: Kuma's custom resources reach `kumactl get` (and the
//! index), bad objects are refused with the HTTP API's errors and reported
//! on the object, the API is read-only, and neither a restarted API server
//! nor an etcd compaction (watches answered `410 Gone`) loses anything.

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use common::{KumaCp, eventually, http, kumactl, kumactl_config};
use control_plane::ControlPlane;
use kuma::resources::{ResourceKey, ResourceType};
use kuma::store::{ResourceStore, StoreError};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const MESHES: &str = "/apis/kuma.io/v1alpha1/meshes";

fn dataplanes(ns: &str) -> String {
    format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes")
}

fn dataplane(name: &str, mesh: &str, ip: &str, service: &str) -> serde_json::Value {
    json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
        "metadata": {"name": name},
        "mesh": mesh,
        "spec": {"networking": {"inbound": [{"interface": format!("{ip}:8080:8080"), "tags": {"service": service}}]}}
    })
}

/// The names `kumactl get dataplanes` lists for the mesh.
fn listed(config: &Path, mesh: &str) -> Vec<String> {
    let run = kumactl(
        config,
        &["--mesh", mesh, "get", "dataplanes", "-o", "json"],
        None,
    );
    if run.code != 0 {
        // The mesh may not have arrived yet.
        return vec![run.stderr];
    }
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    let mut names: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn custom_resources_reach_kumactl_and_bad_ones_are_reported_on_the_object() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("demo", json!({}));
    let cp = api.kuma_cp(&[]);
    // The default mesh is written to the API server on first start.
    assert!(eventually(Duration::from_secs(10), || api
        .get(&format!("{MESHES}/default"))
        .is_some()));
    let (_dir, config) = kumactl_config(&cp);

    api.apply(
        MESHES,
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "team-a"}}),
    );
    api.apply(
        &dataplanes(&ns),
        dataplane("web-1", "team-a", "10.0.0.1", "web"),
    );
    api.apply(
        &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/trafficpermissions"),
        json!({
            "apiVersion": "kuma.io/v1alpha1", "kind": "TrafficPermission",
            "metadata": {"name": "web-to-db", "labels": {"kuma.io/mesh": "team-a"}},
            "spec": {"rules": [{"sources": [{"match": {"service": "web"}}], "destinations": [{"match": {"service": "db"}}]}]}
        }),
    );
    assert!(
        eventually(Duration::from_secs(10), || listed(&config, "team-a")
            == [format!("web-1.{ns}")]),
        "{:?}",
        listed(&config, "team-a")
    );
    // Each kind has a watch of its own: the permission may arrive a moment
    // after the dataplane.
    let permissions = || {
        kumactl(
            &config,
            &["--mesh", "team-a", "get", "traffic-permissions"],
            None,
        )
        .stdout
    };
    assert!(
        eventually(Duration::from_secs(10), || permissions()
            .contains(&format!("web-to-db.{ns}"))),
        "{}",
        permissions()
    );
    // The new policy kinds are custom resources like the others.
    api.apply(
        &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/trafficroutes"),
        json!({
            "apiVersion": "kuma.io/v1alpha1", "kind": "TrafficRoute", "mesh": "team-a",
            "metadata": {"name": "web-to-db"},
            "spec": {"sources": [{"match": {"service": "web"}}], "destinations": [{"match": {"service": "db"}}],
                     "conf": [{"weight": 100, "destination": {"service": "db", "version": "2"}}]}
        }),
    );
    api.apply(
        &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/traffictraces"),
        json!({
            "apiVersion": "kuma.io/v1alpha1", "kind": "TrafficTrace", "mesh": "team-a",
            "metadata": {"name": "everything"},
            "spec": {"selectors": [{"match": {"service": "*"}}]}
        }),
    );
    for (kind, name) in [
        ("traffic-routes", format!("web-to-db.{ns}")),
        ("traffic-traces", format!("everything.{ns}")),
    ] {
        let got = || kumactl(&config, &["--mesh", "team-a", "get", kind], None).stdout;
        assert!(
            eventually(Duration::from_secs(10), || got().contains(&name)),
            "{kind}: {}",
            got()
        );
    }
    let meshes = || kumactl(&config, &["get", "meshes"], None).stdout;
    assert!(
        eventually(Duration::from_secs(10), || {
            let listed = meshes();
            listed.contains("default") && listed.contains("team-a")
        }),
        "{}",
        meshes()
    );

    // A malformed Dataplane: the same errors the HTTP API gives, on an Event
    // of the object and in the log; it is not used.
    let bad = json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
        "metadata": {"name": "broken"}, "mesh": "team-a",
        "spec": {"networking": {"inbound": [{"interface": "10.0.0.9:abc", "tags": {"service": "web"}}]}}
    });
    api.apply(&dataplanes(&ns), bad.clone());
    let universal = KumaCp::start(&[]);
    let http_error = http(
        "PUT",
        &format!("{}/meshes/team-a/dataplanes/broken", universal.api),
        Some(
            &json!({"type": "Dataplane", "mesh": "team-a", "name": "broken",
                     "networking": bad["spec"]["networking"]})
            .to_string(),
        ),
    );
    let expected = http_error.body["causes"][0]["message"]
        .as_str()
        .expect("the API explains")
        .to_string();
    let event = || {
        api.list(&format!("/api/v1/namespaces/{ns}/events"))
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "broken")
    };
    assert!(eventually(Duration::from_secs(10), || event().is_some()));
    let event = event().unwrap();
    let message = event["message"].as_str().unwrap_or("");
    assert_eq!(event["type"], "Warning");
    assert!(
        message.contains("networking.inbound[0].interface") && message.contains(&expected),
        "{message} (the API says: {expected})"
    );
    assert!(cp.log().contains("invalid object is not used"));
    assert_eq!(listed(&config, "team-a"), [format!("web-1.{ns}")]);

    // Read-only: writes name the kubectl to use.
    let write = http(
        "PUT",
        &format!("{}/meshes/team-a/dataplanes/x", cp.api),
        Some(r#"{"type": "Dataplane", "mesh": "team-a", "name": "x"}"#),
    );
    assert_eq!(write.status, 405);
    assert!(
        write.body["details"]
            .as_str()
            .unwrap_or("")
            .contains("kubectl apply")
    );

    // Deleted on the API server: gone from kumactl.
    assert!(api.delete(&format!("{}/web-1", dataplanes(&ns))));
    assert!(eventually(Duration::from_secs(10), || listed(
        &config, "team-a"
    )
    .is_empty()));
}

#[test]
fn an_api_server_restart_and_an_etcd_compaction_lose_nothing() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("demo", json!({}));
    let cp = api.kuma_cp(&[]);
    let (_dir, config) = kumactl_config(&cp);
    for i in 0..3 {
        api.apply(
            &dataplanes(&ns),
            dataplane(&format!("dp-{i}"), "default", "10.0.0.1", "web"),
        );
    }
    let expected = |n: usize| -> Vec<String> { (0..n).map(|i| format!("dp-{i}.{ns}")).collect() };
    assert!(eventually(Duration::from_secs(10), || listed(
        &config, "default"
    ) == expected(3)));

    // The API server restarts under kuma-cp: its watches end, and a change
    // made once it is back arrives.
    api.restart_apiserver();
    api.apply(
        &dataplanes(&ns),
        dataplane("dp-3", "default", "10.0.0.1", "web"),
    );
    assert!(
        eventually(Duration::from_secs(10), || listed(&config, "default")
            == expected(4)),
        "{:?}",
        listed(&config, "default")
    );

    // etcd compacts its history and the API server restarts: resuming
    // watches get 410 Gone and list again, with a deletion and a creation
    // made while they were away.
    api.compact_etcd();
    api.restart_apiserver();
    assert!(api.delete(&format!("{}/dp-0", dataplanes(&ns))));
    api.apply(
        &dataplanes(&ns),
        dataplane("dp-4", "default", "10.0.0.1", "web"),
    );
    let after: Vec<String> = (1..5).map(|i| format!("dp-{i}.{ns}")).collect();
    assert!(
        eventually(Duration::from_secs(15), || listed(&config, "default")
            == after),
        "{:?}",
        listed(&config, "default")
    );
    // The resumed watches were answered 410 Gone, and relisted.
    assert!(
        cp.log().contains("too old resource version"),
        "no watch was expired:\n{}",
        cp.log()
    );
}

/// The store conformance suite ([`kuma_test_support::store_cases`]), which
/// the memory and Postgres stores pass in `tests/it`, against the
/// kubernetes store on the real cluster, as the chart's ServiceAccount.
/// The cases run one after another, each on a cluster with no Kuma
/// objects ([`ControlPlane::exclusive`]): Meshes are cluster-wide, and the
/// cases' mesh names would collide. One case is not Kubernetes': there a
/// name is unique in its namespace across meshes (as in Kuma), so
/// `names_are_unique_per_mesh_and_kind` is replaced by
/// [`a_name_is_unique_in_its_namespace_across_meshes`].
#[test]
fn the_kubernetes_store_passes_the_store_conformance_suite() {
    use kuma_test_support::store_cases as cases;
    let cp = ControlPlane::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    macro_rules! run {
        ($($case:path),* $(,)?) => {$({
            let _only = cp.exclusive();
            let kubeconfig = cp.kuma_cp_kubeconfig();
            runtime.block_on(async {
                let store = kubernetes_store(&kubeconfig).await;
                $case(&store).await;
            });
        })*};
    }
    run!(
        cases::every_kind_round_trips,
        cases::create_assigns_a_version_and_get_returns_it,
        a_name_is_unique_in_its_namespace_across_meshes,
        cases::resources_need_their_mesh,
        cases::stale_updates_are_refused,
        cases::deleting_a_mesh_deletes_what_is_in_it,
        cases::lists_page_in_name_order_and_filter_by_tag,
        cases::insights_round_trip,
        cases::deleting_a_dataplane_deletes_its_insight,
        cases::insights_are_not_announced,
        cases::change_feed_reports_every_write,
    );
}

/// On Kubernetes a name is unique in its namespace whatever the mesh: a
/// second mesh's dataplane of the same name is refused and changes nothing.
async fn a_name_is_unique_in_its_namespace_across_meshes(s: &dyn ResourceStore) {
    use kuma_test_support::store_cases::{dataplane, mesh, named, permission};
    s.create(mesh("a")).await.unwrap();
    s.create(mesh("b")).await.unwrap();
    s.create(dataplane("a", "x", "web", 1000)).await.unwrap();
    let clash = s.create(dataplane("b", "x", "web", 2000)).await;
    assert!(
        matches!(clash, Err(StoreError::AlreadyExists(_))),
        "{clash:?}"
    );
    // Of another kind, the name is free.
    s.create(permission("a", "x")).await.unwrap();
    let stored = s
        .get(&ResourceKey::new(ResourceType::Dataplane, "a", &named("x")))
        .await
        .unwrap();
    assert_eq!(stored.spec, dataplane("a", "x", "web", 1000).spec);
}

/// The kubernetes store as `kuma-cp` opens it, with the kubeconfig of the
/// chart's ServiceAccount.
async fn kubernetes_store(kubeconfig: &Path) -> kuma::k8s::store::KubernetesStore {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("kuma-cp's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("a client configuration");
    let client = kube::Client::try_from(config).expect("a client");
    kuma::k8s::store::KubernetesStore::connect(
        client,
        "kuma-system",
        kuma::runtime::Leadership::always(),
        Duration::from_secs(30),
    )
    .await
    .expect("the kubernetes store connects")
}
