//! Dataplane tokens: RS256 JWTs naming a dataplane and its mesh, signed
//! with a key of that mesh.
//!
//! Each mesh gets its own RSA key, generated on first use and kept as the
//! mesh-scoped `Secret` [`SIGNING_KEY_SECRET`]; tokens themselves are not
//! stored. A token can be revoked without a restart: its id goes into the
//! mesh's `Secret` [`REVOCATIONS_SECRET`], which every check reads.

use crate::resources::{Resource, ResourceKey, ResourceType, SecretSpec, Spec};
use crate::store::{ResourceStore, StoreError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SIGNING_KEY_SECRET: &str = "dataplane-token-signing-key";
pub const REVOCATIONS_SECRET: &str = "dataplane-token-revocations";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub name: String,
    pub mesh: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Token id, what revocation names.
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

/// Why a token was refused; the message says which check failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("no dataplane token was presented (kuma-dp --dataplane-token-file)")]
    Missing,
    #[error("the dataplane token is malformed: {0}")]
    Malformed(String),
    #[error("the dataplane token is for mesh \"{token}\", the dataplane is in mesh \"{node}\"")]
    WrongMesh { token: String, node: String },
    #[error("the dataplane token is for dataplane \"{token}\", the stream is for \"{node}\"")]
    WrongName { token: String, node: String },
    #[error(
        "the dataplane token's signature is not valid for mesh \"{0}\" (forged, or from another control plane)"
    )]
    BadSignature(String),
    #[error("the dataplane token expired")]
    Expired,
    #[error("the dataplane token {0} was revoked")]
    Revoked(String),
    #[error("mesh \"{0}\" does not exist")]
    UnknownMesh(String),
    #[error("cannot check the dataplane token: {0}")]
    Store(String),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn secret_json<T: serde::de::DeserializeOwned>(resource: Resource) -> Option<T> {
    match resource.spec {
        Spec::Secret(s) => serde_json::from_slice(&s.bytes().ok()?).ok(),
        _ => None,
    }
}

#[derive(Serialize, Deserialize)]
struct SigningKey {
    private_pem: String,
    public_pem: String,
}

/// The mesh's signing key, created once (several control planes may race;
/// the first one stored wins).
async fn signing_key(
    store: &dyn ResourceStore,
    mesh: &str,
    create: bool,
) -> Result<SigningKey, TokenError> {
    let key = ResourceKey::new(ResourceType::Secret, mesh, SIGNING_KEY_SECRET);
    loop {
        match store.get(&key).await {
            Ok(r) => {
                return secret_json(r).ok_or_else(|| {
                    TokenError::Store("the signing key secret is unreadable".into())
                });
            }
            Err(StoreError::NotFound(_)) if create => {}
            // No key yet: no token of this mesh can be valid.
            Err(StoreError::NotFound(_)) => return Err(TokenError::BadSignature(mesh.to_string())),
            Err(e) => return Err(TokenError::Store(e.to_string())),
        }
        let generated = tokio::task::spawn_blocking(|| -> Result<SigningKey, String> {
            let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                .map_err(|e| e.to_string())?;
            Ok(SigningKey {
                private_pem: private
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| e.to_string())?
                    .to_string(),
                public_pem: private
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| e.to_string())?,
            })
        })
        .await
        .map_err(|e| TokenError::Store(e.to_string()))?
        .map_err(TokenError::Store)?;
        let bytes = serde_json::to_vec(&generated).map_err(|e| TokenError::Store(e.to_string()))?;
        let secret = Resource::new(key.clone(), Spec::Secret(SecretSpec::from_bytes(&bytes)));
        match store.create(secret).await {
            Ok(_) => {
                tracing::info!(mesh, "generated the mesh's dataplane token signing key");
                return Ok(generated);
            }
            Err(StoreError::AlreadyExists(_)) => continue,
            Err(StoreError::MeshNotFound(m)) => return Err(TokenError::UnknownMesh(m)),
            Err(e) => return Err(TokenError::Store(e.to_string())),
        }
    }
}

/// Issues a token for dataplane `name` of `mesh`, valid for `valid_for`.
pub async fn issue(
    store: &dyn ResourceStore,
    mesh: &str,
    name: &str,
    tags: BTreeMap<String, String>,
    valid_for: Duration,
) -> Result<String, TokenError> {
    crate::store::require_mesh(store, mesh)
        .await
        .map_err(|e| match e {
            StoreError::MeshNotFound(m) => TokenError::UnknownMesh(m),
            other => TokenError::Store(other.to_string()),
        })?;
    let key = signing_key(store, mesh, true).await?;
    let iat = now();
    let claims = Claims {
        name: name.to_string(),
        mesh: mesh.to_string(),
        tags,
        jti: uuid::Uuid::new_v4().to_string(),
        iat,
        exp: iat + valid_for.as_secs().max(1),
    };
    let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes())
        .map_err(|e| TokenError::Store(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &encoding)
        .map_err(|e| TokenError::Store(e.to_string()))
}

