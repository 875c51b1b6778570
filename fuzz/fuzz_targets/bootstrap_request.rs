//! `POST /bootstrap` in process, with mesh `default` holding dataplane
//! `web-1`: any body. Only a request for `default.web-1` gets a bootstrap,
//! and it names that proxy and the admin port asked for; every refusal is
//! the API's JSON error; nothing is a 5xx. Time is paused, so the grace a
//! dataplane not yet registered is given passes at once.
#![no_main]

use axum::body::Body;
use axum::http::Request;
use kuma::bootstrap::{BootstrapContext, router};
use kuma::bootstrap::XdsApiType;
use kuma::resources::{Identity, Resource};
use kuma::xds::auth::{DataplaneAuth, StreamAuth};
use kuma::xds::index::{IndexEvent, IndexHandle};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
});

/// Built once: the bootstrap server only reads the index.
static INDEX: LazyLock<IndexHandle> = LazyLock::new(|| {
    let index = IndexHandle::default();
    let resources = [
        serde_json::json!({"type": "Mesh", "name": "default"}),
        serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"inbound": [{"interface": "127.0.0.1:10000:8080", "tags": {"service": "web"}}]}}),
    ]
    .into_iter()
    .map(|doc| Resource::from_json(doc, Identity::FromDocument).expect("valid"))
    .collect();
    index.apply(IndexEvent::Reset(resources));
    index
});

fuzz_target!(|data: &[u8]| {
    let request: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    RUNTIME.block_on(async move {
        let index = INDEX.clone();
        let app = router(BootstrapContext {
            auth: Arc::new(DataplaneAuth {
                kind: StreamAuth::None,
                index: index.clone(),
            }),
            index,
            xds_host: "127.0.0.1".into(),
            xds_port: 5678,
            api_type: XdsApiType::Sotw,
            xds_tls: true,
        });
        let http = Request::post("/bootstrap")
            .header("content-type", "application/json")
            .body(Body::from(data.to_vec()))
            .expect("a request");
        let response = app.oneshot(http).await.expect("an answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
        assert!(!status.is_server_error(), "{status}: {answer}");
        let asked_for_web_1 = request.as_ref().is_some_and(|r| {
            r["mesh"] == "default" && r["name"] == "web-1"
        });
        if status.is_success() {
            let request = request.expect("a bootstrap answers a JSON request");
            assert!(asked_for_web_1, "a bootstrap for {request}");
            assert_eq!(answer["node"]["id"], "default.web-1");
            match request.get("adminPort") {
                Some(port) if !port.is_null() => {
                    assert_eq!(&answer["admin"]["address"]["socket_address"]["port_value"], port)
                }
                _ => assert!(answer.get("admin").is_none()),
            }
        } else {
            assert!(
                answer["title"].is_string() && answer["details"].is_string(),
                "{status}: {answer}"
            );
        }
    });
});
