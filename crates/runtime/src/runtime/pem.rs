//! Reading certificates and keys from PEM files named by settings, with
//! errors that say which setting and which file.

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{setting} {path}: {source}")]
    Read {
        /// The setting (a `KUMA_*` variable or a settings key) naming the file.
        setting: String,
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{setting} {path}: no certificate found")]
    NoCertificate { setting: String, path: String },
    #[error("{setting} {path}: {source}")]
    Unusable {
        setting: String,
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{setting} {path}: {source}")]
    Directory {
        setting: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn read_err(setting: &str, path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> PemError {
    move |source| PemError::Read {
        setting: setting.to_string(),
        path: path.display().to_string(),
        source,
    }
}

/// Every certificate of a PEM file; at least one.
pub fn certificates(
    setting: &str,
    path: impl AsRef<Path>,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(read_err(setting, path))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            setting: setting.to_string(),
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn private_key(
    setting: &str,
    path: impl AsRef<Path>,
) -> Result<PrivateKeyDer<'static>, PemError> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(read_err(setting, path))
}

/// Adds every certificate of a PEM file to `roots`.
pub fn add_roots(
    roots: &mut RootCertStore,
    setting: &str,
    path: impl AsRef<Path>,
) -> Result<(), PemError> {
    let path = path.as_ref();
    for cert in certificates(setting, path)? {
        roots.add(cert).map_err(|source| PemError::Unusable {
            setting: setting.to_string(),
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Adds the certificates of every `.pem` and `.crt` file of a directory.
pub fn add_roots_from_dir(
    roots: &mut RootCertStore,
    setting: &str,
    dir: impl AsRef<Path>,
) -> Result<(), PemError> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|source| PemError::Directory {
        setting: setting.to_string(),
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("pem" | "crt")
        ) {
            add_roots(roots, setting, &path)?;
        }
    }
    if roots.is_empty() {
        return Err(PemError::NoCertificate {
            setting: setting.to_string(),
            path: format!("{} (no .pem or .crt file)", dir.display()),
        });
    }
    Ok(())
}
