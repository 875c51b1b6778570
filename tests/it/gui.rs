//! The GUI in real Chromium against a real `kuma-cp`: this test seeds the
//! control plane (two meshes, mTLS in one; dataplanes online through real
//! kuma-dp and Envoy, and offline; policies of several kinds, one Envoy
//! rejects; a third mesh of 10,000 dataplanes) and runs the Playwright suite `gui/e2e/gui.test.mjs`, which
//! checks every page against these facts and writes a screenshot of each
//! view to `target/gui-screenshots/`.

use crate::common;

use common::{Dataplane, KumaCp, free_port, http, put_proxy, put_tagged_dataplane};
use serde_json::json;
use std::path::Path;
use std::process::Command;

const MTLS: &str =
    r#"{"type": "Mesh", "name": "payments", "mtls": {"enabled": true, "ca": {"builtin": {}}}}"#;

fn put(cp: &KumaCp, path: &str, body: serde_json::Value) {
    cp.put(path, &body.to_string());
}

/// A user token of team `payments`, whose role reads that mesh only.
fn payments_team_token(cp: &KumaCp) -> String {
    put(
        cp,
        "/access-roles/payments",
        json!({"type": "AccessRole", "name": "payments",
            "rules": [{"mesh": "payments", "access": ["CREATE", "UPDATE", "DELETE"]}]}),
    );
    put(
        cp,
        "/access-role-bindings/payments",
        json!({"type": "AccessRoleBinding", "name": "payments",
            "subjects": [{"type": "Group", "name": "payments"}], "roles": ["payments"]}),
    );
    let minted = http(
        "POST",
        &format!("{}/tokens/user", cp.api),
        Some(r#"{"name": "pat", "groups": ["payments"], "validFor": "1h"}"#),
    );
    assert_eq!(minted.status, 200, "{}", minted.body);
    minted.body.as_str().expect("a token").to_string()
}

/// Mesh `large`: 10,000 dataplanes (never connected), which the GUI must
/// page rather than render at once. Eight writers at a time.
fn seed_large_mesh(cp: &KumaCp) {
    cp.put("/meshes/large", r#"{"type": "Mesh", "name": "large"}"#);
    let api = cp.api.as_str();
    std::thread::scope(|scope| {
        for writer in 0..8 {
            scope.spawn(move || {
                for i in (writer..LARGE).step_by(8) {
                    let body = json!({"type": "Dataplane", "mesh": "large", "name": format!("dp-{i:05}"),
                        "networking": {"inbound": [{"interface": format!("10.1.{}.{}:8080:80", i / 250, i % 250),
                            "tags": {"service": format!("svc-{}", i % 20)}}]}});
                    let url = format!("{api}/meshes/large/dataplanes/dp-{i:05}");
                    let answer = http("PUT", &url, Some(&body.to_string()));
                    assert_eq!(answer.status, 201, "PUT {url}: {}", answer.body);
                }
            });
        }
    });
}

const LARGE: usize = 10_000;

#[test]
fn the_gui_shows_the_seeded_meshes_live_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("gui/dist/index.html").is_file() && root.join("gui/node_modules").is_dir(),
        "the GUI is not built: run `make gui` (make test does)"
    );
    let cp = KumaCp::start(&[]);

    // Mesh default: echo-1 and client-1 online, echo-2 and legacy-1 never
    // connected; client-1 may call echo, split 80/20 between its versions,
    // and a ProxyTemplate gives it a cluster Envoy rejects.
    let echo = free_port();
    put_tagged_dataplane(
        &cp,
        "default",
        "echo-1",
        (free_port(), free_port()),
        json!({"service": "echo", "version": "1"}),
        &[],
    );
    put_tagged_dataplane(
        &cp,
        "default",
        "echo-2",
        (free_port(), free_port()),
        json!({"service": "echo", "version": "2"}),
        &[],
    );
    put_proxy(&cp, "default", "legacy-1", "legacy", &[]);
    put_proxy(&cp, "default", "client-1", "client", &[(echo, "echo")]);
    put(
        &cp,
        "/meshes/default/traffic-permissions/client-to-echo",
        json!({"type": "TrafficPermission", "mesh": "default", "name": "client-to-echo",
            "rules": [{"sources": [{"match": {"service": "client"}}],
                       "destinations": [{"match": {"service": "echo"}}]}]}),
    );
    put(
        &cp,
        "/meshes/default/traffic-routes/split",
        json!({"type": "TrafficRoute", "mesh": "default", "name": "split",
            "sources": [{"match": {"service": "client"}}],
            "destinations": [{"match": {"service": "echo"}}],
            "conf": [{"weight": 80, "destination": {"service": "echo", "version": "1"}},
                     {"weight": 20, "destination": {"service": "echo", "version": "2"}}]}),
    );
    // Envoy's own rules refuse a connect timeout of 0s: a real NACK.
    let rejected = "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: rejected\nconnectTimeout: 0s\ntype: STATIC\n";
    put(
        &cp,
        "/meshes/default/proxytemplates/rejected",
        json!({"type": "ProxyTemplate", "mesh": "default", "name": "rejected",
            "selectors": [{"match": {"service": "client"}}],
            "imports": ["default-proxy"],
            "resources": [{"name": "rejected", "resource": rejected}]}),
    );

    // Mesh payments, with mTLS: ledger-1 online with its certificate,
    // ledger-2 never connected.
    cp.put("/meshes/payments", MTLS);
    put_proxy(&cp, "payments", "ledger-1", "ledger", &[]);
    put_proxy(&cp, "payments", "ledger-2", "ledger", &[]);
    put(
        &cp,
        "/meshes/payments/traffic-permissions/ledger-itself",
        json!({"type": "TrafficPermission", "mesh": "payments", "name": "ledger-itself",
            "rules": [{"sources": [{"match": {"service": "ledger"}}],
                       "destinations": [{"match": {"service": "ledger"}}]}]}),
    );
    put(
        &cp,
        "/meshes/payments/meshtrafficpermissions/ledger-clients",
        json!({"type": "MeshTrafficPermission", "mesh": "payments", "name": "ledger-clients",
            "spec": {"targetRef": {"kind": "MeshService", "name": "ledger"},
                     "from": [{"targetRef": {"kind": "MeshService", "name": "ledger"},
                               "default": {"action": "Allow"}}]}}),
    );
    let token = payments_team_token(&cp);
    seed_large_mesh(&cp);

    let echo_1 = Dataplane::start(&cp, "default", "echo-1");
    let _client = Dataplane::start(&cp, "default", "client-1");
    let _ledger = Dataplane::start(&cp, "payments", "ledger-1");

    let screenshots = root.join("target/gui-screenshots");
    // Emptied first: a screenshot left by an earlier run proves nothing.
    let _ = std::fs::remove_dir_all(&screenshots);
    let run = Command::new("node")
        .args(["--test", "--test-reporter=spec", "e2e/gui.test.mjs"])
        .current_dir(root.join("gui"))
        .env("KUMA_GUI_URL", &cp.api)
        .env("KUMA_GUI_OFFLINE_PID", echo_1.process.0.id().to_string())
        .env("KUMA_GUI_TEAM_TOKEN", &token)
        .env("KUMA_GUI_SCREENSHOTS", &screenshots)
        .output()
        .expect("node runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the Playwright suite failed:\n{report}\nkuma-cp log:\n{}",
        cp.log()
    );
    println!("{report}");
    for view in [
        "overview",
        "dataplanes",
        "dataplane",
        "policies",
        "service-map",
    ] {
        let shot = screenshots.join(format!("{view}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "no screenshot of the {view} view at {}",
            shot.display()
        );
    }
}

/// `/gui/` answers the page and its hashed assets (cached for good, the
/// page never), `/gui` moves to `/gui/`, and the GUI port (Kuma 0.3's
/// 5683) sends a browser there, on the host it asked for.
#[test]
fn the_gui_is_served_at_gui_and_its_old_port_redirects_there() {
    // Port 0, read back from the log: a port picked here beforehand could
    // be taken by a parallel test before kuma-cp binds it.
    let cp = KumaCp::start(&[]);
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let get = |url: &str| {
        client
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    };

    let page = get(&format!("{}/gui/", cp.api));
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = page.text().unwrap_or_default();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/gui/assets/") && s.ends_with(".js"))
        .unwrap_or_else(|| panic!("the page names no script: {html}"))
        .to_string();
    let asset = get(&format!("{}{script}", cp.api));
    assert_eq!(asset.status(), 200);
    assert_eq!(
        asset.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        asset.headers()["cache-control"]
            .to_str()
            .unwrap_or("")
            .contains("immutable")
    );
    assert_eq!(
        get(&format!("{}/gui/no-such-file.js", cp.api)).status(),
        404
    );

    let moved = get(&format!("{}/gui", cp.api));
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "/gui/");

    let api_port = cp.api.rsplit(':').next().unwrap_or_default();
    let gui = cp.gui.clone().expect("the GUI redirect listens");
    let redirected = get(&format!("{gui}/anything"));
    assert_eq!(redirected.status(), 307);
    assert_eq!(
        redirected.headers()["location"].to_str().unwrap_or(""),
        format!("http://127.0.0.1:{api_port}/gui/")
    );
}
