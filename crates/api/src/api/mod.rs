//! The HTTP API on port 5681, as the reference documents it: meshes and the
//! resources inside them, dataplanes with their insights, and the version.

pub mod authn;
mod error;
pub mod explain;
pub mod gui;
pub mod https;
pub(crate) mod mesh_insights;
pub mod openapi;
mod overview;
mod paging;
mod resources;
pub mod settings;
pub mod token_server;
mod tokens;

pub use error::ApiError;

use crate::store::SharedStore;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use std::sync::Arc;

/// What every handler needs.
pub struct ApiContext {
    pub store: SharedStore,
    /// Writes answer 405 (Kubernetes mode, or configured so).
    pub read_only: bool,
    pub default_page_size: usize,
    pub max_page_size: usize,
    pub instance_id: String,
    pub hostname: String,
    /// Where the dataplane token server answers: `local` (on the control
    /// plane's host) and, when enabled, `public` (HTTPS), as `GET /` says.
    /// `kumactl generate dataplane-token` asks the public one when it has a
    /// client certificate for it, the API's `/tokens/dataplane` otherwise.
    pub token_server_local: String,
    pub token_server_public: Option<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Kubernetes: pods that should be in a mesh and have no sidecar.
    pub outside_mesh: crate::resources::outside_mesh::OutsideMesh,
    /// What the proxies are sent, for the explain endpoints.
    pub proxies: explain::Proxies,
    /// Who a request is from.
    pub authenticator: Arc<authn::Authenticator>,
    /// Validity of dataplane tokens that do not ask for less.
    pub dataplane_token_validity: std::time::Duration,
    /// The PEM of the CA proxies verify this control plane with, or why
    /// there is none to give.
    pub control_plane_ca: Result<String, String>,
}

pub type SharedContext = Arc<ApiContext>;

/// What the API takes on at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Larger request bodies get 413.
    pub max_body_bytes: usize,
    /// Requests served at once; more get 503 at once.
    pub max_concurrent_requests: usize,
    /// A request taking longer gets 503.
    pub request_timeout: std::time::Duration,
}

/// Answers a request the limits stopped: 503 with what to do, and
/// `Retry-After`.
async fn overloaded(limits: Limits, error: tower::BoxError) -> axum::response::Response {
    use axum::response::IntoResponse;
    let details = if error.is::<tower::timeout::error::Elapsed>() {
        format!(
            "the request took longer than {} ms (apiServer.requestTimeoutMs, KUMA_API_SERVER_REQUEST_TIMEOUT_MS)",
            limits.request_timeout.as_millis()
        )
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        format!(
            "kuma-cp is serving {} requests at once (apiServer.maxConcurrentRequests, KUMA_API_SERVER_MAX_CONCURRENT_REQUESTS); try again shortly",
            limits.max_concurrent_requests
        )
    } else {
        format!("the request could not be served: {error}")
    };
    let mut response =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Overloaded", details).into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// A refusal that is not the API's own JSON error (axum's rejections of a
/// path that does not decode, say, are plain text) becomes one, with the
/// text as its details: every 4xx and 5xx of the API has one shape.
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let title = status.canonical_reason().unwrap_or("Error");
    ApiError::new(status, title, String::from_utf8_lossy(&bytes).trim()).into_response()
}

