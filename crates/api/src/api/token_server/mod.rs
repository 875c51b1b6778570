//! The dataplane token server: `POST /tokens {"name", "mesh"}` answers a
//! token; `POST /tokens/revocations {"token"}` revokes one.
//!
//! It listens on 127.0.0.1 only, unless the public server is enabled: then
//! the same endpoints are also served over HTTPS on a public interface, to
//! clients presenting a certificate from the client certificates directory.
//! Requests are authenticated as the HTTP API's are: a user token, or the
//! admin from loopback, and a user mints tokens only for the meshes where
//! it has `GENERATE_DATAPLANE_TOKEN`. The HTTP API serves the same at
//! `POST /tokens/dataplane`.

mod settings;

use super::ApiError;
use super::authn::{Authenticator, Caller, authenticate};
use crate::resources::{Access, Cause, ResourceType};
use crate::runtime::pem::{self, PemError};
use crate::security::tokens::{self, TokenError};
use crate::store::SharedStore;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
pub use settings::{DataplaneTokenServerConfig, TokenServerLocalConfig, TokenServerPublicConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct TokenContext {
    pub store: SharedStore,
    /// Validity of tokens that do not ask for less.
    pub default_validity: Duration,
}

/// A token request as it is sent.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "DataplaneTokenRequest")]
pub struct TokenRequestBody {
    name: String,
    mesh: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// Seconds the token is valid for.
    #[serde(default)]
    valid_for_seconds: Option<u64>,
    /// Or as Kuma 2.x writes it: `24h`, `90m`.
    #[serde(default)]
    valid_for: Option<String>,
    /// Kuma 2.x sends `dataplane`; the only type here.
    #[serde(default, rename = "type")]
    token_type: Option<String>,
}

/// What a token is asked for, checked.
struct TokenRequest {
    name: String,
    mesh: String,
    tags: BTreeMap<String, String>,
    /// The server's default when `None`.
    validity: Option<Duration>,
}

pub fn router(ctx: TokenContext, authenticator: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/tokens", post(generate))
        .route("/tokens/revocations", post(revoke))
        .route_layer(axum::middleware::from_fn_with_state(
            authenticator,
            authenticate,
        ))
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

async fn generate(
    State(ctx): State<Arc<TokenContext>>,
    caller: Caller,
    body: Bytes,
) -> Result<String, ApiError> {
    issue_for(&ctx, &caller, &body).await
}

/// The token a request `body` asks for, if `caller` may mint tokens for
/// its mesh (`GENERATE_DATAPLANE_TOKEN`).
pub async fn issue_for(
    ctx: &TokenContext,
    caller: &Caller,
    body: &[u8],
) -> Result<String, ApiError> {
    let req = parse_request(body)?;
    caller.require(
        Access::GenerateDataplaneToken,
        ResourceType::Dataplane,
        &req.mesh,
        &req.name,
    )?;
    issue(ctx, req).await
}

/// Reads a token request; every missing field is named.
fn parse_request(body: &[u8]) -> Result<TokenRequest, ApiError> {
    let req: TokenRequestBody = serde_json::from_slice(body).map_err(|e| {
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
    if let Some(t) = req.token_type.as_deref().filter(|t| *t != "dataplane") {
        causes.push(Cause::new(
            "type",
            format!("\"{t}\" is not a token type here; expected dataplane"),
        ));
    }
    let validity = match (&req.valid_for, req.valid_for_seconds) {
        (Some(text), _) => match crate::security::users::parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                causes.push(Cause::new("validFor", e));
                None
            }
        },
        (None, seconds) => seconds.map(Duration::from_secs),
    };
    if !causes.is_empty() {
        return Err(ApiError::bad_request("Invalid token request", causes));
    }
    Ok(TokenRequest {
        name: req.name,
        mesh: req.mesh,
        tags: req.tags,
        validity,
    })
}

/// Issues the token `req` asks for (the caller may).
async fn issue(ctx: &TokenContext, req: TokenRequest) -> Result<String, ApiError> {
    let validity = req.validity.unwrap_or(ctx.default_validity);
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RevocationRequest")]
pub struct RevokeRequest {
    token: String,
}

/// The token of a revocation request, `{"token": "..."}`.
pub fn revoked_token(body: &[u8]) -> Result<String, ApiError> {
    serde_json::from_slice::<RevokeRequest>(body)
        .map(|r| r.token)
        .map_err(|e| {
            ApiError::bad_request(format!("expected {{\"token\": \"...\"}}: {e}"), Vec::new())
        })
}

async fn revoke(
    State(ctx): State<Arc<TokenContext>>,
    caller: Caller,
    body: Bytes,
) -> Result<String, ApiError> {
    let token = revoked_token(&body)?;
    // Whoever may mint a mesh's tokens may revoke them.
    let claimed = tokens::unverified_claims(&token).map_err(token_error)?;
    caller.require(
        Access::GenerateDataplaneToken,
        ResourceType::Dataplane,
        &claimed.mesh,
        &claimed.name,
    )?;
    let claims = tokens::revoke(ctx.store.as_ref(), &token)
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
