//! Identities of the proxies of mTLS meshes: each mesh's CA (read from its
//! secret in the index; `super::ca_provisioner` creates it) and each
//! connected proxy's workload certificate, issued on first need, again when
//! its services or tags change, and again before it expires. Certificates
//! live in memory only, and only as the secrets they are sent as: a
//! proxy's certificate is held once, and its mesh's CA secret is one for
//! all of the mesh's proxies.

use super::cache::CertificateTimes;
use super::generator::XdsResource;
use super::generator::tls::{MESH_CA_SECRET, identity_secret, validation_secret};
use super::index::{MeshView, ProxyId, ResourceIndex};
use crate::resources::{DataplaneSpec, SecretSpec, tags::Tags};
use crate::security::ca::{CA_SECRET, MeshCa};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a certificate asserts; a change means a new certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subject {
    services: Vec<String>,
    tags: Tags,
}

impl Subject {
    fn of(dataplane: &DataplaneSpec) -> Subject {
        Subject {
            services: dataplane
                .services()
                .into_iter()
                .map(str::to_string)
                .collect(),
            tags: dataplane
                .networking
                .inbound
                .iter()
                .flat_map(|i| i.tags.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect(),
        }
    }
}

struct Issued {
    subject: Subject,
    /// The CA that signed it.
    ca: Arc<MeshCa>,
    /// The certificate and key, as the secret sent to the proxy.
    identity: XdsResource,
    times: CertificateTimes,
}

/// A proxy's certificate and its mesh's CA, as the secrets sent to it.
pub struct ProxyIdentity {
    pub identity: XdsResource,
    pub mesh_ca: XdsResource,
    pub certificate: CertificateTimes,
}

/// A mesh's CA, the secret it was read from, and the secret proxies
/// verify their peers with.
struct LoadedCa {
    from: Arc<SecretSpec>,
    ca: Arc<MeshCa>,
    validation: XdsResource,
}

pub struct Identities {
    validity: Duration,
    renewal_margin: Duration,
    cas: HashMap<String, LoadedCa>,
    issued: HashMap<ProxyId, Issued>,
}

impl Identities {
    pub fn new(validity: Duration, renewal_margin: Duration) -> Self {
        Identities {
            validity,
            renewal_margin,
            cas: HashMap::new(),
            issued: HashMap::new(),
        }
    }

    /// The CA certificate (PEM) of `mesh`, when it has one loaded.
    pub fn ca_pem(&self, mesh: &str) -> Option<&str> {
        self.cas.get(mesh).map(|loaded| loaded.ca.cert_pem.as_str())
    }

    /// How often to look for certificates due for renewal.
    pub fn renewal_check_interval(&self) -> Duration {
        (self.renewal_margin / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Takes the CA of every mesh of the index whose proxies use mTLS
    /// (`uses_mtls`: on, or switching on or off) from its secret (when it
    /// is new or changed) and forgets the others.
    pub fn sync_cas(
        &mut self,
        index: &ResourceIndex,
        mut uses_mtls: impl FnMut(&MeshView) -> bool,
    ) {
        let mut changed = false;
        let mut wanted = HashSet::new();
        for mesh in index.meshes().filter(|m| uses_mtls(m)) {
            let Some(secret) = mesh.secret(CA_SECRET) else {
                continue;
            };
            wanted.insert(mesh.name.clone());
            if self
                .cas
                .get(&mesh.name)
                .is_some_and(|loaded| Arc::ptr_eq(&loaded.from, secret))
            {
                continue;
            }
            match MeshCa::from_secret(&mesh.name, secret) {
                Ok(ca) => {
                    let validation = validation_secret(MESH_CA_SECRET, &ca.cert_pem);
                    let loaded = LoadedCa {
                        from: secret.clone(),
                        ca: Arc::new(ca),
                        validation,
                    };
                    self.cas.insert(mesh.name.clone(), loaded);
                    changed = true;
                }
                Err(e) => {
                    tracing::error!(mesh = %mesh.name, error = %e, "the mesh CA secret is unusable")
                }
            }
        }
        let before = self.cas.len();
        self.cas.retain(|mesh, _| wanted.contains(mesh));
        changed |= self.cas.len() != before;
        // A certificate from a CA the mesh no longer has is worthless. CAs
        // rarely change and certificates are many: look only then.
        if changed {
            self.issued.retain(|id, issued| {
                self.cas
                    .get(&id.mesh)
                    .is_some_and(|loaded| loaded.ca.cert_pem == issued.ca.cert_pem)
            });
        }
    }

    /// The identity of a proxy of an mTLS mesh, issuing a certificate when
    /// it has none, a stale one, or one close to expiry. None when its
    /// mesh's CA is not loaded.
    pub fn of(
        &mut self,
        id: &ProxyId,
        dataplane: &DataplaneSpec,
        mesh: &MeshView,
    ) -> Option<ProxyIdentity> {
        let loaded = self.cas.get(&mesh.name)?;
        let subject = Subject::of(dataplane);
        let fresh = self.issued.get(id).is_some_and(|i| {
            i.subject == subject && !due(&i.times, self.renewal_margin, SystemTime::now())
        });
        if !fresh {
            let services: Vec<&str> = subject.services.iter().map(String::as_str).collect();
            match loaded.ca.issue(&services, &subject.tags, self.validity) {
                Ok(cert) => {
                    tracing::debug!(dataplane = %id, "issued a workload certificate");
                    self.issued.insert(
                        id.clone(),
                        Issued {
                            subject,
                            ca: loaded.ca.clone(),
                            identity: identity_secret(&cert.cert_pem, &cert.key_pem),
                            times: CertificateTimes {
                                issued_at: cert.issued_at,
                                not_after: cert.not_after,
                            },
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(dataplane = %id, error = %e, "cannot issue a workload certificate");
                    return None;
                }
            }
        }
        self.issued.get(id).map(|i| ProxyIdentity {
            identity: i.identity.clone(),
            mesh_ca: loaded.validation.clone(),
            certificate: i.times,
        })
    }

    /// Proxies whose certificate is within the renewal margin of expiry.
    pub fn due_for_renewal(&self) -> Vec<ProxyId> {
        let now = SystemTime::now();
        self.issued
            .iter()
            .filter(|(_, i)| due(&i.times, self.renewal_margin, now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether no proxy holds a certificate issued here (no mesh uses mTLS).
    pub fn none_issued(&self) -> bool {
        self.issued.is_empty()
    }

    /// Drops the certificates of proxies that are gone.
    pub fn retain_connected(&mut self, connected: &HashSet<ProxyId>) {
        self.issued.retain(|id, _| connected.contains(id));
    }
}

fn due(cert: &CertificateTimes, margin: Duration, now: SystemTime) -> bool {
    cert.not_after
        .duration_since(now)
        .map(|left| left <= margin)
        .unwrap_or(true)
}
