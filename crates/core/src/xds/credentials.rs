//! What a proxy presents to prove it is the dataplane it names, when the
//! proof is checked outside the control plane's own state (on Kubernetes,
//! by the API server): the contract between the xDS servers, which ask,
//! and `k8s::identity`, which answers.

use super::index::ProxyId;

/// Why a dataplane was not let in.
#[derive(Debug)]
pub enum AuthError {
    /// The check could not be made now (the store or the API server did
    /// not answer); asking again may succeed.
    Unavailable(String),
    /// The token is missing, malformed, for someone else, expired or
    /// revoked: asking again with it will not succeed.
    Refused(String),
    /// Who it is is proven, but its mesh does not admit it.
    NotAdmitted(String),
}

/// A check of the credential a dataplane presents, made outside the
/// control plane's own state (the xDS servers do not know by whom).
#[async_trait::async_trait]
pub trait CredentialVerifier: Send + Sync {
    /// Whether `token` proves the stream is dataplane `id`'s.
    async fn verify(&self, token: &str, id: &ProxyId) -> Result<(), AuthError>;
}
