//! The dataplane token server: `POST /tokens {"name", "mesh"}` answers a
//! token; `POST /tokens/revocations {"token"}` revokes one.
//!
//! It listens on 127.0.0.1 only, unless the public server is enabled: then
//! the same endpoints are also served over HTTPS on a public interface, to
//! clients presenting a certificate from the client certificates directory.

use crate::api::ApiError;
use crate::config::TokenServerPublicConfig;
use crate::resources::Cause;
use crate::security::tokens::{self, TokenError};
use crate::store::SharedStore;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
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
        TokenError::Store(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Store unavailable",
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

/// The TLS configuration of the public server: its certificate, and the
/// client certificates it trusts (every `.pem`/`.crt` file of the directory).
pub fn public_tls(cfg: &TokenServerPublicConfig) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(&cfg.tls_cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_CERT_FILE {}: {e}",
                cfg.tls_cert_file
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&cfg.tls_key_file).map_err(|e| {
        format!(
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_KEY_FILE {}: {e}",
            cfg.tls_key_file
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let dir = Path::new(&cfg.client_certs_dir);
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_CLIENT_CERTS_DIR {}: {e}",
            dir.display()
        )
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("pem" | "crt")
        ) {
            continue;
        }
        for cert in
            CertificateDer::pem_file_iter(&path).map_err(|e| format!("{}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_CLIENT_CERTS_DIR {}: no client certificate (.pem or .crt) found",
            dir.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client certificates: {e}"))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_TLS_CERT_FILE: {e}"))
}

/// Serves `router` over HTTPS until `stop` completes; a client that fails
/// the handshake (no trusted certificate) is dropped and logged.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tokio::pin!(stop);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "token server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(socket).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "token server: TLS handshake refused");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
        });
    }
}
