//! Health on the diagnostics port: `/healthy` answers while the process
//! runs; `/ready` only while the store answers too.

use crate::store::SharedStore;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

pub fn router(store: SharedStore) -> Router {
    Router::new()
        .route("/healthy", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .with_state(store)
}

async fn ready(State(store): State<SharedStore>) -> (StatusCode, String) {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