/// The API's routes, within `limits`.
pub fn router(ctx: ApiContext, limits: &Limits) -> Router {
    let limits = *limits;
    let authenticator = ctx.authenticator.clone();
    Router::new()
        .route("/metrics", get(metrics))
        .route("/tokens/user", axum::routing::post(tokens::user_token))
        .route(
            "/tokens/user/revocations",
            axum::routing::post(tokens::revoke_user_token),
        )
        .route(
            "/tokens/dataplane",
            axum::routing::post(tokens::dataplane_token),
        )
        .route("/mesh-insights", get(mesh_insights::list))
        .route("/mesh-insights/{mesh}", get(mesh_insights::get))
        .route("/meshes", get(resources::list_meshes))
        .route(
            "/meshes/{mesh}",
            get(resources::get_mesh)
                .put(resources::put_mesh)
                .delete(resources::delete_mesh),
        )
        .route(
            "/meshes/{mesh}/dataplanes/{name}/{view}",
            get(explain::dataplane_view),
        )
        .route("/meshes/{mesh}/{collection}", get(resources::list_in_mesh))
        .route("/meshes/{mesh}/{collection}/", get(resources::list_in_mesh))
        .route(
            "/meshes/{mesh}/{collection}/{name}",
            get(resources::get_in_mesh)
                .put(resources::put_in_mesh)
                .delete(resources::delete_in_mesh),
        )
        .route(
            "/{collection}",
            get(resources::list_global).fallback(resources::other_method_global),
        )
        .route(
            "/{collection}/{name}",
            get(resources::get_global)
                .put(resources::put_global)
                .delete(resources::delete_global),
        )
        // Every route above needs a user; the index below says only what
        // this control plane is.
        .route_layer(axum::middleware::from_fn_with_state(
            authenticator,
            authn::authenticate,
        ))
        .route("/", get(index))
        .route("/openapi.json", get(openapi_document))
        // Public, like any CA certificate: what kuma-dp needs before it
        // has anything else.
        .route("/control-plane/ca", get(control_plane_ca))
        // The GUI's files need no user: what it shows comes from the API,
        // which asks the browser's user for credentials.
        .route("/gui", get(gui::to_gui))
        .route("/gui/", get(gui::asset))
        .route("/gui/{*path}", get(gui::asset))
        .fallback(|| async { ApiError::not_found("no such endpoint; see GET / and /meshes") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "this endpoint answers GET, PUT and DELETE only where the reference documents them",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::map_response(json_errors))
        // Outermost first: an error of the limits below becomes a 503; a
        // request beyond the concurrency limit is refused, not queued.
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    move |error: tower::BoxError| overloaded(limits, error),
                ))
                .load_shed()
                // Global: axum layers each route apart, and the limit is
                // of the whole API.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    limits.max_concurrent_requests,
                ))
                .timeout(limits.request_timeout),
        )
        .with_state(Arc::new(ctx))
}

/// The control plane's own metrics: figures of every mesh together, so
/// the admin's only.
async fn metrics(
    State(ctx): State<SharedContext>,
    caller: authn::Caller,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    caller.require_admin("read the control plane's metrics")?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        ctx.metrics.encode(),
    ))
}

/// `GET /openapi.json`: the API's OpenAPI document, built once.
async fn openapi_document() -> impl axum::response::IntoResponse {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(openapi::document_text);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        TEXT.as_str(),
    )
}

/// `GET /`: what this control plane is, the one answer that needs no user.
#[derive(serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ControlPlaneIndex {
    hostname: String,
    /// Always `Kuma`: clients tell a Kuma control plane by it.
    tagline: &'static str,
    version: &'static str,
    instance_id: String,
    dataplane_token_server: TokenServers,
}

/// Where dataplane tokens are minted.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct TokenServers {
    /// On the control plane's host, plain HTTP.
    local: String,
    /// Over HTTPS, when enabled.
    public: Option<String>,
}

/// `GET /control-plane/ca`: `{"caCert": PEM}`, the CA `kuma-dp
/// --ca-cert-file` takes (`kumactl inspect control-plane-ca` prints it).
async fn control_plane_ca(
    State(ctx): State<SharedContext>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    match &ctx.control_plane_ca {
        Ok(pem) => Ok(axum::Json(serde_json::json!({"caCert": pem}))),
        Err(why) => Err(ApiError::not_found(why.clone())),
    }
}

async fn index(State(ctx): State<SharedContext>) -> axum::Json<ControlPlaneIndex> {
    axum::Json(ControlPlaneIndex {
        hostname: ctx.hostname.clone(),
        tagline: "Kuma",
        version: crate::version::VERSION,
        instance_id: ctx.instance_id.clone(),
        dataplane_token_server: TokenServers {
            local: ctx.token_server_local.clone(),
            public: ctx.token_server_public.clone(),
        },
    })
}
