//! The HTTP API of a running `kuma-cp` (memory store): bad input gets a
//! clear error and changes nothing; lists page and filter; read-only mode.

use crate::common;

use common::{KumaCp, http, http_with};
use serde_json::{Value, json};

const DP: &str = r#"{"type":"Dataplane","mesh":"default","name":"dp-1","networking":{"inbound":[{"interface":"127.0.0.1:9000:6379","tags":{"service":"redis"}}]}}"#;

fn causes(body: &Value) -> Vec<(String, String)> {
    body["causes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["field"].as_str().unwrap_or("").to_string(),
                        c["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn assert_error_shape(body: &Value) {
    assert!(
        body["title"].is_string() && body["details"].is_string() && body["causes"].is_array(),
        "{body}"
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let cp = KumaCp::start(&[("KUMA_API_SERVER_MAX_REQUEST_BODY_BYTES", "2048")]);
    let dp_url = format!("{}/meshes/default/dataplanes/dp-1", cp.api);
    assert_eq!(http("PUT", &dp_url, Some(DP)).status, 201);
    let before = http("GET", &dp_url, None).body;

    let other_dp = DP.replace("9000", "9100");
    let cases: Vec<(&str, String, String, u16, &str)> = vec![
        (
            "malformed JSON",
            dp_url.clone(),
            r#"{"type": "Dataplane", "#.into(),
            400,
            "not valid JSON",
        ),
        (
            "wrong type",
            dp_url.clone(),
            DP.replace(
                r#""interface":"127.0.0.1:9000:6379""#,
                r#""interface":9000"#,
            ),
            400,
            "networking.inbound[0].interface",
        ),
        (
            "invalid interface",
            dp_url.clone(),
            DP.replace("127.0.0.1:9000:6379", "127.0.0.1:abc"),
            400,
            "networking.inbound[0].interface",
        ),
        (
            "name clash with the URL",
            dp_url.clone(),
            DP.replace(r#""name":"dp-1""#, r#""name":"dp-2""#),
            400,
            "does not match \"dp-1\" from the URL",
        ),
        (
            "type clash with the URL",
            dp_url.clone(),
            DP.replace(r#""type":"Dataplane""#, r#""type":"Mesh""#),
            400,
            "does not match the URL",
        ),
        (
            "unknown mesh",
            format!("{}/meshes/nowhere/dataplanes/dp-1", cp.api),
            DP.replace(r#""mesh":"default","#, ""),
            400,
            "mesh \"nowhere\" does not exist",
        ),
        (
            "oversized body",
            dp_url.clone(),
            other_dp.replace(
                r#""service":"redis""#,
                &format!(r#""service":"redis","big":"{}""#, "x".repeat(4096)),
            ),
            413,
            "maxRequestBodyBytes",
        ),
        (
            "unknown field",
            dp_url.clone(),
            DP.replace("networking", "netwerking"),
            400,
            "(\"netwerking\", \"unknown field for a Dataplane; expected one of networking\")",
        ),
    ];
    for (what, url, body, status, needle) in cases {
        let answer = http("PUT", &url, Some(&body));
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_error_shape(&answer.body);
        let text =
            format!("{} {:?}", answer.body["details"], causes(&answer.body)).replace("\\\"", "\"");
        assert!(text.contains(needle), "{what}: {text} lacks {needle}");
        assert_eq!(
            http("GET", &dp_url, None).body,
            before,
            "{what} changed the dataplane"
        );
    }
    assert_eq!(
        http("GET", &format!("{}/meshes/nowhere", cp.api), None).status,
        404
    );

    // The field path and the expected form, as the issue spells it.
    let answer = http(
        "PUT",
        &dp_url,
        Some(&DP.replace("127.0.0.1:9000:6379", "127.0.0.1:abc")),
    );
    let (field, message) = &causes(&answer.body)[0];
    assert_eq!(field, "networking.inbound[0].interface");
    assert!(
        message.starts_with(r#""127.0.0.1:abc" must be {address}:{dataplane-port}:{service-port}"#),
        "{message}"
    );
}

#[test]
fn stale_version_is_a_conflict() {
    let cp = KumaCp::start(&[]);
    let url = format!("{}/meshes/default/dataplanes/dp-1", cp.api);
    let created = http("PUT", &url, Some(DP));
    assert_eq!(created.status, 201);
    let v1 = created.etag.expect("etag");
    let updated = http_with(
        "PUT",
        &url,
        Some(&DP.replace("6379", "6380")),
        &[("If-Match", &v1)],
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    let stale = http_with(
        "PUT",
        &url,
        Some(&DP.replace("6379", "6381")),
        &[("If-Match", &v1)],
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale.body["details"]
            .as_str()
            .unwrap()
            .contains("based on version 1, the stored version is 2")
    );
    let now = http("GET", &url, None);
    assert_eq!(
        now.body["networking"]["inbound"][0]["interface"],
        "127.0.0.1:9000:6380"
    );
    assert_eq!(now.etag, updated.etag);
}

#[test]
fn lists_page_with_next_links_and_filter_by_tag() {
    let cp = KumaCp::start(&[]);
    for i in 0..7 {
        let service = if i % 2 == 0 { "redis" } else { "web" };
        let body = json!({"type": "Dataplane", "mesh": "default", "name": format!("dp-{i}"),
            "networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": service}}]}});
        let url = format!("{}/meshes/default/dataplanes/dp-{i}", cp.api);
        assert_eq!(http("PUT", &url, Some(&body.to_string())).status, 201);
    }
    let mut url = format!("{}/meshes/default/dataplanes?size=3", cp.api);
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let page = http("GET", &url, None);
        assert_eq!(page.status, 200, "{}", page.body);
        pages += 1;
        names.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string()),
        );
        match page.body["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("dp-{i}")).collect::<Vec<_>>());

    let redis = http(
        "GET",
        &format!("{}/meshes/default/dataplanes?tag=service:redis", cp.api),
        None,
    );
    let names: Vec<&str> = redis.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dp-0", "dp-2", "dp-4", "dp-6"]);

    for bad in [
        "size=0",
        "size=abc",
        "size=100000",
        "offset=-1",
        "tag=service",
    ] {
        let answer = http(
            "GET",
            &format!("{}/meshes/default/dataplanes?{bad}", cp.api),
            None,
        );
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert_error_shape(&answer.body);
    }
    // An offset that would overflow the next page's offset is refused with
    // its range, not wrapped around.
    let answer = http(
        "GET",
        &format!("{}/meshes/default/dataplanes?offset={}", cp.api, u64::MAX),
        None,
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        causes(&answer.body),
        [(
            "offset".to_string(),
            format!(
                "\"{}\" must be a whole number from 0 to 2147483647",
                u64::MAX
            )
        )]
    );
}

/// What the GUI pages with: how many match in all (`X-Total-Count`, the
/// body keeping the reference's shape), and dataplanes by status, whose
/// `next` link keeps the filter.
#[test]
fn lists_count_in_a_header_and_overviews_filter_by_status() {
    let cp = KumaCp::start(&[]);
    for i in 0..5 {
        let body = json!({"type": "Dataplane", "mesh": "default", "name": format!("dp-{i}"),
            "networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}});
        let url = format!("{}/meshes/default/dataplanes/dp-{i}", cp.api);
        assert_eq!(http("PUT", &url, Some(&body.to_string())).status, 201);
    }
    let get = |query: &str| {
        let url = format!("{}/meshes/default/dataplanes+insights?{query}", cp.api);
        let response = reqwest::blocking::get(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let total = response.headers()["x-total-count"]
            .to_str()
            .unwrap_or("")
            .to_string();
        (total, response.json::<Value>().expect("a JSON page"))
    };
    let (total, page) = get("size=2");
    assert_eq!(total, "5");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert!(page.get("total").is_none(), "the body is the reference's");

    // Never connected: every one is offline.
    let (total, page) = get("status=offline&size=2");
    assert_eq!(total, "5");
    let next = page["next"].as_str().unwrap_or("");
    assert!(
        next.contains("status=offline") && next.contains("offset=2"),
        "{next}"
    );
    let (total, page) = get("status=online");
    assert_eq!(
        (total.as_str(), page["items"].as_array().map(Vec::len)),
        ("0", Some(0))
    );

    let answer = http(
        "GET",
        &format!("{}/meshes/default/dataplanes+insights?status=up", cp.api),
        None,
    );
    assert_eq!(answer.status, 400);
    assert_eq!(
        causes(&answer.body),
        [(
            "status".to_string(),
            "\"up\" must be online or offline".to_string()
        )]
    );

    let insight = http("GET", &format!("{}/mesh-insights/default", cp.api), None);
    assert_eq!(insight.status, 200, "{}", insight.body);
    assert_eq!(
        insight.body["dataplanes"],
        json!({"total": 5, "online": 0, "offline": 5})
    );
    assert_eq!(insight.body["policies"]["TrafficPermission"]["total"], 0);
    assert_eq!(
        http("GET", &format!("{}/mesh-insights/nowhere", cp.api), None).status,
        404
    );
}

#[test]
fn deleting_a_mesh_deletes_its_resources() {
    let cp = KumaCp::start(&[]);
    assert_eq!(
        http("PUT", &format!("{}/meshes/team-a", cp.api), Some("{}")).status,
        201
    );
    let dp = DP.replace("\"default\"", "\"team-a\"");
    let url = format!("{}/meshes/team-a/dataplanes/dp-1", cp.api);
    assert_eq!(http("PUT", &url, Some(&dp)).status, 201);
    assert_eq!(
        http("DELETE", &format!("{}/meshes/team-a", cp.api), None).status,
        200
    );
    assert_eq!(
        http("PUT", &format!("{}/meshes/team-a", cp.api), Some("{}")).status,
        201
    );
    assert_eq!(
        http("GET", &url, None).status,
        404,
        "the dataplane went with its mesh"
    );
}

#[test]
fn root_answers_the_version_and_health_answers() {
    let cp = KumaCp::start(&[]);
    let root = http("GET", &format!("{}/", cp.api), None);
    assert_eq!(root.body["tagline"], "Kuma");
    assert_eq!(root.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        http("GET", &format!("{}/healthy", cp.health), None).status,
        200
    );
    assert_eq!(
        http("GET", &format!("{}/ready", cp.health), None).status,
        200
    );
    let meshes = http("GET", &format!("{}/meshes", cp.api), None);
    assert_eq!(
        meshes.body["items"][0]["name"], "default",
        "default mesh exists after the first start"
    );
    let missing = http("GET", &format!("{}/no/such/thing", cp.api), None);
    assert_eq!(missing.status, 404);
    assert_error_shape(&missing.body);
    let wrong_method = http("POST", &format!("{}/meshes", cp.api), Some("{}"));
    assert_eq!(wrong_method.status, 405);
    assert_error_shape(&wrong_method.body);
}

#[test]
fn kubernetes_mode_api_is_read_only() {
    let cp = KumaCp::start(&[("KUMA_ENVIRONMENT", "kubernetes")]);
    let answer = http(
        "PUT",
        &format!("{}/meshes/default/dataplanes/dp-1", cp.api),
        Some(DP),
    );
    assert_eq!(answer.status, 405);
    assert!(
        answer.body["details"]
            .as_str()
            .unwrap()
            .contains("kubectl apply"),
        "{}",
        answer.body
    );
    assert_eq!(
        http("DELETE", &format!("{}/meshes/default", cp.api), None).status,
        405
    );
    assert_eq!(
        http("GET", &format!("{}/meshes/default", cp.api), None).status,
        200
    );
}

/// Found by the `http_api` fuzz target: a path segment that does not
/// decode (`%ff`) was refused by the router in plain text. Every refusal
/// is the documented JSON error.
#[test]
fn a_path_that_does_not_decode_is_refused_with_the_json_error() {
    let cp = KumaCp::start(&[]);
    for (method, path) in [
        ("PUT", "/meshes/default/tra%ffic-routes/r"),
        ("GET", "/meshes/%ff"),
        ("DELETE", "/meshes/default/dataplanes/%ff%fe"),
    ] {
        let answer = http(method, &format!("{}{path}", cp.api), Some("{}"));
        assert_eq!(answer.status, 400, "{method} {path}: {}", answer.body);
        assert_eq!(answer.body["title"], "Bad Request", "{method} {path}");
        assert!(
            answer.body["details"].is_string(),
            "{method} {path}: {}",
            answer.body
        );
    }
}
