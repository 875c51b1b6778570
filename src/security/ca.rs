//! The builtin CA of a mesh and the workload certificates it signs.
//!
//! Each mesh with `mtls.ca.builtin` gets its own self-signed root, generated
//! once and kept as the mesh-scoped `Secret` named [`CA_SECRET`]; no mesh
//! reads another's. Workload certificates are X.509 SVIDs with the URI SAN
//! `spiffe://<mesh>/<service>` for each service a dataplane serves, plus
//! `kuma://<tag>/<value>` for its other tags so permissions can select on
//! them; they live in memory only.

use crate::resources::{Resource, ResourceKey, ResourceType, SecretSpec, Spec};
use crate::store::{ResourceStore, StoreError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The Secret holding a mesh's root certificate and key.
pub const CA_SECRET: &str = "ca-builtin";

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("mesh \"{mesh}\": {message}")]
    Certificate { mesh: String, message: String },
    #[error("mesh \"{mesh}\": cannot keep its CA: {source}")]
    Store { mesh: String, source: StoreError },
}

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert: String,
    key: String,
}

/// A mesh's root CA, ready to sign.
pub struct MeshCa {
    pub mesh: String,
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A workload certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: SystemTime,
}

fn cert_err(mesh: &str, e: impl std::fmt::Display) -> CaError {
    CaError::Certificate {
        mesh: mesh.to_string(),
        message: e.to_string(),
    }
}

fn uri(mesh: &str, value: String) -> Result<SanType, CaError> {
    Ok(SanType::URI(
        value.try_into().map_err(|e| cert_err(mesh, e))?,
    ))
}

impl MeshCa {
    /// A new self-signed root for `mesh`, valid ten years.
    pub fn generate(mesh: &str) -> Result<(MeshCa, String), CaError> {
        let key = KeyPair::generate().map_err(|e| cert_err(mesh, e))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Kuma mesh {mesh} root CA"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "kuma");
        params.subject_alt_names = vec![uri(mesh, format!("spiffe://{mesh}"))?];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).map_err(|e| cert_err(mesh, e))?;
        let key_pem = key.serialize_pem();
        let ca = MeshCa {
            mesh: mesh.to_string(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    fn from_pem(mesh: &str, cert_pem: &str, key_pem: &str) -> Result<MeshCa, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| cert_err(mesh, e))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| cert_err(mesh, e))?;
        Ok(MeshCa {
            mesh: mesh.to_string(),
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    /// The mesh's CA from the store, created (once, even with several
    /// control planes racing) when it has none yet.
    pub async fn load_or_create(store: &dyn ResourceStore, mesh: &str) -> Result<MeshCa, CaError> {
        let key = ResourceKey::new(ResourceType::Secret, mesh, CA_SECRET);
        let store_err = |source| CaError::Store {
            mesh: mesh.to_string(),
            source,
        };
        for _ in 0..3 {
            match store.get(&key).await {
                Ok(Resource {
                    spec: Spec::Secret(secret),
                    ..
                }) => {
                    let bytes = secret.bytes().map_err(|e| cert_err(mesh, e))?;
                    let stored: StoredCa =
                        serde_json::from_slice(&bytes).map_err(|e| cert_err(mesh, e))?;
                    return Self::from_pem(mesh, &stored.cert, &stored.key);
                }
                Ok(_) => return Err(cert_err(mesh, "the CA secret is not a Secret")),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(store_err(e)),
            }
            let (ca, key_pem) = Self::generate(mesh)?;
            let stored = serde_json::to_vec(&StoredCa {
                cert: ca.cert_pem.clone(),
                key: key_pem,
            })
            .map_err(|e| cert_err(mesh, e))?;
            let secret = Resource::new(key.clone(), Spec::Secret(SecretSpec::from_bytes(&stored)));
            match store.create(secret).await {
                Ok(_) => {
                    tracing::info!(mesh, "generated the mesh's builtin CA");
                    return Ok(ca);
                }
                // Another control plane won the race: use its CA.
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(cert_err(mesh, "the CA secret keeps changing; giving up"))
    }

    /// Signs a certificate for a dataplane serving `services` with `tags`.
    pub fn issue(
        &self,
        services: &[&str],
        tags: &BTreeMap<String, String>,
        validity: Duration,
    ) -> Result<WorkloadCert, CaError> {
        let mesh = &self.mesh;
        let key = KeyPair::generate().map_err(|e| cert_err(mesh, e))?;
        let mut params = CertificateParams::default();
        let mut sans = Vec::new();
        for s in services {
            sans.push(uri(mesh, format!("spiffe://{mesh}/{s}"))?);
        }
        for (k, v) in tags {
            if k != crate::resources::tags::SERVICE_TAG {
                sans.push(uri(mesh, format!("kuma://{k}/{v}"))?);
            }
        }
        params.subject_alt_names = sans;
        params
            .distinguished_name
            .push(DnType::OrganizationName, mesh.as_str());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        let validity = time::Duration::try_from(validity).map_err(|e| cert_err(mesh, e))?;
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + validity;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| cert_err(mesh, e))?;
        Ok(WorkloadCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: SystemTime::now() + validity.unsigned_abs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_mesh_ca_is_created_once_and_reloaded() {
        let store = MemoryStore::new();
        store
            .create(Resource::new(
                ResourceKey::mesh("a"),
                Spec::Mesh(Default::default()),
            ))
            .await
            .unwrap();
        let first = MeshCa::load_or_create(&store, "a").await.unwrap();
        let again = MeshCa::load_or_create(&store, "a").await.unwrap();
        assert_eq!(first.cert_pem, again.cert_pem);
        let tags = [
            ("service".to_string(), "web".to_string()),
            ("version".to_string(), "2".to_string()),
        ]
        .into();
        let cert = again
            .issue(&["web"], &tags, Duration::from_secs(60))
            .unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.not_after > SystemTime::now());
    }
}
