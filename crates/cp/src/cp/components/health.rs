//! Health on the diagnostics port (`xdsServer.diagnosticsPort`):
//! `/healthy` answers while the process runs; `/ready` only while the
//! store answers too.

use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::runtime::{self, Bound, CancellationToken};
use crate::store::SharedStore;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

pub struct Health {
    bound: Bound,
    store: SharedStore,
}

impl Health {
    pub async fn bind(port: u16, store: SharedStore) -> Result<Health, CpError> {
        let bound = runtime::bind("health", "xdsServer.diagnosticsPort", port).await?;
        Ok(Health { bound, store })
    }
}

impl Component for Health {
    fn name(&self) -> &'static str {
        "health"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        let router = Router::new()
            .route("/healthy", get(|| async { "ok" }))
            .route("/ready", get(ready))
            .with_state(self.store);
        vec![Box::pin(self.bound.serve(router, shutdown))]
    }
}

async fn ready(State(store): State<SharedStore>) -> (StatusCode, String) {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
