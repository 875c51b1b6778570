//! Hard multi-tenancy on one control plane: a team's credentials reach its
//! own mesh and nothing of another's, on every endpoint and verb; a mesh
//! admits only the dataplanes its constraints allow. (Handshakes between
//! meshes: `mtls_e2e.rs`; another mesh's dataplane token on a stream:
//! `tokens.rs`; pods of other namespaces: `tests/k8s/pods.rs`.)

use crate::common;

use common::{KumaCp, MTLS, http, http_with, kumactl, kumactl_config_for, put_dataplane};
use serde_json::{Value, json};

/// Every kind a team writes, with a valid body for mesh `mesh`.
fn policies(mesh: &str) -> Vec<(&'static str, Value)> {
    let selector = json!([{"match": {"service": "*"}}]);
    vec![
        (
            "traffic-permissions",
            json!({"type": "TrafficPermission", "mesh": mesh, "name": "p",
                   "rules": [{"sources": selector, "destinations": selector}]}),
        ),
        (
            "traffic-logs",
            json!({"type": "TrafficLog", "mesh": mesh, "name": "p",
                   "sources": selector, "destinations": selector}),
        ),
        (
            "traffic-routes",
            json!({"type": "TrafficRoute", "mesh": mesh, "name": "p",
                   "sources": selector, "destinations": selector,
                   "conf": [{"weight": 100, "destination": {"service": "web"}}]}),
        ),
        (
            "traffic-traces",
            json!({"type": "TrafficTrace", "mesh": mesh, "name": "p", "selectors": selector}),
        ),
        (
            "proxytemplates",
            json!({"type": "ProxyTemplate", "mesh": mesh, "name": "p", "selectors": selector,
                   "imports": ["default-proxy"]}),
        ),
        ("meshtrafficpermissions", mesh_traffic_permission(mesh)),
        ("meshtlses", mesh_tls(mesh)),
        ("meshhttproutes", mesh_http_route(mesh)),
        (
            "meshtcproutes",
            json!({"type": "MeshTCPRoute", "mesh": mesh, "name": "p", "spec": {"to": [
                {"targetRef": {"kind": "MeshService", "name": "web"},
                 "rules": [{"default": {"backendRefs": [{"kind": "MeshService", "name": "web"}]}}]}]}}),
        ),
    ]
}

fn mesh_traffic_permission(mesh: &str) -> Value {
    json!({"type": "MeshTrafficPermission", "mesh": mesh, "name": "p", "spec": {
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}})
}

fn mesh_tls(mesh: &str) -> Value {
    json!({"type": "MeshTLS", "mesh": mesh, "name": "p", "spec": {
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"mode": "Strict"}}]}})
}

