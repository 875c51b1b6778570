//! The HTTP API, in process, on a memory store holding mesh `default` and
//! one dataplane: any method, path, query string and body.
//! No answer is a 5xx, and every refusal is the documented JSON error
//! (`title`, `details`).
#![no_main]

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use kuma::api::{ApiContext, explain::Proxies, router};
use kuma::resources::outside_mesh::OutsideMesh;
use kuma::resources::{Identity, Resource};
use kuma::store::{ResourceStore, memory::MemoryStore};
use kuma::xds::cache::SnapshotCache;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

const METHODS: [&str; 5] = ["GET", "PUT", "DELETE", "POST", "PATCH"];

/// A router over a fresh memory store holding mesh `default` and one
/// dataplane.
async fn fresh_api() -> Router {
    let store = Arc::new(MemoryStore::new());
    for doc in [
        serde_json::json!({"type": "Mesh", "name": "default"}),
        serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"inbound": [{"interface": "127.0.0.1:10000:8080", "tags": {"service": "web"}}]}}),
    ] {
        let r = Resource::from_json(doc, Identity::FromDocument).expect("valid");
        store.create(r).await.expect("stored");
    }
    let (cache, _connected) = SnapshotCache::new();
    let ctx = ApiContext {
        authenticator: Arc::new(kuma::api::authn::Authenticator {
            store: store.clone(),
            localhost_is_admin: true,
            certificates_are_admin: false,
        }),
        dataplane_token_validity: std::time::Duration::from_secs(3600),
        store,
        read_only: false,
        default_page_size: 100,
        max_page_size: 1000,
        instance_id: "fuzz".into(),
        hostname: "fuzz".into(),
        token_server_local: "http://127.0.0.1:5679".into(),
        token_server_public: None,
        metrics: Arc::new(kuma::metrics::Metrics::new()),
        outside_mesh: OutsideMesh::default(),
        control_plane_ca: Err("no CA in the fuzz harness".into()),
        proxies: Proxies {
            index: Default::default(),
            cache,
        },
    };
    let limits = kuma::api::Limits {
        max_body_bytes: 1 << 20,
        max_concurrent_requests: 64,
        request_timeout: std::time::Duration::from_secs(10),
    };
    router(ctx, &limits)
}

/// Requests one store and router serve before they are built afresh, as a
/// running control plane serves a stream of requests. Building them costs
/// more than most requests; starting over keeps the store small. (A crash
/// that needs what earlier requests wrote does not reproduce from its input
/// alone: replay the run's inputs before it.)
const REQUESTS_PER_STORE: usize = 1024;

thread_local! {
    static API: RefCell<(usize, Option<Router>)> = const { RefCell::new((0, None)) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (target, body) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(mut request) = Request::builder()
        .method(METHODS[method as usize % METHODS.len()])
        .uri(format!("/{}", target.trim_start_matches('/')))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
    else {
        return;
    };
    // As the accept loop marks it: from loopback, so the local admin.
    request.extensions_mut().insert(kuma::runtime::Peer {
        address: ([127, 0, 0, 1], 40000).into(),
        certificate: None,
    });
    let api = API.with(|api| {
        let mut api = api.borrow_mut();
        if api.0 % REQUESTS_PER_STORE == 0 {
            api.1 = Some(RUNTIME.block_on(fresh_api()));
        }
        api.0 += 1;
        api.1.clone().expect("built above")
    });
    RUNTIME.block_on(async move {
        let answer = api
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = answer.status();
        assert!(!status.is_server_error(), "{status}");
        if status.is_client_error() {
            let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
                .await
                .expect("a body");
            let error: serde_json::Value =
                serde_json::from_slice(&bytes).expect("a refusal is JSON");
            assert!(error["title"].is_string() && error["details"].is_string(), "{error}");
        }
    });
});
