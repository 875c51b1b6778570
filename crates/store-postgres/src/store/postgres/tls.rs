//! TLS to PostgreSQL, in Kuma's modes: `disable`, `verifyNone` (encrypt,
//! trust any certificate), `verifyCa` (the server's certificate must chain
//! to the CA, any host name) and `verifyFull` (chain and host name).

use super::settings::{PostgresTlsConfig, PostgresTlsMode};
use crate::runtime::pem::{self, PemError};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub(super) fn ssl_mode(mode: PostgresTlsMode) -> SslMode {
    match mode {
        PostgresTlsMode::Disable => SslMode::Disable,
        PostgresTlsMode::VerifyNone | PostgresTlsMode::VerifyCa | PostgresTlsMode::VerifyFull => {
            SslMode::Require
        }
    }
}

/// The TLS settings of the Postgres store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PostgresTlsError {
    #[error(transparent)]
    Files(#[from] PemError),
    #[error("store.postgres.tls.caPath: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("store.postgres.tls: {0}")]
    Rustls(#[from] rustls::Error),
}

pub(super) fn connector(cfg: &PostgresTlsConfig) -> Result<MakeRustlsConnect, PostgresTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    if cfg.ca_path.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        pem::add_roots(&mut roots, "KUMA_STORE_POSTGRES_TLS_CA_PATH", &cfg.ca_path)?;
    }
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier: Arc<dyn ServerCertVerifier> = match cfg.mode {
        PostgresTlsMode::VerifyNone => Arc::new(Lenient {
            inner: webpki,
            check_chain: false,
        }),
        PostgresTlsMode::VerifyCa => Arc::new(Lenient {
            inner: webpki,
            check_chain: true,
        }),
        PostgresTlsMode::VerifyFull | PostgresTlsMode::Disable => webpki,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = if cfg.cert_path.is_empty() {
        builder.with_no_client_auth()
    } else {
        let certs = pem::certificates("KUMA_STORE_POSTGRES_TLS_CERT_PATH", &cfg.cert_path)?;
        let key = pem::private_key("KUMA_STORE_POSTGRES_TLS_KEY_PATH", &cfg.key_path)?;
        builder.with_client_auth_cert(certs, key)?
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `verifyNone` and `verifyCa`: signatures are always checked; the chain
/// only for `verifyCa`; the host name never.
#[derive(Debug)]
struct Lenient {
    inner: Arc<WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(TlsError::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
