//! The sidecar injector: a mutating admission webhook over HTTPS
//! (`POST /inject-sidecar`, `admission.k8s.io/v1` `AdmissionReview`). For a
//! pod of a namespace labelled `kuma.io/sidecar-injection: enabled` it
//! answers a JSON patch adding `kuma-init` and `kuma-sidecar`
//! ([`sidecar`]); every other pod is allowed as it is.
//!
//! It also validates Kuma's namespaced objects (`POST
//! /validate-kuma-resources`): an object of namespace N naming a mesh whose
//! constraints name other namespaces is denied, so a team with edit rights
//! in its namespace cannot write policies into another team's mesh.
//!
//! A review that cannot be read gets a 400 naming what is wrong, one over
//! [`MAX_REVIEW_BYTES`] a 413; a failure on our side (the namespace cannot be
//! read) a 500, so the webhook's failure policy decides.

mod settings;
pub mod sidecar;

use crate::runtime::pem::{self, PemError};
use crate::runtime::{self, CancellationToken, ListenError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
pub use settings::{InjectorConfig, InjectorSettings};
use sidecar::Decision;
use std::sync::Arc;

/// Reviews larger than this are refused (the API server's own request
/// limit is 3 MiB).
pub const MAX_REVIEW_BYTES: usize = 3 * 1024 * 1024;

pub struct Injector {
    pub config: InjectorConfig,
    /// Reads the labels of a pod's namespace, and meshes.
    pub client: kube::Client,
    /// The control plane's namespace, whose objects may be of any mesh.
    pub system_namespace: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InjectorError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(
        "the webhook's certificate: {0} (KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR must hold tls.crt and tls.key)"
    )]
    Certificate(#[from] PemError),
    #[error("the webhook's TLS: {0}")]
    Tls(#[from] rustls::Error),
}

pub fn router(injector: Arc<Injector>) -> Router {
    Router::new()
        .route("/inject-sidecar", post(review))
        .route("/validate-kuma-resources", post(validate))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(injector)
}

fn refuse(status: StatusCode, message: String) -> Response {
    tracing::warn!(%status, message, "admission review refused");
    (status, message).into_response()
}

async fn review(
    State(injector): State<Arc<Injector>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(
        body,
        |request| async move { answer(&injector, &request).await },
    )
    .await
}

async fn validate(
    State(injector): State<Arc<Injector>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(body, |request| async move {
        validation(&injector, &request).await
    })
    .await
}

/// Reads an `AdmissionReview` and answers what `decide` makes of its
/// request, or the refusal of a body that is none.
async fn respond<F, Fut>(body: Result<Bytes, BytesRejection>, decide: F) -> Response
where
    F: FnOnce(AdmissionRequest<DynamicObject>) -> Fut,
    Fut: std::future::Future<Output = Result<AdmissionResponse, Response>>,
{
    let request = match read_review(body) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    match decide(request).await {
        Ok(response) => axum::Json(wire_review(response)).into_response(),
        Err(status) => status,
    }
}

/// A Kuma object of a namespace its mesh does not admit is denied.
async fn validation(
    injector: &Injector,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<AdmissionResponse, Response> {
    let allowed = AdmissionResponse::from(request);
    let (Some(object), Some(namespace)) = (request.object.as_ref(), request.namespace.as_deref())
    else {
        return Ok(allowed);
    };
    if request.kind.group != crate::k8s::crd::GROUP || namespace == injector.system_namespace {
        return Ok(allowed);
    }
    let mesh = crate::k8s::crd::mesh_of(object);
    let Some(mesh_crd) = crate::k8s::crd::KumaCrd::of(crate::resources::ResourceType::Mesh) else {
        return Ok(allowed);
    };
    let found = Api::<DynamicObject>::all_with(injector.client.clone(), &mesh_crd.api_resource())
        .get_opt(&mesh)
        .await
        .map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read mesh {mesh}: {e}"),
            )
        })?;
    let constraints = found
        .and_then(|m| crate::k8s::crd::to_resource(&mesh_crd, &m).ok())
        .and_then(|r| match r.spec {
            crate::resources::Spec::Mesh(spec) => spec.constraints,
            _ => None,
        });
    match constraints.map(|c| c.admits_namespace(&mesh, namespace)) {
        Some(Err(why)) => {
            let name = object.metadata.name.clone().unwrap_or_default();
            tracing::info!(namespace, name, kind = %request.kind.kind, mesh, "refused: {why}");
            Ok(allowed.deny(format!("{} {namespace}/{name}: {why}", request.kind.kind)))
        }
        _ => Ok(allowed),
    }
}

