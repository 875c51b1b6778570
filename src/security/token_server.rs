//! The dataplane token server: `POST /tokens {"name", "mesh"}` answers a
//! token; `POST /tokens/revocations {"token"}` revokes one.
//!
//! It listens on 127.0.0.1 only, unless the public server is enabled: then
//! the same endpoints are also served over HTTPS on a public interface, to
//! clients presenting a certificate from the client certificates directory.

use crate::api::ApiError;
use crate::config::TokenServerPublicConfig;
use crate::resources::Cause;
use crate::security::pem::{self, PemError};
use crate::security::tokens::{self, TokenError};
use crate::store::SharedStore;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct TokenContext {
    pub store: SharedStore,
    /// Validity of tokens that do not ask for less.
    pub default_validity: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRequest {
    name: String,
    mesh: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// Seconds the token is valid for.
    #[serde(default)]
    valid_for_seconds: Option<u64>,
}

pub fn router(ctx: TokenContext) -> Router {
    Router::new()
        .route("/tokens", post(generate))
        .route("/tokens/revocations", post(revoke))
        .with_state(Arc::new(ctx))
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::UnknownMesh(_) => {
            ApiError::bad_request(e.to_string(), vec![Cause::new("mesh", e.to_string())])
        }
        TokenError::Validity(_) => ApiError::bad_request(
            "Invalid token request",
            vec![Cause::new("validForSeconds", e.to_string())],
        ),
        TokenError::Store(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable",
            e.to_string(),
        ),
        TokenError::SigningKey { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            e.to_string(),
        ),
        other => ApiError::bad_request(other.to_string(), Vec::new()),
    }
}

async fn generate(State(ctx): State<Arc<TokenContext>>, body: Bytes) -> Result<String, ApiError> {
    let req: TokenRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("the token request is not valid JSON of the form {{\"name\": \"...\", \"mesh\": \"...\"}}: {e}"),
            Vec::new(),
        )
    })?;
    let mut causes = Vec::new();
    if req.name.is_empty() {
        causes.push(Cause::new("name", "must be set"));
    }
    if req.mesh.is_empty() {
        causes.push(Cause::new("mesh", "must be set"));
    }
    if !causes.is_empty() {
        return Err(ApiError::bad_request("Invalid token request", causes));
    }
    let validity = req
        .valid_for_seconds
        .map(Duration::from_secs)
        .unwrap_or(ctx.default_validity);
    let token = tokens::issue(ctx.store.as_ref(), &req.mesh, &req.name, req.tags, validity)
        .await
        .map_err(token_error)?;
    tracing::info!(
        mesh = req.mesh,
        dataplane = req.name,
        "issued a dataplane token"
    );
    Ok(token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    token: String,
}

async fn revoke(State(ctx): State<Arc<TokenContext>>, body: Bytes) -> Result<String, ApiError> {
    let req: RevokeRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"token\": \"...\"}}: {e}"), Vec::new())
    })?;
    let claims = tokens::revoke(ctx.store.as_ref(), &req.token)
        .await
        .map_err(token_error)?;
    tracing::info!(
        mesh = claims.mesh,
        dataplane = claims.name,
        id = claims.jti,
        "revoked a dataplane token"
    );
    Ok(format!(
        "revoked token {} of dataplane \"{}\" in mesh \"{}\"\n",
        claims.jti, claims.name, claims.mesh
    ))
}

/// The public server's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublicTlsError {
    #[error(transparent)]
    Files(#[from] PemError),
    #[error("client certificates of KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_CLIENT_CERTS_DIR: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_CERT_FILE/_TLS_KEY_FILE: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS configuration of the public server: its certificate, and the
/// client certificates it trusts (every `.pem`/`.crt` file of the directory).
pub fn public_tls(cfg: &TokenServerPublicConfig) -> Result<rustls::ServerConfig, PublicTlsError> {
    let certs = pem::certificates(
        "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_CERT_FILE",
        &cfg.tls_cert_file,
    )?;
    let key = pem::private_key(
        "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_KEY_FILE",
        &cfg.tls_key_file,
    )?;
    let mut roots = rustls::RootCertStore::empty();
    pem::add_roots_from_dir(
        &mut roots,
        "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_CLIENT_CERTS_DIR",
        &cfg.client_certs_dir,
    )?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?)
}
