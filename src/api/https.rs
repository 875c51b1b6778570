//! The HTTP API over HTTPS (`apiServer.https`): its certificate, from files
//! or generated for this host, and the client certificates it takes as
//! users (`apiServer.auth.clientCertsDir`).

use crate::config::ApiServerConfig;
use crate::security::pem::{self, PemError};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    #[error(transparent)]
    Files(#[from] PemError),
    #[error(
        "KUMA_API_SERVER_HTTPS_TLS_CERT_FILE and KUMA_API_SERVER_HTTPS_TLS_KEY_FILE go together: set both, or neither to use a generated certificate"
    )]
    HalfAPair,
    #[error(
        "KUMA_API_SERVER_HTTPS_REQUIRE_CLIENT_CERT needs KUMA_API_SERVER_AUTH_CLIENT_CERTS_DIR: the CAs client certificates are checked against"
    )]
    NoClientCas,
    #[error("client certificates of KUMA_API_SERVER_AUTH_CLIENT_CERTS_DIR: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("the API's certificate: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate the API's certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The TLS configuration of the HTTPS API port.
pub fn tls_config(
    cfg: &ApiServerConfig,
    hostname: &str,
) -> Result<rustls::ServerConfig, ApiTlsError> {
    let https = &cfg.https;
    let (certs, key) = match (
        https.tls_cert_file.is_empty(),
        https.tls_key_file.is_empty(),
    ) {
        (false, false) => (
            pem::certificates("KUMA_API_SERVER_HTTPS_TLS_CERT_FILE", &https.tls_cert_file)?,
            pem::private_key("KUMA_API_SERVER_HTTPS_TLS_KEY_FILE", &https.tls_key_file)?,
        ),
        (true, true) => generated(hostname)?,
        _ => return Err(ApiTlsError::HalfAPair),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if cfg.auth.client_certs_dir.is_empty() {
        if https.require_client_cert {
            return Err(ApiTlsError::NoClientCas);
        }
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        pem::add_roots_from_dir(
            &mut roots,
            "KUMA_API_SERVER_AUTH_CLIENT_CERTS_DIR",
            &cfg.auth.client_certs_dir,
        )?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        // Without a certificate a client may still bring a user token.
        let verifier = if https.require_client_cert {
            verifier.build()?
        } else {
            verifier.allow_unauthenticated().build()?
        };
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

type CertAndKey = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// A self-signed certificate for localhost and `hostname`; clients that
/// cannot verify it use `--skip-verify`, or configure files.
fn generated(hostname: &str) -> Result<CertAndKey, ApiTlsError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !hostname.is_empty() && !names.iter().any(|n| n == hostname) {
        names.push(hostname.to_string());
    }
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(names)?.self_signed(&key)?;
    tracing::info!("the HTTPS API uses a generated self-signed certificate");
    Ok((
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}
