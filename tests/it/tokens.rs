//! Dataplane tokens: every refusal says which check failed; the public
//! token server wants a trusted client certificate; kumactl generates both.

use crate::common;

use common::{Dataplane, KumaCp, echo_works, eventually, free_port, http, kumactl, put_proxy};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

/// Opens a delta ADS stream for `node` with `token`; the gRPC status it
/// ends with, or None when it is accepted.
fn stream_status(cp: &KumaCp, node: &str, token: &str) -> Option<tonic::Status> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = AggregatedDiscoveryServiceClient::connect(cp.grpc_endpoint(&cp.xds))
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(DeltaDiscoveryRequest {
            node: Some(Node {
                id: node.into(),
                ..Default::default()
            }),
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if !token.is_empty() {
            request
                .metadata_mut()
                .insert("authorization", token.parse().unwrap());
        }
        let mut stream = client
            .delta_aggregated_resources(request)
            .await
            .ok()?
            .into_inner();
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Err(status)) => Some(status),
            _ => None,
        }
    })
}

fn token_with(cp: &KumaCp, body: &str) -> String {
    let answer = http("POST", &format!("{}/tokens", cp.tokens), Some(body));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body.as_str().unwrap().to_string()
}

#[test]
fn every_bad_token_is_refused_with_the_check_that_failed() {
    let cp = KumaCp::start(&[]);
    assert_eq!(
        http("PUT", &format!("{}/meshes/b", cp.api), Some("{}")).status,
        201
    );
    put_proxy(&cp, "default", "web", "web", &[]);
    put_proxy(&cp, "b", "web", "web", &[]);
    let good = cp.token("default", "web");
    assert!(
        stream_status(&cp, "default.web", &good).is_none(),
        "a valid token is accepted"
    );

    let from_mesh_b = cp.token("b", "web");
    let forged = {
        // mesh default's claims, mesh b's signature
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = from_mesh_b.split('.').nth(2).unwrap();
        parts.join(".")
    };
    let expired = token_with(
        &cp,
        r#"{"mesh":"default","name":"web","validForSeconds":1}"#,
    );
    let revoked = cp.token("default", "web");
    let answer = http(
        "POST",
        &format!("{}/tokens/revocations", cp.tokens),
        Some(&serde_json::json!({"token": revoked}).to_string()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    std::thread::sleep(Duration::from_millis(2100));

    let cases = [
        (
            "missing",
            "default.web",
            "",
            "no dataplane token was presented",
        ),
        (
            "another mesh's",
            "default.web",
            from_mesh_b.as_str(),
            "is for mesh \"b\", the dataplane is in mesh \"default\"",
        ),
        (
            "another dataplane's",
            "default.db",
            good.as_str(),
            "is for dataplane \"web\", the stream is for \"db\"",
        ),
        (
            "forged",
            "default.web",
            forged.as_str(),
            "signature is not valid",
        ),
        ("expired", "default.web", expired.as_str(), "expired"),
        ("revoked", "default.web", revoked.as_str(), "was revoked"),
        ("garbage", "default.web", "not-a-jwt", "malformed"),
    ];
    for (what, node, token, reason) in cases {
        let status = stream_status(&cp, node, token)
            .unwrap_or_else(|| panic!("a {what} token was accepted"));
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status:?}"
        );
        assert!(
            status.message().contains(reason),
            "{what}: {}",
            status.message()
        );
    }
    let log = cp.log();
    assert!(
        log.contains("ADS stream refused") && log.contains("was revoked"),
        "the refusal is logged with its reason"
    );
    // The other token of the same dataplane still works.
    assert!(stream_status(&cp, "default.web", &good).is_none());
}

#[test]
fn envoy_without_a_valid_token_gets_no_config() {
    let cp = KumaCp::start(&[]);
    put_proxy(&cp, "default", "web", "web", &[(free_port(), "echo")]);
    let wrong = cp.token("default", "other");
    let mut dp = Dataplane::launch(&cp, "default", "web", Some(&wrong), &[]);
    // The bootstrap server refuses the token: kuma-dp stops with the
    // reason and never starts Envoy, so no stream reaches the control plane.
    let status = dp.exit_status();
    let log = dp.log();
    assert!(!status.success(), "kuma-dp exited with {status}: {log}");
    assert!(
        log.contains("is for dataplane"),
        "kuma-dp says why it was refused: {log}"
    );
    assert!(dp.admin_get("/ready").is_none(), "an Envoy was started");
    assert_eq!(common::open_streams(&cp.api), 0.0, "a stream was opened");
}