/// The request of an `AdmissionReview` body, or the answer refusing it.
fn read_review(
    body: Result<Bytes, BytesRejection>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Response>> {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(Box::new(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the AdmissionReview is larger than {MAX_REVIEW_BYTES} bytes"),
            )));
        }
        Err(rejection) => {
            return Err(Box::new(refuse(
                StatusCode::BAD_REQUEST,
                rejection.body_text(),
            )));
        }
    };
    parse_review(&body).map_err(|message| Box::new(refuse(StatusCode::BAD_REQUEST, message)))
}

/// The request of an `AdmissionReview` body, or why it is none.
pub fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an admission.k8s.io/v1 AdmissionReview: {e}"))?;
    review
        .try_into()
        .map_err(|_| "the AdmissionReview has no request".to_string())
}

/// The review as the API server reads it. kube keeps the patch as bytes
/// and serde writes bytes as an array of numbers; the API server (Go's
/// `[]byte`) reads a base64 string.
fn wire_review(response: AdmissionResponse) -> serde_json::Value {
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let Some(patch) = patch {
        review["response"]["patch"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
    }
    review
}

/// The response to one request: allowed, with a patch when injecting.
async fn answer(
    injector: &Injector,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<AdmissionResponse, Response> {
    let allowed = AdmissionResponse::from(request);
    let Some(object) = request
        .object
        .as_ref()
        .filter(|_| request.kind.kind == "Pod")
    else {
        return Ok(allowed);
    };
    let pod = serde_json::to_value(object).unwrap_or_default();
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let ns = Api::<Namespace>::all(injector.client.clone())
        .get_opt(&namespace)
        .await
        .map_err(|e| {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read namespace {namespace}: {e}"),
            )
        })?;
    let labels = ns
        .as_ref()
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let annotations = ns
        .as_ref()
        .and_then(|n| n.metadata.annotations.clone())
        .unwrap_or_default();
    let name = object
        .metadata
        .name
        .clone()
        .or_else(|| object.metadata.generate_name.clone())
        .unwrap_or_default();
    match sidecar::decide(&pod, &labels, &annotations) {
        Decision::Inject { mesh } => {
            let ca = control_plane_ca(&injector.config)
                .map_err(|why| refuse(StatusCode::INTERNAL_SERVER_ERROR, why))?;
            let patch = sidecar::patch(&pod, &injector.config, &mesh, ca.as_deref());
            tracing::info!(namespace, pod = name, mesh, "injecting the sidecar");
            allowed.with_patch(patch).map_err(|e| {
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the patch: {e}"),
                )
            })
        }
        other => {
            tracing::debug!(namespace, pod = name, decision = ?other, "not injecting");
            Ok(allowed)
        }
    }
}

/// The control plane's CA for the sidecar, read now: a pod is refused,
/// with the file named, rather than given a sidecar that cannot verify.
fn control_plane_ca(config: &InjectorConfig) -> Result<Option<String>, String> {
    let file = &config.control_plane.ca_cert_file;
    if file.is_empty() {
        return Ok(None);
    }
    std::fs::read_to_string(file).map(Some).map_err(|e| {
        format!(
            "cannot read the control plane's CA for the sidecar (KUMA_INJECTOR_CONTROL_PLANE_CA_CERT_FILE {file}): {e}"
        )
    })
}

/// The webhook's socket and TLS (the certificate of
/// `webhookServer.certDir`), ready to serve: a taken port or a missing
/// certificate ends the start before anything serves.
pub async fn bind(
    config: &InjectorConfig,
) -> Result<(runtime::Bound, rustls::ServerConfig), InjectorError> {
    let server = &config.webhook_server;
    let dir = std::path::Path::new(&server.cert_dir);
    let certs = pem::certificates("KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR", dir.join("tls.crt"))?;
    let key = pem::private_key("KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR", dir.join("tls.key"))?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let bound = runtime::bind_on(
        "injector webhook",
        "injector.webhookServer.port",
        &server.address,
        server.port,
    )
    .await?;
    Ok((bound, tls))
}

/// Serves the webhook over HTTPS until shutdown.
pub async fn serve(
    injector: Injector,
    (bound, tls): (runtime::Bound, rustls::ServerConfig),
    shutdown: CancellationToken,
) {
    bound
        .serve_tls(tls, router(Arc::new(injector)), shutdown)
        .await
}