/// Reads a token's claims without checking them, to learn its mesh.
fn unverified_claims(token: &str) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&[]), &validation)
        .map(|d| d.claims)
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// Checks a token presented for dataplane `name` of `mesh`: its mesh and
/// name, its signature by that mesh's key, its expiry, and revocation.
pub async fn verify(
    store: &dyn ResourceStore,
    token: &str,
    mesh: &str,
    name: &str,
) -> Result<Claims, TokenError> {
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let claimed = unverified_claims(token)?;
    if claimed.mesh != mesh {
        return Err(TokenError::WrongMesh {
            token: claimed.mesh,
            node: mesh.to_string(),
        });
    }
    if claimed.name != name {
        return Err(TokenError::WrongName {
            token: claimed.name,
            node: name.to_string(),
        });
    }
    let key = signing_key(store, mesh, false).await?;
    let decoding = DecodingKey::from_rsa_pem(key.public_pem.as_bytes())
        .map_err(|e| TokenError::Store(e.to_string()))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                TokenError::BadSignature(mesh.to_string())
            }
            _ => TokenError::Malformed(e.to_string()),
        })?
        .claims;
    if revoked(store, mesh).await?.contains(&claims.jti) {
        return Err(TokenError::Revoked(claims.jti));
    }
    Ok(claims)
}

async fn revoked(store: &dyn ResourceStore, mesh: &str) -> Result<BTreeSet<String>, TokenError> {
    match store
        .get(&ResourceKey::new(
            ResourceType::Secret,
            mesh,
            REVOCATIONS_SECRET,
        ))
        .await
    {
        Ok(r) => Ok(secret_json(r).unwrap_or_default()),
        Err(StoreError::NotFound(_)) => Ok(BTreeSet::new()),
        Err(e) => Err(TokenError::Store(e.to_string())),
    }
}

/// Revokes a token of this control plane: it must carry a valid signature.
/// Returns its claims.
pub async fn revoke(store: &dyn ResourceStore, token: &str) -> Result<Claims, TokenError> {
    let claimed = unverified_claims(token)?;
    let claims = match verify(store, token, &claimed.mesh, &claimed.name).await {
        Ok(c) => c,
        Err(TokenError::Revoked(_)) => return Ok(claimed),
        Err(TokenError::Expired) => claimed,
        Err(e) => return Err(e),
    };
    let key = ResourceKey::new(ResourceType::Secret, &claims.mesh, REVOCATIONS_SECRET);
    for _ in 0..5 {
        let (mut ids, existing) = match store.get(&key).await {
            Ok(r) => (
                secret_json::<BTreeSet<String>>(r.clone()).unwrap_or_default(),
                Some(r),
            ),
            Err(StoreError::NotFound(_)) => (BTreeSet::new(), None),
            Err(e) => return Err(TokenError::Store(e.to_string())),
        };
        ids.insert(claims.jti.clone());
        let bytes = serde_json::to_vec(&ids).map_err(|e| TokenError::Store(e.to_string()))?;
        let spec = Spec::Secret(SecretSpec::from_bytes(&bytes));
        let result = match existing {
            Some(mut r) => {
                r.spec = spec;
                store.update(r).await.map(|_| ())
            }
            None => store
                .create(Resource::new(key.clone(), spec))
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(claims),
            Err(StoreError::Conflict { .. }) | Err(StoreError::AlreadyExists(_)) => continue,
            Err(e) => return Err(TokenError::Store(e.to_string())),
        }
    }
    Err(TokenError::Store(
        "the revocation list keeps changing; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    async fn store() -> MemoryStore {
        let store = MemoryStore::new();
        for m in ["a", "b"] {
            store
                .create(Resource::new(
                    ResourceKey::mesh(m),
                    Spec::Mesh(Default::default()),
                ))
                .await
                .unwrap();
        }
        store
    }

    #[tokio::test]
    async fn tokens_are_bound_to_mesh_and_name() {
        let s = store().await;
        let t = issue(&s, "a", "web", BTreeMap::new(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(verify(&s, &t, "a", "web").await.unwrap().name, "web");
        assert!(matches!(
            verify(&s, &t, "b", "web").await,
            Err(TokenError::WrongMesh { .. })
        ));
        assert!(matches!(
            verify(&s, &t, "a", "db").await,
            Err(TokenError::WrongName { .. })
        ));
        assert_eq!(verify(&s, "", "a", "web").await, Err(TokenError::Missing));
        assert!(matches!(
            verify(&s, "garbage", "a", "web").await,
            Err(TokenError::Malformed(_))
        ));
        // Signed by mesh b's key but claiming mesh a: forged.
        let b = issue(&s, "b", "web", BTreeMap::new(), Duration::from_secs(60))
            .await
            .unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let b_sig = b.split('.').nth(2).unwrap();
        parts[2] = b_sig;
        assert_eq!(
            verify(&s, &parts.join("."), "a", "web").await,
            Err(TokenError::BadSignature("a".into()))
        );
    }

    #[tokio::test]
    async fn revoked_tokens_are_refused_others_still_work() {
        let s = store().await;
        let t1 = issue(&s, "a", "web", BTreeMap::new(), Duration::from_secs(60))
            .await
            .unwrap();
        let t2 = issue(&s, "a", "web", BTreeMap::new(), Duration::from_secs(60))
            .await
            .unwrap();
        revoke(&s, &t1).await.unwrap();
        assert!(matches!(
            verify(&s, &t1, "a", "web").await,
            Err(TokenError::Revoked(_))
        ));
        assert!(verify(&s, &t2, "a", "web").await.is_ok());
    }
}
