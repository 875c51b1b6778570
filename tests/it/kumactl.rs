//! `kumactl` driven as a process against a running `kuma-cp`.

use crate::common;

use common::{KumaCp, http, kumactl, kumactl_config};
use std::path::PathBuf;

struct Setup {
    cp: KumaCp,
    _dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup() -> Setup {
    let cp = KumaCp::start(&[]);
    let (dir, config) = kumactl_config(&cp);
    Setup {
        cp,
        _dir: dir,
        config,
    }
}

const RESOURCES: &str = "\
type: Mesh
name: team-a
---
type: Dataplane
mesh: team-a
name: redis-1
networking:
  inbound:
  - interface: 127.0.0.1:9000:6379
    tags:
      service: redis
      version: \"1\"
---
type: TrafficPermission
mesh: team-a
name: web-to-redis
rules:
- sources:
  - match:
      service: web
  destinations:
  - match:
      service: redis
";

#[test]
fn apply_then_get_shows_the_resources() {
    let s = setup();
    let run = kumactl(&s.config, &["apply", "-f", "-"], Some(RESOURCES));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("Dataplane \"redis-1\" in mesh \"team-a\" created"),
        "{}",
        run.stdout
    );

    let run = kumactl(&s.config, &["get", "meshes"], None);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some("team-a")),
        "{}",
        run.stdout
    );
    let run = kumactl(&s.config, &["--mesh", "team-a", "get", "dataplanes"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["MESH", "NAME", "TAGS"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["team-a", "redis-1", "service=redis", "version=1"]
    );

    let run = kumactl(
        &s.config,
        &["--mesh", "team-a", "get", "traffic-permissions"],
        None,
    );
    assert!(run.stdout.contains("web-to-redis"), "{}", run.stdout);

    let run = kumactl(
        &s.config,
        &[
            "--mesh",
            "team-a",
            "get",
            "dataplane",
            "redis-1",
            "-o",
            "json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json output");
    assert_eq!(v["networking"]["inbound"][0]["tags"]["version"], "1");
    let run = kumactl(
        &s.config,
        &["--mesh", "team-a", "get", "dataplanes", "-o", "yaml"],
        None,
    );
    assert!(
        run.stdout
            .starts_with("items:\n- type: Dataplane\n  name: redis-1\n"),
        "{}",
        run.stdout
    );

    let run = kumactl(
        &s.config,
        &["--mesh", "team-a", "inspect", "dataplanes"],
        None,
    );
    assert!(
        run.stdout.contains("STATUS") && run.stdout.contains("Offline"),
        "{}",
        run.stdout
    );

    // Applying the same file again updates.
    let run = kumactl(&s.config, &["apply", "-f", "-"], Some(RESOURCES));
    assert!(
        run.stdout.contains("redis-1\" in mesh \"team-a\" updated"),
        "{}",
        run.stdout
    );

    let run = kumactl(
        &s.config,
        &["--mesh", "team-a", "delete", "dataplane", "redis-1"],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = kumactl(
        &s.config,
        &["--mesh", "team-a", "get", "dataplane", "redis-1"],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("Error: Dataplane \"redis-1\" in mesh \"team-a\" not found"),
        "{}",
        run.stderr
    );
    drop(s.cp);
}

#[test]
fn a_bad_file_changes_nothing_and_says_why_in_one_line() {
    let s = setup();
    let bad = RESOURCES.replace("127.0.0.1:9000:6379", "127.0.0.1:abc");
    let run = kumactl(&s.config, &["apply", "-f", "-"], Some(&bad));
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("document 2 (Dataplane \"redis-1\"): networking.inbound[0].interface"),
        "{}",
        run.stderr
    );
    let run = kumactl(&s.config, &["get", "meshes"], None);
    assert!(
        !run.stdout.contains("team-a"),
        "the valid mesh of a bad file was not applied"
    );

    let run = kumactl(
        &s.config,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: [oops\n"),
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not valid YAML"), "{}", run.stderr);

    let run = kumactl(&s.config, &["apply", "-f", "/no/such/file.yaml"], None);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("/no/such/file.yaml"), "{}", run.stderr);

    let run = kumactl(
        &s.config,
        &["apply", "--dry-run", "-f", "-"],
        Some(RESOURCES),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("is valid"), "{}", run.stdout);
    let run = kumactl(&s.config, &["get", "meshes"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("default"), "{}", run.stdout);
    assert!(!run.stdout.contains("team-a"), "dry run applied nothing");

    let run = kumactl(&s.config, &["--mesh", "nowhere", "get", "dataplanes"], None);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("mesh \"nowhere\" does not exist"),
        "{}",
        run.stderr
    );
}

#[test]
fn control_planes_are_kept_in_the_config_file() {
    let s = setup();
    let other = KumaCp::start(&[]);
    let run = kumactl(
        &s.config,
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "other",
            "--address",
            &other.api,
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = kumactl(&s.config, &["config", "control-planes", "list"], None);
    let active: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(active.len(), 1);
    assert!(active[0].contains("other"), "{}", run.stdout);

    // Writes go to the current control plane only.
    let run = kumactl(
        &s.config,
        &["apply", "-f", "-"],
        Some("type: Mesh\nname: only-on-other\n"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let on_other = http("GET", &format!("{}/meshes/only-on-other", other.api), None);
    assert_eq!(
        on_other.status, 200,
        "the mesh is on the current control plane"
    );
    let run = kumactl(
        &s.config,
        &["config", "control-planes", "switch", "--name", "test"],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = kumactl(&s.config, &["get", "meshes"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("default"), "{}", run.stdout);
    assert!(!run.stdout.contains("only-on-other"), "{}", run.stdout);

    let run = kumactl(
        &s.config,
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "other",
            "--address",
            &other.api,
        ],
        None,
    );
    assert_eq!(run.code, 1, "adding a name twice needs --overwrite");
    let run = kumactl(
        &s.config,
        &["config", "control-planes", "remove", "--name", "other"],
        None,
    );
    assert_eq!(run.code, 0);
    let run = kumactl(
        &s.config,
        &["config", "control-planes", "switch", "--name", "other"],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no control plane named \"other\""),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_control_plane_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let port = common::free_port();
    std::fs::write(&config, format!(
        "contexts:\n- name: gone\n  controlPlane: gone\ncontrolPlanes:\n- name: gone\n  coordinates:\n    apiServer:\n      url: http://127.0.0.1:{port}\ncurrentContext: gone\n"
    )).unwrap();
    let run = kumactl(&config, &["get", "meshes"], None);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "cannot reach the control plane at http://127.0.0.1:{port}"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
}

#[test]
fn install_database_schema_prints_the_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let run = kumactl(
        &dir.path().join("config"),
        &["install", "database-schema", "--target=postgres"],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("CREATE TABLE resources"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("INSERT INTO schema_migrations"),
        "{}",
        run.stdout
    );
    let run = kumactl(&dir.path().join("config"), &["version"], None);
    assert_eq!(run.stdout.trim(), env!("CARGO_PKG_VERSION"));
}

/// Each mistake is named as what it is, not as what it caused.
#[test]
fn errors_name_the_actual_mistake() {
    let s = setup();
    let run = |args: &[&str], stdin: Option<&str>| kumactl(&s.config, args, stdin);

    let wrong_case = run(
        &["apply", "-f", "-"],
        Some("type: DataPlane\nmesh: default\nname: web\n"),
    );
    assert_ne!(wrong_case.code, 0);
    assert!(
        wrong_case
            .stderr
            .contains("unknown type \"DataPlane\"; did you mean \"Dataplane\"?")
            && !wrong_case.stderr.contains("does not belong to a mesh"),
        "{}",
        wrong_case.stderr
    );

    let host_name = run(
        &["apply", "-f", "-"],
        Some(
            "type: Dataplane\nmesh: default\nname: web\nnetworking:\n  inbound:\n  - interface: localhost:10004:9004\n    tags: {service: web}\n",
        ),
    );
    assert_ne!(host_name.code, 0);
    assert!(
        host_name
            .stderr
            .contains("\"localhost\" is a host name; addresses here are IP addresses"),
        "{}",
        host_name.stderr
    );

    let no_mesh = run(
        &["delete", "dataplane", "web", "--mesh", "nosuchmesh"],
        None,
    );
    assert_ne!(no_mesh.code, 0);
    assert!(
        no_mesh
            .stderr
            .contains("mesh \"nosuchmesh\" does not exist"),
        "{}",
        no_mesh.stderr
    );

    // The API's spelling of a kind works as a kumactl word too.
    for word in [
        "trafficpermissions",
        "traffic-permissions",
        "trafficpermission",
    ] {
        let listed = run(&["get", word], None);
        assert_eq!(listed.code, 0, "{word}: {}", listed.stderr);
    }
}

/// Today's Kuma YAML is taken as well as the reference's, and read back in
/// the reference's dialect (the one model inside).
#[test]
fn todays_kuma_yaml_is_accepted_and_read_back_in_the_references_dialect() {
    let s = setup();
    let run = |args: &[&str], stdin: Option<&str>| kumactl(&s.config, args, stdin);
    let applied = run(
        &["apply", "-f", "-"],
        Some(
            "type: Dataplane
mesh: default
name: backend-1
networking:
  address: 127.0.0.1
  inbound:
  - port: 11011
    servicePort: 11012
    tags:
      kuma.io/service: backend
      kuma.io/protocol: tcp
  outbound:
  - port: 33033
    tags:
      kuma.io/service: database
---
type: TrafficPermission
mesh: default
name: web-to-backend
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: backend
---
type: TrafficLog
mesh: default
name: all
sources:
- match:
    kuma.io/service: '*'
destinations:
- match:
    kuma.io/service: '*'
---
type: TrafficRoute
mesh: default
name: canary
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: backend
conf:
  split:
  - weight: 90
    destination:
      kuma.io/service: backend
      version: '1'
  - weight: 10
    destination:
      kuma.io/service: backend
      version: '2'
---
type: TrafficTrace
mesh: default
name: trace-all-traffic
selectors:
- match:
    kuma.io/service: '*'
",
        ),
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    // kumactl gets and deletes them by Kuma's words.
    let routes = run(&["get", "traffic-routes"], None);
    assert!(routes.stdout.contains("canary"), "{}", routes.stdout);
    let route = common::http(
        "GET",
        &format!("{}/meshes/default/traffic-routes/canary", s.cp.api),
        None,
    )
    .body;
    assert_eq!(
        route["conf"][1],
        serde_json::json!({"weight": 10, "destination": {"service": "backend", "version": "2"}})
    );
    let traces = run(&["get", "traffic-traces", "-o", "json"], None);
    assert!(
        traces.stdout.contains("trace-all-traffic"),
        "{}",
        traces.stdout
    );
    assert_eq!(
        run(&["delete", "traffic-trace", "trace-all-traffic"], None).code,
        0
    );
    assert!(
        !run(&["get", "traffic-traces"], None)
            .stdout
            .contains("trace-all-traffic")
    );
    let dataplane = common::http(
        "GET",
        &format!("{}/meshes/default/dataplanes/backend-1", s.cp.api),
        None,
    )
    .body;
    assert_eq!(
        dataplane["networking"],
        serde_json::json!({
            "inbound": [{"interface": "127.0.0.1:11011:11012",
                         "tags": {"service": "backend", "protocol": "tcp"}}],
            "outbound": [{"interface": ":33033", "service": "database"}]
        })
    );
    let permission = common::http(
        "GET",
        &format!(
            "{}/meshes/default/traffic-permissions/web-to-backend",
            s.cp.api
        ),
        None,
    )
    .body;
    assert_eq!(
        permission["rules"],
        serde_json::json!([{"sources": [{"match": {"service": "web"}}],
                            "destinations": [{"match": {"service": "backend"}}]}])
    );
    let log = common::http(
        "GET",
        &format!("{}/meshes/default/traffic-logs/all", s.cp.api),
        None,
    )
    .body;
    assert_eq!(log["rules"][0]["sources"][0]["match"]["service"], "*");

    // A document mixing both shapes names each field of the newer one.
    let mixed = run(
        &["apply", "-f", "-"],
        Some(
            "type: TrafficPermission\nmesh: default\nname: mixed\nrules: []\nsources: []\ndestinations: []\n",
        ),
    );
    assert_ne!(mixed.code, 0);
    assert!(
        mixed.stderr.contains("sources: is today's Kuma shape")
            && mixed.stderr.contains("destinations: is today's Kuma shape"),
        "{}",
        mixed.stderr
    );
}

#[test]
fn inspect_meshes_and_services_config_view_and_completion() {
    let s = setup();
    let run = |args: &[&str], stdin: Option<&str>| kumactl(&s.config, args, stdin);
    let applied = run(
        &["apply", "-f", "-"],
        Some(
            "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags: {service: redis}\n",
        ),
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);

    let meshes = run(&["inspect", "meshes"], None).stdout;
    let default = meshes
        .lines()
        .find(|l| l.starts_with("default"))
        .unwrap_or("");
    assert!(
        meshes.starts_with("NAME") && default.contains("off") && default.ends_with("0/1"),
        "{meshes}"
    );
    let services = run(&["inspect", "services"], None).stdout;
    let redis = services
        .lines()
        .find(|l| l.starts_with("redis"))
        .unwrap_or("");
    assert!(
        redis.contains("Offline") && redis.ends_with("0/1"),
        "{services}"
    );
    let as_json: serde_json::Value =
        serde_json::from_str(&run(&["inspect", "services", "-o", "json"], None).stdout).unwrap();
    assert_eq!(as_json["items"][0]["service"], "redis");

    let view = run(&["config", "view"], None).stdout;
    assert!(view.contains(&s.cp.api), "{view}");

    let completion = run(&["completion", "bash"], None);
    assert_eq!(completion.code, 0);
    assert!(completion.stdout.contains("kumactl") && completion.stdout.contains("inspect"));
}

/// Kuma's Universal YAML of today's policies: `kumactl apply` takes them
/// as written, `kumactl get` lists them with their targets, and `kumactl
/// inspect dataplane --type=policies` shows per inbound and outbound what
/// each policy contributed and what it all merged into.
#[test]
fn target_ref_policies_apply_get_and_inspect() {
    let s = setup();
    let resources = "\
type: Mesh
name: shop
mtls:
  enabled: true
  ca: {builtin: {}}
---
type: Dataplane
mesh: shop
name: web-1
networking:
  inbound:
  - interface: 127.0.0.1:9100:8080
    tags: {service: web, protocol: http}
  outbound:
  - interface: :9101
    service: backend
---
type: Dataplane
mesh: shop
name: backend-1
networking:
  inbound:
  - interface: 127.0.0.1:9102:8080
    tags: {service: backend, protocol: http, version: v2}
---
type: MeshTrafficPermission
name: web-clients
mesh: shop
spec:
  targetRef:
    kind: MeshService
    name: web
  from:
  - targetRef: {kind: Mesh}
    default: {action: Deny}
  - targetRef: {kind: MeshService, name: frontend}
    default: {action: Allow}
---
type: MeshTLS
name: tls12
mesh: shop
spec:
  targetRef: {kind: Mesh}
  from:
  - targetRef: {kind: Mesh}
    default:
      tlsVersion: {min: TLS12}
---
type: MeshHTTPRoute
name: v2
mesh: shop
spec:
  targetRef: {kind: MeshService, name: web}
  to:
  - targetRef: {kind: MeshService, name: backend}
    rules:
    - matches: [{path: {type: PathPrefix, value: /v2}}]
      default:
        backendRefs: [{kind: MeshServiceSubset, name: backend, tags: {version: v2}}]
---
type: MeshTrafficPermission
name: backend-by-id
mesh: shop
spec:
  targetRef: {kind: Dataplane, labels: {kuma.io/service: backend}}
  rules:
  - default:
      deny: [{spiffeID: {type: Exact, value: 'spiffe://shop/legacy'}}]
      allow: [{spiffeID: {type: Prefix, value: 'spiffe://shop/'}}]
";
    let run = kumactl(&s.config, &["apply", "-f", "-"], Some(resources));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let get = kumactl(
        &s.config,
        &["get", "meshtrafficpermissions", "--mesh", "shop"],
        None,
    );
    assert_eq!(get.code, 0, "{}", get.stderr);
    assert!(
        get.stdout.contains("TARGETREF KIND")
            && get.stdout.lines().any(|l| l.contains("web-clients")
                && l.contains("MeshService")
                && l.contains("web")),
        "{}",
        get.stdout
    );
    let inspect = kumactl(
        &s.config,
        &[
            "inspect",
            "dataplane",
            "web-1",
            "--mesh",
            "shop",
            "--type=policies",
        ],
        None,
    );
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let text = &inspect.stdout;
    for expected in [
        "MeshTrafficPermission web-clients (targetRef MeshService)",
        "peers service=frontend -> Allow (from web-clients)",
        "peers service!=frontend -> Deny (from web-clients)",
        "MeshTLS tls12 (targetRef Mesh)",
        "\"min\":\"TLS12\"",
        "MeshHTTPRoute v2:",
        "merged: splits backend 1, after 1 HTTP rules",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    let json = http(
        "GET",
        &format!("{}/meshes/shop/dataplanes/web-1/policies", s.cp.api),
        None,
    );
    assert_eq!(json.status, 200);
    assert_eq!(
        json.body["outbound"][0]["routes"]["httpRules"][0]["default"]["backendRefs"][0]["name"],
        "backend"
    );
    let backend = kumactl(
        &s.config,
        &[
            "inspect",
            "dataplane",
            "backend-1",
            "--mesh",
            "shop",
            "--type=policies",
        ],
        None,
    );
    assert_eq!(backend.code, 0, "{}", backend.stderr);
    let expected =
        "peers by SPIFFE id: deny spiffe://shop/legacy, allow spiffe://shop/* (from backend-by-id)";
    assert!(backend.stdout.contains(expected), "{}", backend.stdout);
}