fn mesh_http_route(mesh: &str) -> Value {
    json!({"type": "MeshHTTPRoute", "mesh": mesh, "name": "p", "spec": {"to": [
        {"targetRef": {"kind": "MeshService", "name": "web"},
         "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "default": {"backendRefs": [{"kind": "MeshService", "name": "web"}]}}]}]}})
}

/// Two meshes with a dataplane and every kind of policy each, and team A
/// bound to a role over mesh `team-a` only. Returns team A's user token.
fn two_teams(cp: &KumaCp) -> String {
    for mesh in ["team-a", "team-b"] {
        cp.put(&format!("/meshes/{mesh}"), MTLS);
        put_dataplane(cp, mesh, &format!("web-{mesh}"), (7001, 7002), "web", &[]);
        for (collection, body) in policies(mesh) {
            cp.put(&format!("/meshes/{mesh}/{collection}/p"), &body.to_string());
        }
    }
    cp.put(
        "/access-roles/team-a",
        &json!({"type": "AccessRole", "name": "team-a", "rules": [{"mesh": "team-a",
            "access": ["CREATE", "UPDATE", "DELETE", "GENERATE_DATAPLANE_TOKEN", "VIEW_CONFIG_DUMP"]}]})
        .to_string(),
    );
    cp.put(
        "/access-role-bindings/team-a",
        &json!({"type": "AccessRoleBinding", "name": "team-a",
            "subjects": [{"type": "Group", "name": "team-a"}], "roles": ["team-a"]})
        .to_string(),
    );
    let minted = http(
        "POST",
        &format!("{}/tokens/user", cp.api),
        Some(r#"{"name": "alice", "groups": ["team-a"], "validFor": "1h"}"#),
    );
    assert_eq!(minted.status, 200, "{}", minted.body);
    minted.body.as_str().expect("a token").to_string()
}

/// Every request a team could make of one mesh: (method, path, body).
fn requests_of(mesh: &str) -> Vec<(&'static str, String, Option<String>)> {
    let dp = format!("web-{mesh}");
    let mut out = vec![
        ("GET", format!("/meshes/{mesh}"), None),
        ("PUT", format!("/meshes/{mesh}"), Some(MTLS.to_string())),
        ("GET", format!("/meshes/{mesh}/dataplanes"), None),
        ("GET", format!("/meshes/{mesh}/dataplanes/{dp}"), None),
        (
            "PUT",
            format!("/meshes/{mesh}/dataplanes/{dp}"),
            Some(
                json!({"networking": {"inbound": [{"interface": "127.0.0.1:7001:7002",
                "tags": {"service": "web"}}]}})
                .to_string(),
            ),
        ),
        ("GET", format!("/meshes/{mesh}/dataplanes+insights"), None),
        (
            "GET",
            format!("/meshes/{mesh}/dataplanes+insights/{dp}"),
            None,
        ),
        (
            "GET",
            format!("/meshes/{mesh}/dataplanes/{dp}/policies"),
            None,
        ),
        ("GET", format!("/meshes/{mesh}/dataplanes/{dp}/xds"), None),
        ("GET", format!("/meshes/{mesh}/pods-without-sidecar"), None),
        (
            "POST",
            "/tokens/dataplane".to_string(),
            Some(json!({"name": dp, "mesh": mesh}).to_string()),
        ),
    ];
    for (collection, body) in policies(mesh) {
        out.push(("GET", format!("/meshes/{mesh}/{collection}"), None));
        out.push(("GET", format!("/meshes/{mesh}/{collection}/p"), None));
        out.push((
            "PUT",
            format!("/meshes/{mesh}/{collection}/p"),
            Some(body.to_string()),
        ));
    }
    // Last, so the reads above find what they read.
    for (collection, _) in policies(mesh) {
        out.push(("DELETE", format!("/meshes/{mesh}/{collection}/p"), None));
    }
    out.push(("DELETE", format!("/meshes/{mesh}/dataplanes/{dp}"), None));
    out
}

/// What the admin sees of mesh `mesh`: every resource, as JSON.
fn everything_in(cp: &KumaCp, mesh: &str) -> Vec<Value> {
    let mut out = vec![http("GET", &format!("{}/meshes/{mesh}", cp.api), None).body];
    for collection in ["dataplanes"]
        .into_iter()
        .chain(policies(mesh).into_iter().map(|(c, _)| c))
    {
        out.push(
            http(
                "GET",
                &format!("{}/meshes/{mesh}/{collection}", cp.api),
                None,
            )
            .body,
        );
    }
    out
}

#[test]
fn a_team_token_reaches_its_own_mesh_and_nothing_of_another() {
    let cp = KumaCp::start(&[]);
    let token = two_teams(&cp);
    let bearer = format!("Bearer {token}");
    let as_alice = |method: &str, path: &str, body: Option<&str>| {
        http_with(
            method,
            &format!("{}{path}", cp.api),
            body,
            &[("authorization", &bearer)],
        )
    };

    // Mesh B: every endpoint and verb is refused, says what is missing,
    // names nothing of mesh B, and changes nothing.
    let before = everything_in(&cp, "team-b");
    for (method, path, body) in requests_of("team-b") {
        let answer = as_alice(method, &path, body.as_deref());
        let text = answer.body.to_string();
        assert_eq!(answer.status, 403, "{method} {path}: {text}");
        assert!(
            text.contains("user \\\"alice\\\" may not") && text.contains("team-b"),
            "{method} {path}: {text}"
        );
        // Only what the request itself named is repeated.
        let asked = format!("{path} {}", body.as_deref().unwrap_or(""));
        assert!(
            !text.contains("web-team-b") || asked.contains("web-team-b"),
            "{method} {path} leaks a name of mesh B: {text}"
        );
    }
    assert_eq!(everything_in(&cp, "team-b"), before, "mesh B unchanged");

    // Mesh A: the same requests succeed.
    for (method, path, body) in requests_of("team-a") {
        let answer = as_alice(method, &path, body.as_deref());
        assert!(
            (200..300).contains(&answer.status),
            "{method} {path}: {} {}",
            answer.status,
            answer.body
        );
    }

    // Lists across meshes show mesh A only.
    let meshes = as_alice("GET", "/meshes", None).body.to_string();
    assert!(
        meshes.contains("team-a") && !meshes.contains("team-b") && !meshes.contains("default"),
        "{meshes}"
    );
    put_dataplane(&cp, "team-a", "web-team-a", (7001, 7002), "web", &[]);
    let dataplanes = as_alice("GET", "/dataplanes", None).body.to_string();
    assert!(
        dataplanes.contains("web-team-a") && !dataplanes.contains("web-team-b"),
        "{dataplanes}"
    );
    let admin_sees = http("GET", &format!("{}/dataplanes", cp.api), None)
        .body
        .to_string();
    assert!(admin_sees.contains("web-team-b"), "{admin_sees}");

    // The admin's endpoints are the admin's.
    for (method, path, body) in [
        ("GET", "/access-roles", None),
        ("GET", "/access-role-bindings/team-a", None),
        (
            "PUT",
            "/access-roles/mine",
            Some(r#"{"rules": [{"access": ["CREATE"]}]}"#),
        ),
        (
            "POST",
            "/tokens/user",
            Some(r#"{"name": "eve", "groups": ["mesh-system:admin"], "validFor": "1h"}"#),
        ),
        ("GET", "/metrics", None),
    ] {
        let answer = as_alice(method, path, body);
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.body);
    }

    // The local token server judges the same way.
    let minted = http_with(
        "POST",
        &format!("{}/tokens", cp.tokens),
        Some(r#"{"name": "web-team-b", "mesh": "team-b"}"#),
        &[("authorization", &bearer)],
    );
    assert_eq!(minted.status, 403, "{}", minted.body);

    // kumactl with the team's token sees its mesh only.
    let auth = format!("token={token}");
    let (_dir, config) = kumactl_config_for(&cp.api, &["--auth-type=tokens", "--auth-conf", &auth]);
    let meshes = kumactl(&config, &["get", "meshes"], None);
    assert!(
        meshes.stdout.contains("team-a") && !meshes.stdout.contains("team-b"),
        "{}",
        meshes.stdout
    );
    let other = kumactl(
        &config,
        &["get", "traffic-permissions", "-m", "team-b"],
        None,
    );
    assert_ne!(other.code, 0);
    assert!(other.stderr.contains("may not READ"), "{}", other.stderr);
    let own = kumactl(
        &config,
        &[
            "generate",
            "dataplane-token",
            "--name",
            "web-team-a",
            "-m",
            "team-a",
        ],
        None,
    );
    assert_eq!(own.code, 0, "{}", own.stderr);
    let theirs = kumactl(
        &config,
        &[
            "generate",
            "dataplane-token",
            "--name",
            "web-team-b",
            "-m",
            "team-b",
        ],
        None,
    );
    assert!(
        theirs.code != 0 && theirs.stderr.contains("GENERATE_DATAPLANE_TOKEN"),
        "{}",
        theirs.stderr
    );

    // The admin (kumactl on this host) sees the roles and bindings.
    let (_admin, admin) = common::kumactl_config(&cp);
    let roles = kumactl(&admin, &["get", "access-roles"], None);
    assert!(
        roles.stdout.contains("NAME") && roles.stdout.contains("team-a"),
        "{} {}",
        roles.stdout,
        roles.stderr
    );
    let bindings = kumactl(&admin, &["get", "access-role-bindings"], None);
    assert!(
        bindings.stdout.contains("Group:team-a"),
        "{}",
        bindings.stdout
    );
    let theirs = kumactl(&config, &["get", "access-roles"], None);
    assert!(
        theirs.stderr.contains("mesh-system:admin"),
        "{}",
        theirs.stderr
    );

    // Revoked: the token works no more, at once.
    let revoked = http(
        "POST",
        &format!("{}/tokens/user/revocations", cp.api),
        Some(&json!({"token": token}).to_string()),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let answer = as_alice("GET", "/meshes/team-a", None);
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(
        answer.body.to_string().contains("revoked"),
        "{}",
        answer.body
    );
}

/// As the multi-tenancy reference describes a shared mesh: the security
/// team owns MeshTLS (and nothing else), developers own MeshHTTPRoute;
/// each may change its own kind and is refused the other's.
#[test]
fn a_role_may_own_one_policy_kind_of_a_mesh_and_not_another() {
    let cp = KumaCp::start(&[]);
    cp.put("/meshes/shared", MTLS);
    let token_of = |team: &str, kind: &str| {
        cp.put(
            &format!("/access-roles/{team}"),
            &json!({"type": "AccessRole", "name": team, "rules": [{"mesh": "shared",
                "types": [kind], "access": ["CREATE", "UPDATE", "DELETE"]}]})
            .to_string(),
        );
        cp.put(
            &format!("/access-role-bindings/{team}"),
            &json!({"type": "AccessRoleBinding", "name": team,
                "subjects": [{"type": "Group", "name": team}], "roles": [team]})
            .to_string(),
        );
        let minted = http(
            "POST",
            &format!("{}/tokens/user", cp.api),
            Some(
                &json!({"name": format!("{team}-user"), "groups": [team], "validFor": "1h"})
                    .to_string(),
            ),
        );
        assert_eq!(minted.status, 200, "{}", minted.body);
        format!("Bearer {}", minted.body.as_str().expect("a token"))
    };
    let security = token_of("security", "MeshTLS");
    let developers = token_of("developers", "MeshHTTPRoute");
    let put_as = |bearer: &str, collection: &str, body: Value| {
        http_with(
            "PUT",
            &format!("{}/meshes/shared/{collection}/p", cp.api),
            Some(&body.to_string()),
            &[("authorization", bearer)],
        )
    };
    let status = |answer: common::Answer| answer.status;
    assert_eq!(
        status(put_as(&security, "meshtlses", mesh_tls("shared"))),
        201
    );
    assert_eq!(
        status(put_as(
            &developers,
            "meshhttproutes",
            mesh_http_route("shared")
        )),
        201
    );
    let refused = put_as(&developers, "meshtlses", mesh_tls("shared"));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("MeshTLS"),
        "{}",
        refused.body
    );
    assert_eq!(
        status(put_as(
            &security,
            "meshhttproutes",
            mesh_http_route("shared")
        )),
        403
    );
    assert_eq!(
        status(put_as(
            &security,
            "meshtrafficpermissions",
            mesh_traffic_permission("shared")
        )),
        403
    );
    // Each still reads what its rule names.
    let read = http_with(
        "GET",
        &format!("{}/meshes/shared/meshtlses/p", cp.api),
        None,
        &[("authorization", &security)],
    );
    assert_eq!(read.status, 200, "{}", read.body);
}

#[test]
fn without_credentials_a_request_is_told_how_to_authenticate() {
    let cp = KumaCp::start(&[("KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN", "false")]);
    let answer = http("GET", &format!("{}/meshes", cp.api), None);
    assert_eq!(answer.status, 401);
    let details = answer.body["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("no credentials") && details.contains("kumactl generate user-token"),
        "{details}"
    );
    // A forged token is refused for what it is.
    let forged = http_with(
        "GET",
        &format!("{}/meshes", cp.api),
        None,
        &[("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")],
    );
    assert_eq!(forged.status, 401, "{}", forged.body);
    // The index says what this is, to anyone.
    assert_eq!(http("GET", &format!("{}/", cp.api), None).status, 200);
}

#[test]
fn a_mesh_admits_only_the_dataplanes_its_constraints_allow() {
    let cp = KumaCp::start(&[]);
    cp.put(
        "/meshes/team-a",
        &json!({"constraints": {"dataplaneProxy": {
            "requirements": [{"tags": {"team": "a"}}],
            "restrictions": [{"tags": {"service": "legacy"}}]}}})
        .to_string(),
    );
    let dataplane = |tags: Value| {
        json!({"networking": {"inbound": [{"interface": "127.0.0.1:7001:7002", "tags": tags}]}})
            .to_string()
    };
    let put = |name: &str, tags: Value| {
        http(
            "PUT",
            &format!("{}/meshes/team-a/dataplanes/{name}", cp.api),
            Some(&dataplane(tags)),
        )
    };
    let refused = put("outsider", json!({"service": "web", "team": "b"}));
    assert_eq!(refused.status, 400, "{}", refused.body);
    let text = refused.body.to_string();
    assert!(
        text.contains("networking.inbound")
            && text.contains("admits only")
            && text.contains("team=a"),
        "{text}"
    );
    let legacy = put("legacy", json!({"service": "legacy", "team": "a"}));
    assert_eq!(legacy.status, 400, "{}", legacy.body);
    assert_eq!(
        put("member", json!({"service": "web", "team": "a"})).status,
        201
    );
    let listed = http("GET", &format!("{}/meshes/team-a/dataplanes", cp.api), None)
        .body
        .to_string();
    assert!(
        listed.contains("member") && !listed.contains("outsider") && !listed.contains("legacy"),
        "{listed}"
    );

    // The mesh tightens: the member that no longer qualifies is refused
    // its bootstrap (and its streams) with the reason.
    cp.put(
        "/meshes/team-a",
        &json!({"constraints": {"dataplaneProxy": {"requirements": [{"tags": {"team": "z"}}]}}})
            .to_string(),
    );
    let request = json!({"mesh": "team-a", "name": "member", "adminPort": 9901,
        "dataplaneToken": cp.token("team-a", "member")})
    .to_string();
    let bootstrap = || {
        http(
            "POST",
            &format!("{}/bootstrap", cp.bootstrap),
            Some(&request),
        )
    };
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || bootstrap().status == 403
    ));
    let answer = bootstrap();
    assert!(
        answer.body.to_string().contains("team=z"),
        "{}",
        answer.body
    );
}

#[test]
fn a_client_certificate_on_the_https_port_is_its_user() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    // A CA for the teams' client certificates, and bob's, in team-a.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "teams CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let bob_key = KeyPair::generate().unwrap();
    let mut bob = CertificateParams::new(Vec::<String>::new()).unwrap();
    bob.distinguished_name.push(DnType::CommonName, "bob");
    bob.distinguished_name
        .push(DnType::OrganizationName, "team-a");
    bob.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let bob = bob.signed_by(&bob_key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("client-cas");
    std::fs::create_dir(&cas).unwrap();
    std::fs::write(cas.join("teams.pem"), ca.pem()).unwrap();
    let (cert, key) = (dir.path().join("bob.pem"), dir.path().join("bob.key"));
    std::fs::write(&cert, bob.pem()).unwrap();
    std::fs::write(&key, bob_key.serialize_pem()).unwrap();
    // The API's own certificate, for localhost, from the same CA.
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let (server_cert, server_key_file, ca_file) = (
        dir.path().join("api.pem"),
        dir.path().join("api.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&server_cert, server.pem()).unwrap();
    std::fs::write(&server_key_file, server_key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let cp = KumaCp::start(&[
        ("KUMA_API_SERVER_HTTPS_ENABLED", "true"),
        ("KUMA_API_SERVER_HTTPS_PORT", "0"),
        (
            "KUMA_API_SERVER_HTTPS_TLS_CERT_FILE",
            server_cert.to_str().unwrap(),
        ),
        (
            "KUMA_API_SERVER_HTTPS_TLS_KEY_FILE",
            server_key_file.to_str().unwrap(),
        ),
        (
            "KUMA_API_SERVER_AUTH_CLIENT_CERTS_DIR",
            cas.to_str().unwrap(),
        ),
    ]);
    let https = cp.https_api.clone().expect("the HTTPS API listens");
    two_teams(&cp);

    // kumactl verifies the API's certificate: without its CA it does not
    // add the control plane.
    let unverified = kumactl(
        &dir.path().join("unverified"),
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "x",
            "--address",
            &https,
        ],
        None,
    );
    assert_ne!(unverified.code, 0, "{}", unverified.stdout);

    // kumactl with bob's certificate, over HTTPS, trusting the API's CA, is
    // bob of team-a.
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let ca_file = ca_file.to_str().unwrap();
    let (_bob, config) = kumactl_config_for(
        &https,
        &[
            "--client-cert",
            cert,
            "--client-key",
            key,
            "--ca-cert",
            ca_file,
        ],
    );
    let meshes = kumactl(&config, &["get", "meshes"], None);
    assert!(
        meshes.code == 0 && meshes.stdout.contains("team-a") && !meshes.stdout.contains("team-b"),
        "{} {}",
        meshes.stdout,
        meshes.stderr
    );
    let other = kumactl(&config, &["get", "dataplanes", "-m", "team-b"], None);
    assert!(
        other.code != 0 && other.stderr.contains("user \"bob\" may not READ"),
        "{}",
        other.stderr
    );

    // Without a certificate the HTTPS port is as the plain one: over
    // loopback, the admin.
    let (_admin, config) = kumactl_config_for(&https, &["--skip-verify"]);
    let all = kumactl(&config, &["get", "meshes"], None);
    assert!(all.stdout.contains("team-b"), "{}", all.stdout);
}
