//! `kuma-cp` on a real PostgreSQL: nothing lost across restarts, several
//! control planes share one database, an outage is a 503 that heals itself.

use crate::common;

use common::{PgCluster, eventually, http, kumactl};
use std::process::Command;
use std::time::Duration;

const DP: &str = r#"{"type":"Dataplane","mesh":"default","name":"dp-1","networking":{"inbound":[{"interface":"127.0.0.1:9000:6379","tags":{"service":"redis"}}]}}"#;
const TP: &str = r#"{"type":"TrafficPermission","mesh":"default","name":"tp-1","rules":[{"sources":[{"match":{"service":"web"}}],"destinations":[{"match":{"service":"redis"}}]}]}"#;

#[test]
fn a_restart_keeps_everything() {
    let db = common::migrated_database("restart");
    let mut cp = db.kuma_cp(&[]);
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/default/dataplanes/dp-1", cp.api),
            Some(DP)
        )
        .status,
        201
    );
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/default/traffic-permissions/tp-1", cp.api),
            Some(TP)
        )
        .status,
        201
    );
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/other", cp.api),
            Some(r#"{"mtls":{"enabled":true,"ca":{"builtin":{}}}}"#)
        )
        .status,
        201
    );
    let before: Vec<_> = [
        "/meshes",
        "/meshes/default/dataplanes",
        "/meshes/default/traffic-permissions",
    ]
    .iter()
    .map(|p| http("GET", &format!("{}{p}", cp.api), None).body)
    .collect();
    assert!(cp.terminate().success());

    let cp = db.kuma_cp(&[]);
    let after: Vec<_> = [
        "/meshes",
        "/meshes/default/dataplanes",
        "/meshes/default/traffic-permissions",
    ]
    .iter()
    .map(|p| http("GET", &format!("{}{p}", cp.api), None).body)
    .collect();
    assert_eq!(before, after);
    assert_eq!(after[0]["items"].as_array().unwrap().len(), 2);
}

#[test]
fn two_control_planes_share_one_database() {
    let db = common::migrated_database("two_cps");
    let a = db.kuma_cp(&[]);
    let b = db.kuma_cp(&[]);
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/default/dataplanes/dp-1", a.api),
            Some(DP)
        )
        .status,
        201
    );
    let seen = http(
        "GET",
        &format!("{}/meshes/default/dataplanes/dp-1", b.api),
        None,
    );
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.body["networking"]["inbound"][0]["tags"]["service"],
        "redis"
    );
    // A write based on what B read, after A changed it, is a conflict.
    let etag = seen.etag.unwrap();
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/default/dataplanes/dp-1", a.api),
            Some(&DP.replace("6379", "6380"))
        )
        .status,
        200
    );
    let stale = common::http_with(
        "PUT",
        &format!("{}/meshes/default/dataplanes/dp-1", b.api),
        Some(DP),
        &[("If-Match", &etag)],
    );
    assert_eq!(stale.status, 409);
    assert_eq!(
        http(
            "DELETE",
            &format!("{}/meshes/default/dataplanes/dp-1", b.api),
            None
        )
        .status,
        200
    );
    assert_eq!(
        http(
            "GET",
            &format!("{}/meshes/default/dataplanes/dp-1", a.api),
            None
        )
        .status,
        404
    );
}

#[test]
fn a_database_outage_is_a_503_and_heals_by_itself() {
    let cluster = PgCluster::start();
    let db = cluster.new_database("outage");
    db.migrate();
    let cp = db.kuma_cp(&[]);
    let url = format!("{}/meshes/default/dataplanes", cp.api);
    assert_eq!(http("GET", &url, None).status, 200);

    cluster.stop();
    let down = http("GET", &url, None);
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        down.body["details"]
            .as_str()
            .unwrap()
            .contains("the store is unavailable"),
        "{}",
        down.body
    );
    assert_eq!(http("PUT", &format!("{url}/dp-1"), Some(DP)).status, 503);
    assert_eq!(
        http("GET", &format!("{}/ready", cp.health), None).status,
        503
    );
    assert_eq!(
        http("GET", &format!("{}/healthy", cp.health), None).status,
        200
    );

    cluster.restart();
    assert!(
        eventually(Duration::from_secs(20), || http("GET", &url, None).status
            == 200),
        "kuma-cp did not recover after the database came back"
    );
    assert_eq!(http("PUT", &format!("{url}/dp-1"), Some(DP)).status, 201);
    assert_eq!(
        http("GET", &format!("{}/ready", cp.health), None).status,
        200
    );
}

#[test]
fn an_unmigrated_database_is_refused_with_the_fix() {
    let db = common::shared_cluster().new_database(&format!("unmigrated_{}", std::process::id()));
    let env = db.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = common::kuma_cp_command(&env).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("run `kuma-cp migrate up` first"),
        "{stderr}"
    );
}

#[test]
fn the_printed_schema_is_one_kuma_cp_accepts() {
    let db = common::shared_cluster().new_database(&format!("by_hand_{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    let schema = kumactl(
        &dir.path().join("config"),
        &["install", "database-schema", "--target=postgres"],
        None,
    );
    let file = dir.path().join("schema.sql");
    std::fs::write(&file, schema.stdout).unwrap();
    let out = Command::new(common::pg_bin("psql"))
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "kuma",
            "-p",
            &db.port.to_string(),
            "-d",
            &db.name,
            "-f",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrate = Command::new(common::bin("kuma-cp"))
        .args(["migrate", "up"])
        .envs(db.env())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&migrate.stdout).trim(),
        "database schema is up to date"
    );
    let cp = db.kuma_cp(&[]);
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/default/dataplanes/dp-1", cp.api),
            Some(DP)
        )
        .status,
        201
    );
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost.
fn server_certificate() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn tls_modes_connect_as_configured() {
    let (ca, cert, key) = server_certificate();
    let (other_ca, _, _) = server_certificate();
    let cluster = PgCluster::start_tls(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&other_file, other_ca).unwrap();
    let (ca_path, other_path) = (ca_file.to_str().unwrap(), other_file.to_str().unwrap());

    // The schema, over TLS.
    let db = cluster.new_database("tls");
    let migrate = Command::new(common::bin("kuma-cp"))
        .args(["migrate", "up"])
        .envs(db.env())
        .env("KUMA_STORE_POSTGRES_TLS_MODE", "verifyNone")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    for (i, (mode, ca, works)) in [
        ("disable", "", false),
        ("verifyNone", "", true),
        ("verifyCa", ca_path, true),
        ("verifyFull", ca_path, true),
        ("verifyFull", other_path, false),
    ]
    .into_iter()
    .enumerate()
    {
        let env = db.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.push(("KUMA_STORE_POSTGRES_TLS_MODE", mode));
        all.push(("KUMA_STORE_POSTGRES_TLS_CA_PATH", ca));
        if works {
            let cp = common::KumaCp::start(&all);
            let name = format!("dp-{i}");
            let url = format!("{}/meshes/default/dataplanes/{name}", cp.api);
            assert_eq!(
                http("PUT", &url, Some(&DP.replace("dp-1", &name))).status,
                201,
                "{mode}"
            );
        } else {
            let out = common::kuma_cp_command(&all).output().unwrap();
            assert!(!out.status.success(), "{mode} with {ca:?} connected");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("postgres store"), "{stderr}");
        }
    }
}
