//! The HTTP API's OpenAPI document: the committed copy is the generated
//! one, `kuma-cp` serves it, and schemathesis finds the running API true to
//! it (no 5xx, every status, content type and body as documented).

use crate::common;

use common::{KumaCp, http};
use std::path::PathBuf;
use std::process::Command;

/// Where the document is committed (the README names it).
const COMMITTED: &str = "docs/openapi.json";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = repo().join(COMMITTED);
    let generated = kuma::api::openapi::document_text();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("docs/");
        std::fs::write(&path, &generated).expect("write the document");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{COMMITTED} is stale: run UPDATE_GOLDEN=1 cargo test --test it openapi::"
    );
}

#[test]
fn every_collection_the_api_serves_is_documented() {
    let document = kuma::api::openapi::document();
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/meshes/{mesh}",
        "/meshes/{mesh}/dataplanes",
        "/meshes/{mesh}/traffic-permissions/{name}",
        "/meshes/{mesh}/dataplanes+insights",
        "/meshes/{mesh}/dataplanes/{name}/xds",
        "/access-role-bindings/{name}",
        "/dataplanes",
        "/tokens/user",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let put = &paths["/meshes/{mesh}/traffic-routes/{name}"]["put"];
    assert_eq!(
        put["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TrafficRoute"
    );
    // The body's fields are the Rust type's, beside the identity.
    let route = &document["components"]["schemas"]["TrafficRoute"]["properties"];
    for field in ["type", "name", "mesh", "sources", "destinations", "conf"] {
        assert!(route.get(field).is_some(), "TrafficRoute has no {field}");
    }
}

/// Runs schemathesis (`make schemathesis` installs it) against a live
/// control plane holding a few resources, so that the GETs find something.
#[test]
fn schemathesis_finds_the_running_api_true_to_its_document() {
    let cp = KumaCp::start(&[]);
    let served = http("GET", &format!("{}/openapi.json", cp.api), None);
    assert_eq!(served.status, 200);
    assert_eq!(served.body, kuma::api::openapi::document());

    cp.put(
        "/meshes/default/dataplanes/web-1",
        r#"{"networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web"}}]}}"#,
    );
    cp.put(
        "/meshes/default/traffic-permissions/everyone",
        r#"{"sources": [{"match": {"kuma.io/service": "*"}}], "destinations": [{"match": {"kuma.io/service": "*"}}]}"#,
    );

    let examples = std::env::var("SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let st = repo().join(".venv/bin/st");
    let report = tempfile::tempdir().expect("a report folder");
    let out = Command::new(&st)
        .current_dir(report.path())
        .args(["--no-color", "run"])
        .arg(format!("{}/openapi.json", cp.api))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            &examples,
            // One worker: with two, hypothesis parses lambdas' source on
            // two threads at once, and Python 3.11's `ast` keeps one
            // recursion counter per interpreter, so the race aborts the run
            // with "AST constructor recursion depth mismatch" (CPython
            // gh-106905), a failure of the tool, not of the API.
            "--workers",
            "1",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make schemathesis installs it)", st.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect();
    println!(
        "schemathesis, {examples} examples per operation:\n{}",
        summary.join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found the API untrue to {COMMITTED}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
