//! How a dataplane proves it is the one it names, checked the same way by
//! the bootstrap server (so that `kuma-dp` hears a refusal before it starts
//! Envoy) and by every ADS and SDS stream.

pub use super::credentials::{AuthError, CredentialVerifier};
use super::index::REGISTRATION_GRACE;
use super::index::{IndexHandle, ProxyId};
use crate::security::tokens::{
    self, MeshTokenKeys, REVOCATIONS_SECRET, SIGNING_KEY_SECRET, TokenError,
};

/// What a dataplane must present.
pub enum StreamAuth {
    /// Nothing: any dataplane that is registered is served.
    None,
    /// A dataplane token signed with its mesh's key (Universal).
    DataplaneToken,
    /// A credential someone else vouches for: on Kubernetes, its pod's
    /// service-account token, which the API server reviews
    /// (`k8s::identity`).
    Verified(Box<dyn CredentialVerifier>),
}

pub struct DataplaneAuth {
    pub kind: StreamAuth,
    /// The meshes' token keys.
    pub index: IndexHandle,
}

impl DataplaneAuth {
    pub async fn check(&self, id: &ProxyId, token: &str) -> Result<(), AuthError> {
        match &self.kind {
            StreamAuth::None => Ok(()),
            StreamAuth::DataplaneToken => self.check_dataplane_token(id, token).await,
            StreamAuth::Verified(verifier) => verifier.verify(token, id).await,
        }
    }

    /// Whether the registered dataplane `id` may be in its mesh
    /// (`Mesh.constraints`): asked once its identity is proven.
    pub fn admitted(&self, id: &ProxyId) -> Result<(), AuthError> {
        self.index.read().admits(id).map_err(|why| {
            tracing::warn!(mesh = %id.mesh, dataplane = %id.name, "dataplane refused: {why}");
            AuthError::NotAdmitted(format!("dataplane {id}: {why}"))
        })
    }

    /// A dataplane token: for this mesh and name, signed with the mesh's
    /// key (read from the index), not expired, not revoked.
    async fn check_dataplane_token(&self, id: &ProxyId, token: &str) -> Result<(), AuthError> {
        let refused = |e: TokenError| match e {
            TokenError::Store(_) => AuthError::Unavailable(e.to_string()),
            other => AuthError::Refused(format!("dataplane {id}: {other}")),
        };
        tokens::claimed(token, &id.mesh, &id.name).map_err(refused)?;
        // A token is issued only once its mesh has a key: wait for the key
        // to arrive rather than call a fresh token forged.
        self.index
            .wait_for(REGISTRATION_GRACE, |i| {
                i.mesh(&id.mesh)?.secret(SIGNING_KEY_SECRET).map(|_| ())
            })
            .await;
        let keys = {
            let index = self.index.read();
            let mesh = index.mesh(&id.mesh);
            let secret = |name| mesh.and_then(|m| m.secret(name)).map(|s| s.as_ref());
            MeshTokenKeys::from_secrets(
                &id.mesh,
                secret(SIGNING_KEY_SECRET),
                secret(REVOCATIONS_SECRET),
            )
        };
        keys.and_then(|keys| tokens::verify(&keys, token, &id.mesh, &id.name))
            .map(|_| ())
            .map_err(refused)
    }
}
