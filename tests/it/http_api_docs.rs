//! Every `curl` example of the HTTP API section of the reference
//! (`tests/data/kuma-docs.md`, a copy of `kuma-docs.md`) replayed as written
//! against a running `kuma-cp`, comparing JSON in and JSON out.

use crate::common;

use common::{Answer, KumaCp, http};
use serde_json::Value;

/// One `curl` of the reference and the JSON block that follows it: the
/// request body for a `--data @file` example, the expected answer for a GET.
#[derive(Debug)]
struct Example {
    method: String,
    path: String,
    json: Option<Value>,
}

/// Splits a shell command into words, honouring quotes.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn examples() -> Vec<Example> {
    let doc = include_str!("../data/kuma-docs.md");
    let start = doc.find("\n## HTTP API").expect("HTTP API section");
    let end = doc[start..]
        .find("\n## Security")
        .map_or(doc.len(), |e| start + e);
    let section = &doc[start..end];
    // Fenced blocks, in order, as (language, content).
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let lang_end = after.find('\n').expect("fence line");
        let lang = after[..lang_end].trim().to_string();
        let body_start = lang_end + 1;
        let close = after[body_start..].find("```").expect("closing fence");
        blocks.push((lang, after[body_start..body_start + close].to_string()));
        rest = &after[body_start + close + 3..];
    }
    let mut out = Vec::new();
    for (i, (lang, content)) in blocks.iter().enumerate() {
        if lang != "bash" || !content.trim_start().starts_with("curl") {
            continue;
        }
        let words = words(content.trim());
        let method = words
            .iter()
            .find_map(|w| w.strip_prefix("-X"))
            .unwrap_or("GET")
            .to_string();
        let url = words
            .iter()
            .find(|w| w.starts_with("http://"))
            .expect("url");
        let path = url
            .strip_prefix("http://localhost:5681")
            .expect("API port 5681")
            .to_string();
        let json = match blocks.get(i + 1) {
            Some((lang, body)) if lang == "json" => {
                Some(serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON after {url}: {e}")))
            }
            _ => None,
        };
        out.push(Example { method, path, json });
    }
    out
}

fn check(answer: &Answer, ex: &Example, status: u16) {
    assert_eq!(
        answer.status, status,
        "{} {}: {}",
        ex.method, ex.path, answer.body
    );
}

