//! The builtin CA of a mesh and the workload certificates it signs.
//!
//! Each mesh with `mtls.ca.builtin` gets its own self-signed root, generated
//! once and kept as the mesh-scoped `Secret` named [`CA_SECRET`]; no mesh
//! reads another's. Workload certificates are X.509 SVIDs with the URI SAN
//! `spiffe://<mesh>/<service>` for each service a dataplane serves, plus
//! `kuma://<tag>/<value>` for its other tags so permissions can select on
//! them; they live in memory only.

use crate::resources::{ResourceKey, ResourceType, SecretSpec, Spec};
use crate::store::{ResourceStore, StoreError};
use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

pub use crate::resources::CA_SECRET;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("mesh \"{mesh}\": {message}")]
    Certificate { mesh: String, message: String },
    /// The store could not keep the CA's secret; the error names it.
    #[error("cannot keep the mesh CA: {0}")]
    Store(#[source] Box<StoreError>),
}

impl From<StoreError> for CaError {
    fn from(source: StoreError) -> Self {
        CaError::Store(Box::new(source))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert: String,
    key: String,
}

impl StoredCa {
    /// The root and key a CA secret holds.
    fn of_secret(mesh: &str, secret: &SecretSpec) -> Result<StoredCa, CaError> {
        let bytes = secret.bytes().map_err(|e| cert_err(mesh, e))?;
        serde_json::from_slice(&bytes).map_err(|e| cert_err(mesh, e))
    }
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
    /// When it was issued.
    pub issued_at: SystemTime,
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

    /// A CA kept in a secret (see [`MeshCa::ensure`]).
    pub fn from_secret(mesh: &str, secret: &SecretSpec) -> Result<MeshCa, CaError> {
        let stored = StoredCa::of_secret(mesh, secret)?;
        Self::from_pem(mesh, &stored.cert, &stored.key)
    }

    /// When the root kept in a CA secret was issued and when it expires.
    pub fn validity_of_secret(
        mesh: &str,
        secret: &SecretSpec,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), CaError> {
        let stored = StoredCa::of_secret(mesh, secret)?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(stored.cert.as_bytes())
            .map_err(|e| cert_err(mesh, e))?;
        let cert = pem.parse_x509().map_err(|e| cert_err(mesh, e))?;
        let time = |t: x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0)
                .ok_or_else(|| cert_err(mesh, "the root's validity is out of range"))
        };
        let validity = cert.validity();
        Ok((time(validity.not_before)?, time(validity.not_after)?))
    }

    /// Makes sure the mesh has its CA secret, generating it when it has
    /// none (once, even with several control planes racing: the first one
    /// stored wins). Answers whether this call created it.
    pub async fn ensure(store: &dyn ResourceStore, mesh: &str) -> Result<bool, CaError> {
        let key = ResourceKey::new(ResourceType::Secret, mesh, CA_SECRET);
        let mut created = false;
        crate::store::modify(store, &key, |existing| {
            if existing.is_some() {
                return Ok::<_, CaError>(None);
            }
            let (ca, key_pem) = Self::generate(mesh)?;
            let stored = serde_json::to_vec(&StoredCa {
                cert: ca.cert_pem,
                key: key_pem,
            })
            .map_err(|e| cert_err(mesh, e))?;
            created = true;
            Ok(Some(Spec::Secret(SecretSpec::from_bytes(&stored))))
        })
        .await?;
        if created {
            tracing::info!(mesh, "generated the mesh's builtin CA");
        }
        Ok(created)
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
        let too_long = || {
            cert_err(
                mesh,
                format!(
                    "a certificate valid for {}s ends past any date a certificate can hold",
                    validity.as_secs()
                ),
            )
        };
        let lifetime = time::Duration::try_from(validity).map_err(|_| too_long())?;
        let not_after = now.checked_add(lifetime).ok_or_else(too_long)?;
        let expires = SystemTime::now()
            .checked_add(validity)
            .ok_or_else(too_long)?;
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| cert_err(mesh, e))?;
        Ok(WorkloadCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: expires,
            issued_at: SystemTime::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resource;
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
        assert!(MeshCa::ensure(&store, "a").await.unwrap());
        assert!(!MeshCa::ensure(&store, "a").await.unwrap());
        let key = ResourceKey::new(ResourceType::Secret, "a", CA_SECRET);
        let Spec::Secret(secret) = store.get(&key).await.unwrap().spec else {
            panic!("the CA is kept as a secret");
        };
        let again = MeshCa::from_secret("a", &secret).unwrap();
        let (issued, expires) = MeshCa::validity_of_secret("a", &secret).unwrap();
        assert!(issued <= Utc::now() && (expires - issued).num_days() >= 3649);
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

    #[test]
    fn a_validity_past_any_date_is_an_error_not_an_overflow() {
        let (ca, _) = MeshCa::generate("a").unwrap();
        let err = ca
            .issue(&["web"], &Default::default(), Duration::from_secs(u64::MAX))
            .unwrap_err();
        assert!(err.to_string().contains("ends past any date"), "{err}");
    }
}