#[test]
fn the_public_token_server_wants_a_trusted_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let kc = dir.path().join("kumactl-config");
    std::fs::create_dir(dir.path().join("clients")).unwrap();
    for (kind, cert, key) in [
        ("server", path("server.pem"), path("server.key")),
        ("client", path("clients/client.pem"), path("client.key")),
        ("client", path("untrusted.pem"), path("untrusted.key")),
    ] {
        let run = kumactl(
            &kc,
            &[
                "generate",
                "certificate",
                "--type",
                kind,
                "--cert",
                &cert,
                "--key",
                &key,
            ],
            None,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let port = free_port().to_string();
    let cp = KumaCp::start(&[
        ("KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_ENABLED", "true"),
        ("KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_INTERFACE", "127.0.0.1"),
        ("KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_PORT", &port),
        (
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_CERT_FILE",
            &path("server.pem"),
        ),
        (
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_KEY_FILE",
            &path("server.key"),
        ),
        (
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_CLIENT_CERTS_DIR",
            &path("clients"),
        ),
        ("KUMA_GENERAL_ADVERTISED_HOSTNAME", "localhost"),
    ]);
    let url = format!("https://localhost:{port}/tokens");
    let post = |identity: Option<(&str, &str)>| {
        let mut builder = reqwest::blocking::Client::builder().danger_accept_invalid_certs(true);
        if let Some((cert, key)) = identity {
            let mut pem = std::fs::read(cert).unwrap();
            pem.extend(std::fs::read(key).unwrap());
            builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        builder
            .build()
            .unwrap()
            .post(&url)
            .body(r#"{"mesh":"default","name":"web"}"#)
            .send()
    };
    assert!(
        post(None).is_err(),
        "a client without a certificate was served"
    );
    assert!(
        post(Some((&path("untrusted.pem"), &path("untrusted.key")))).is_err(),
        "an untrusted certificate was served"
    );
    let ok = post(Some((&path("clients/client.pem"), &path("client.key"))))
        .expect("trusted client served");
    assert_eq!(ok.status().as_u16(), 200);

    // kumactl, configured with the client certificate, gets a token that works.
    let run = kumactl(
        &kc,
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "remote",
            "--address",
            &cp.api,
            "--dataplane-token-client-cert",
            &path("clients/client.pem"),
            "--dataplane-token-client-key",
            &path("client.key"),
        ],
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    put_proxy(&cp, "default", "web", "web", &[]);
    let run = kumactl(&kc, &["generate", "dataplane-token", "--name", "web"], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        stream_status(&cp, "default.web", run.stdout.trim()).is_none(),
        "kumactl's token is accepted"
    );
}

#[test]
fn kumactl_generates_tokens_from_the_local_server_for_the_quickstart() {
    let cp = KumaCp::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("config");
    kumactl(
        &kc,
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "local",
            "--address",
            &cp.api,
            "--overwrite",
        ],
        None,
    );
    let services = common::put_echo_and_client(&cp, "default");
    let outbound = services.outbound;
    let mut dps = Vec::new();
    for name in ["echo-1", "client-1"] {
        let run = kumactl(
            &kc,
            &[
                "generate",
                "dataplane-token",
                "--name",
                name,
                "--mesh",
                "default",
            ],
            None,
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let dp = Dataplane::launch(&cp, "default", name, Some(run.stdout.trim()), &[]);
        dp.wait_ready();
        dps.push(dp);
    }
    assert!(eventually(Duration::from_secs(10), || echo_works(outbound)));
    let run = kumactl(
        &kc,
        &[
            "--mesh",
            "nowhere",
            "generate",
            "dataplane-token",
            "--name",
            "x",
        ],
        None,
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("mesh \"nowhere\" does not exist"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_token_validity_that_would_overflow_is_refused_with_its_range() {
    let cp = KumaCp::start(&[]);
    for seconds in [u64::MAX.to_string(), "0".to_string()] {
        let body = format!(r#"{{"mesh":"default","name":"web","validForSeconds":{seconds}}}"#);
        let answer = http("POST", &format!("{}/tokens", cp.tokens), Some(&body));
        assert_eq!(answer.status, 400, "{seconds}: {}", answer.body);
        let cause = &answer.body["causes"][0];
        assert_eq!(cause["field"], "validForSeconds", "{}", answer.body);
        assert!(
            cause["message"]
                .as_str()
                .unwrap_or("")
                .contains("out of range: expected 1 to 3153600000"),
            "{}",
            answer.body
        );
    }
}

/// After a memory-store `kuma-cp` restart every proxy's token is from a
/// signing key that is gone: each `kuma-dp` says in one line why its
/// Envoy's stream is refused and what recovers it; the Dataplanes applied
/// again and fresh tokens written to the same files bring every proxy back
/// (Envoy hot-restarted on the new token), with no kuma-dp restarted and
/// no client round trip failed.
#[test]
fn proxies_refused_after_a_memory_restart_recover_from_fresh_token_files() {
    let work_dir = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..3).map(|_| free_port().to_string()).collect();
    let env = [
        ("KUMA_GENERAL_WORK_DIR", work_dir.path().to_str().unwrap()),
        ("KUMA_BOOTSTRAP_SERVER_PORT", ports[0].as_str()),
        ("KUMA_XDS_SERVER_GRPC_PORT", ports[1].as_str()),
        ("KUMA_SDS_SERVER_GRPC_PORT", ports[2].as_str()),
    ];
    let mut cp = KumaCp::start(&env);
    let services = common::put_echo_and_client(&cp, "default");
    let outbound = services.outbound;
    let proxies = [
        Dataplane::start(&cp, "default", "echo-1"),
        Dataplane::start(&cp, "default", "client-1"),
    ];
    assert!(eventually(Duration::from_secs(10), || echo_works(outbound)));
    let specs: Vec<(String, String)> = ["echo-1", "client-1"]
        .iter()
        .map(|name| {
            let path = format!("/meshes/default/dataplanes/{name}");
            let spec = http("GET", &format!("{}{path}", cp.api), None).body;
            (path, spec.to_string())
        })
        .collect();
    let pids: Vec<u32> = proxies.iter().map(|p| p.process.0.id()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut failed = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if !echo_works(outbound) {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            failed
        })
    };

    assert!(cp.terminate().success());
    let cp = KumaCp::start(&env);
    for proxy in &proxies {
        assert!(
            eventually(Duration::from_secs(30), || proxy.log().contains(
                "the control plane refuses this proxy's configuration stream"
            )),
            "kuma-dp did not say why its stream is refused:\n{}",
            proxy.log()
        );
        let said = proxy.log();
        let line = said
            .lines()
            .find(|l| l.contains("refuses this proxy's configuration stream"))
            .unwrap();
        assert!(
            line.contains("write a fresh token to") && line.contains("token"),
            "{line}"
        );
    }

    for (path, spec) in &specs {
        cp.put(path, spec);
    }
    for (proxy, name) in proxies.iter().zip(["echo-1", "client-1"]) {
        std::fs::write(proxy.config_dir().join("token"), cp.token("default", name)).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(30), || common::open_streams(&cp.api)
            == 2.0),
        "the proxies did not come back on their new tokens:\n{}\n{}",
        proxies[0].log(),
        proxies[1].log()
    );
    for proxy in &proxies {
        assert!(proxy.log().contains("Envoy hot-restarted on the new token"));
    }
    assert!(echo_works(outbound));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(traffic.join().unwrap(), 0, "round trips failed");
    let now: Vec<u32> = proxies.iter().map(|p| p.process.0.id()).collect();
    assert_eq!(now, pids, "no kuma-dp was restarted");
}

/// The local token server answers over TLS (verified with the control
/// plane's CA) and, for the reference's `curl -XPOST
/// http://localhost:5679/tokens`, in plain HTTP on the loopback interface.
#[test]
fn the_local_token_server_speaks_tls_and_the_documented_plain_curl() {
    let cp = KumaCp::start(&[]);
    let body = r#"{"name": "dp-echo-1", "mesh": "default"}"#;
    let ca = std::fs::read(cp.ca_file.as_ref().unwrap()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let over_tls = cp.tokens.replacen("http://", "https://", 1);
    let answer = client
        .post(format!("{over_tls}/tokens"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().unwrap().split('.').count(), 3, "a JWT");
    let plain = http("POST", &format!("{}/tokens", cp.tokens), Some(body));
    assert_eq!(plain.status, 200, "{}", plain.body);
}