#[test]
fn reference_curl_examples_answer_as_documented() {
    let all = examples();
    assert!(all.len() >= 20, "found only {} examples", all.len());
    let cp = KumaCp::start(&[("KUMA_DEFAULTS_SKIP_MESH_CREATION", "true")]);
    let url = |path: &str| format!("{}{path}", cp.api);
    let is_overview = |ex: &Example| ex.path.contains("+insights");

    // 1. Every PUT, in the order written (the mesh comes first): 201, then
    //    200 when the same body is sent again.
    let puts: Vec<&Example> = all.iter().filter(|e| e.method == "PUT").collect();
    assert_eq!(
        puts.len(),
        5,
        "mesh, dataplane, proxy template, permission, log"
    );
    for ex in &puts {
        let body = ex.json.as_ref().expect("PUT body").to_string();
        check(&http("PUT", &url(&ex.path), Some(&body)), ex, 201);
        check(&http("PUT", &url(&ex.path), Some(&body)), ex, 200);
    }

    // 2. Every GET answers exactly the documented JSON.
    let gets = || all.iter().filter(|e| e.method == "GET");
    for ex in gets().filter(|e| !is_overview(e)) {
        let answer = http("GET", &url(&ex.path), None);
        check(&answer, ex, 200);
        assert_eq!(
            &answer.body,
            ex.json.as_ref().expect("documented answer"),
            "GET {}",
            ex.path
        );
    }

    // 3. The overview examples show dataplane "example" of mesh "default"
    //    with an insight written by the control plane. Create the mesh and
    //    the dataplane through the API, and the insight as kuma-cp's own
    //    xDS server would: in the store (the same Postgres database).
    for ex in gets().filter(|e| is_overview(e)) {
        let answer = http("GET", &url(&ex.path), None);
        assert_eq!(
            answer.status, 404,
            "before mesh default exists: {}",
            answer.body
        );
    }
    let overview = gets()
        .find(|e| is_overview(e) && e.path.ends_with("/example"))
        .and_then(|e| e.json.clone())
        .expect("overview example");
    check(
        &http("PUT", &url("/meshes/default"), Some("{}")),
        puts[0],
        201,
    );
    let mut dp = overview["dataplane"].clone();
    dp["type"] = "Dataplane".into();
    check(
        &http(
            "PUT",
            &url("/meshes/default/dataplanes/example"),
            Some(&dp.to_string()),
        ),
        puts[1],
        201,
    );
    let answer = http(
        "GET",
        &url("/meshes/default/dataplanes+insights/example"),
        None,
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body["dataplaneInsight"],
        serde_json::json!({}),
        "no insight yet"
    );
    drop(cp);

    // The overview with an insight needs the insight in the store, so this
    // part runs on Postgres, where the test can write it beside kuma-cp.
    overview_examples_answer_as_documented(&all, &overview);

    // 4. Every DELETE. The reference's permission example deletes "pt-1",
    //    a name it never created (the permission is "tp-1"): that one
    //    answers 404 naming the missing resource.
    let cp = KumaCp::start(&[("KUMA_DEFAULTS_SKIP_MESH_CREATION", "true")]);
    let url = |path: &str| format!("{}{path}", cp.api);
    for ex in &puts {
        let body = ex.json.as_ref().expect("PUT body").to_string();
        check(&http("PUT", &url(&ex.path), Some(&body)), ex, 201);
    }
    let deletes: Vec<&Example> = all.iter().filter(|e| e.method == "DELETE").collect();
    assert_eq!(deletes.len(), 5);
    // Mesh last: deleting it first would take the others along.
    for ex in deletes.iter().rev() {
        let answer = http("DELETE", &url(&ex.path), None);
        if ex.path.ends_with("/traffic-permissions/pt-1") {
            check(&answer, ex, 404);
            let details = answer.body["details"].as_str().unwrap_or("");
            assert!(details.contains("TrafficPermission \"pt-1\""), "{details}");
        } else {
            check(&answer, ex, 200);
            check(&http("GET", &url(&ex.path), None), ex, 404);
        }
    }
}

fn overview_examples_answer_as_documented(all: &[Example], overview: &Value) {
    let db = common::migrated_database("docs_overview");
    let cp = db.kuma_cp(&[]);
    let url = |path: &str| format!("{}{path}", cp.api);
    let mut dp = overview["dataplane"].clone();
    dp["type"] = "Dataplane".into();
    assert_eq!(
        http(
            "PUT",
            &url("/meshes/default/dataplanes/example"),
            Some(&dp.to_string())
        )
        .status,
        201
    );
    let insight: kuma::resources::DataplaneInsightSpec =
        serde_json::from_value(overview["dataplaneInsight"].clone()).expect("insight parses");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = kuma::store::postgres::PostgresStore::connect(&db.config())
            .await
            .unwrap();
        use kuma::resources::{Resource, ResourceKey, ResourceType, Spec};
        use kuma::store::ResourceStore;
        store
            .create(Resource::new(
                ResourceKey::new(ResourceType::DataplaneInsight, "default", "example"),
                Spec::DataplaneInsight(insight),
            ))
            .await
            .unwrap();
    });
    let examples: Vec<&Example> = all
        .iter()
        .filter(|e| e.path.contains("+insights"))
        .collect();
    assert_eq!(examples.len(), 2);
    for ex in examples {
        let answer = http("GET", &url(&ex.path), None);
        check(&answer, ex, 200);
        assert_eq!(&answer.body, ex.json.as_ref().unwrap(), "GET {}", ex.path);
    }
}
