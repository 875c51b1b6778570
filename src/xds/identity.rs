//! Identities of the proxies of mTLS meshes: each mesh's CA (read from its
//! secret in the index; `super::ca_provisioner` creates it) and each
//! connected proxy's workload certificate, issued on first need, again when
//! its services or tags change, and again before it expires. Certificates
//! live in memory only.

use super::index::{MeshView, ProxyId, ResourceIndex};
use crate::resources::{DataplaneSpec, SecretSpec, tags::Tags};
use crate::security::ca::{CA_SECRET, MeshCa, WorkloadCert};
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
    ca_pem: String,
    cert: WorkloadCert,
}

/// The CA certificate and a proxy's own certificate, PEM.
pub struct ProxyIdentity {
    pub ca_pem: String,
    pub cert: WorkloadCert,
}

pub struct Identities {
    validity: Duration,
    renewal_margin: Duration,
    /// Each mesh's CA and the secret it was read from.
    cas: HashMap<String, (Arc<SecretSpec>, Arc<MeshCa>)>,
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
        self.cas.get(mesh).map(|(_, ca)| ca.cert_pem.as_str())
    }

    /// How often to look for certificates due for renewal.
    pub fn renewal_check_interval(&self) -> Duration {
        (self.renewal_margin / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Takes the CA of every mTLS mesh of the index from its secret (when
    /// it is new or changed) and forgets the others.
    pub fn sync_cas(&mut self, index: &ResourceIndex) {
        let mut changed = false;
        let mut wanted = HashSet::new();
        for mesh in index.meshes().filter(|m| m.spec.mtls_enabled()) {
            let Some(secret) = mesh.secret(CA_SECRET) else {
                continue;
            };
            wanted.insert(mesh.name.clone());
            if self
                .cas
                .get(&mesh.name)
                .is_some_and(|(from, _)| Arc::ptr_eq(from, secret))
            {
                continue;
            }
            match MeshCa::from_secret(&mesh.name, secret) {
                Ok(ca) => {
                    self.cas
                        .insert(mesh.name.clone(), (secret.clone(), Arc::new(ca)));
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
                    .is_some_and(|(_, ca)| ca.cert_pem == issued.ca_pem)
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
        let (_, ca) = self.cas.get(&mesh.name)?;
        let subject = Subject::of(dataplane);
        let fresh = self.issued.get(id).is_some_and(|i| {
            i.subject == subject && !due(&i.cert, self.renewal_margin, SystemTime::now())
        });
        if !fresh {
            let services: Vec<&str> = subject.services.iter().map(String::as_str).collect();
            match ca.issue(&services, &subject.tags, self.validity) {
                Ok(cert) => {
                    tracing::debug!(dataplane = %id, "issued a workload certificate");
                    self.issued.insert(
                        id.clone(),
                        Issued {
                            subject,
                            ca_pem: ca.cert_pem.clone(),
                            cert,
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
            ca_pem: i.ca_pem.clone(),
            cert: i.cert.clone(),
        })
    }

    /// Proxies whose certificate is within the renewal margin of expiry.
    pub fn due_for_renewal(&self) -> Vec<ProxyId> {
        let now = SystemTime::now();
        self.issued
            .iter()
            .filter(|(_, i)| due(&i.cert, self.renewal_margin, now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Drops the certificates of proxies that are gone.
    pub fn retain_connected(&mut self, connected: &HashSet<ProxyId>) {
        self.issued.retain(|id, _| connected.contains(id));
    }
}

fn due(cert: &WorkloadCert, margin: Duration, now: SystemTime) -> bool {
    cert.not_after
        .duration_since(now)
        .map(|left| left <= margin)
        .unwrap_or(true)
}
