//! Dataplane tokens: RS256 JWTs naming a dataplane and its mesh, signed
//! with a key of that mesh.
//!
//! Each mesh gets its own RSA key, generated on first use and kept as the
//! mesh-scoped `Secret` [`SIGNING_KEY_SECRET`]; tokens themselves are not
//! stored. A token can be revoked without a restart: its id goes into the
//! mesh's `Secret` [`REVOCATIONS_SECRET`], which every check reads.

use crate::resources::{Resource, ResourceKey, ResourceType, SecretSpec, Spec};
use crate::store::{self, ResourceStore, StoreError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest dataplane token: a hundred years, far from any clock overflow.
pub const MAX_TOKEN_VALIDITY_SECONDS: u64 = 100 * 365 * 24 * 3600;

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

/// Why a token was refused, or could not be issued; the message says
/// which check failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no dataplane token was presented (kuma-dp --dataplane-token-file)")]
    Missing,
    #[error("the dataplane token is malformed: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
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
    #[error(
        "validForSeconds {0} is out of range: expected 1 to {max}",
        max = MAX_TOKEN_VALIDITY_SECONDS
    )]
    Validity(u64),
    #[error("cannot read or keep the dataplane token keys: {0}")]
    Store(#[from] StoreError),
    #[error("mesh \"{mesh}\": the dataplane token signing key is unusable: {source}")]
    SigningKey {
        mesh: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn key_err(mesh: &str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> TokenError + '_ {
    move |source| TokenError::SigningKey {
        mesh: mesh.to_string(),
        source,
    }
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn secret_json<T: serde::de::DeserializeOwned>(
    secret: &SecretSpec,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    Ok(serde_json::from_slice(&secret.bytes()?)?)
}

pub(super) fn secret_of(resource: &Resource) -> Option<&SecretSpec> {
    match &resource.spec {
        Spec::Secret(s) => Some(s),
        _ => None,
    }
}

/// An RSA key pair as a secret keeps it.
#[derive(Serialize, Deserialize)]
pub(super) struct SigningKey {
    pub private_pem: String,
    pub public_pem: String,
}

fn generate_signing_key() -> Result<SigningKey, Box<dyn std::error::Error + Send + Sync>> {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    Ok(SigningKey {
        private_pem: private.to_pkcs8_pem(LineEnding::LF)?.to_string(),
        public_pem: private.to_public_key().to_public_key_pem(LineEnding::LF)?,
    })
}

/// Why a stored signing key could not be had.
pub(super) enum KeyError {
    Store(StoreError),
    Unusable(Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        KeyError::Store(e)
    }
}

/// The signing key kept as the secret `key`, created once (several control
/// planes may race; the first one stored wins).
pub(super) async fn stored_signing_key(
    store: &dyn ResourceStore,
    key: &ResourceKey,
) -> Result<SigningKey, KeyError> {
    let stored = match store.get(key).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => {
            let generated = tokio::task::spawn_blocking(generate_signing_key)
                .await
                .map_err(|e| KeyError::Unusable(e.into()))?
                .map_err(KeyError::Unusable)?;
            let bytes = serde_json::to_vec(&generated).map_err(|e| KeyError::Unusable(e.into()))?;
            let secret = Spec::Secret(SecretSpec::from_bytes(&bytes));
            let stored = store::modify(store, key, |existing| {
                Ok::<_, StoreError>(existing.is_none().then(|| secret.clone()))
            })
            .await
            .map_err(KeyError::Store)?;
            if stored.as_ref().and_then(secret_of) == Some(&SecretSpec::from_bytes(&bytes)) {
                tracing::info!(secret = %key, "generated a token signing key");
            }
            stored.ok_or_else(|| KeyError::Store(StoreError::NotFound(key.clone())))?
        }
        Err(e) => return Err(KeyError::Store(e)),
    };
    let secret = secret_of(&stored).ok_or_else(|| KeyError::Unusable("not a secret".into()))?;
    secret_json(secret).map_err(KeyError::Unusable)
}

/// The mesh's dataplane token signing key.
async fn signing_key(store: &dyn ResourceStore, mesh: &str) -> Result<SigningKey, TokenError> {
    let key = ResourceKey::new(ResourceType::Secret, mesh, SIGNING_KEY_SECRET);
    stored_signing_key(store, &key).await.map_err(|e| match e {
        KeyError::Store(StoreError::MeshNotFound(m)) => TokenError::UnknownMesh(m),
        KeyError::Store(e) => e.into(),
        KeyError::Unusable(e) => key_err(mesh)(e),
    })
}

/// Issues a token for dataplane `name` of `mesh`, valid for `valid_for`.
pub async fn issue(
    store: &dyn ResourceStore,
    mesh: &str,
    name: &str,
    tags: BTreeMap<String, String>,
    valid_for: Duration,
) -> Result<String, TokenError> {
    let seconds = valid_for.as_secs();
    if !(1..=MAX_TOKEN_VALIDITY_SECONDS).contains(&seconds) {
        return Err(TokenError::Validity(seconds));
    }
    crate::store::require_mesh(store, mesh)
        .await
        .map_err(|e| match e {
            StoreError::MeshNotFound(m) => TokenError::UnknownMesh(m),
            other => other.into(),
        })?;
    let key = signing_key(store, mesh).await?;
    let iat = now();
    let claims = Claims {
        name: name.to_string(),
        mesh: mesh.to_string(),
        tags,
        jti: uuid::Uuid::new_v4().to_string(),
        iat,
        exp: iat + seconds,
    };
    let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes())
        .map_err(|e| key_err(mesh)(e.into()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &encoding)
        .map_err(|e| key_err(mesh)(e.into()))
}

/// Reads a token's claims without checking them, to learn its mesh.
pub fn unverified_claims(token: &str) -> Result<Claims, TokenError> {
    let token = strip(token);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&[]), &validation)
        .map(|d| d.claims)
        .map_err(TokenError::Malformed)
}

fn strip(token: &str) -> &str {
    let token = token.trim();
    token.strip_prefix("Bearer ").unwrap_or(token)
}

/// The checks that need no key: a token is present, well formed, and
/// names this mesh and dataplane.
pub fn claimed(token: &str, mesh: &str, name: &str) -> Result<Claims, TokenError> {
    let token = strip(token);
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
    Ok(claimed)
}

/// What checking a mesh's tokens needs: its public key (none before its
/// first token was issued) and the ids of its revoked tokens.
#[derive(Debug, Default)]
pub struct MeshTokenKeys {
    public_pem: Option<String>,
    revoked: BTreeSet<String>,
}

impl MeshTokenKeys {
    /// From the mesh's two secrets, wherever they were read.
    pub fn from_secrets(
        mesh: &str,
        signing_key: Option<&SecretSpec>,
        revocations: Option<&SecretSpec>,
    ) -> Result<Self, TokenError> {
        let public_pem = signing_key
            .map(|s| secret_json::<SigningKey>(s).map(|k| k.public_pem))
            .transpose()
            .map_err(key_err(mesh))?;
        let revoked = revoked_ids(revocations).map_err(key_err(mesh))?;
        Ok(MeshTokenKeys {
            public_pem,
            revoked,
        })
    }

    /// From the store.
    pub async fn load(store: &dyn ResourceStore, mesh: &str) -> Result<Self, TokenError> {
        let mut secrets = Vec::new();
        for name in [SIGNING_KEY_SECRET, REVOCATIONS_SECRET] {
            match store
                .get(&ResourceKey::new(ResourceType::Secret, mesh, name))
                .await
            {
                Ok(r) => secrets.push(secret_of(&r).cloned()),
                Err(StoreError::NotFound(_) | StoreError::MeshNotFound(_)) => secrets.push(None),
                Err(e) => return Err(e.into()),
            }
        }
        Self::from_secrets(mesh, secrets[0].as_ref(), secrets[1].as_ref())
    }
}

/// Checks a token presented for dataplane `name` of `mesh`: its mesh and
/// name, its signature by that mesh's key, its expiry, and revocation.
pub fn verify(
    keys: &MeshTokenKeys,
    token: &str,
    mesh: &str,
    name: &str,
) -> Result<Claims, TokenError> {
    claimed(token, mesh, name)?;
    // No key yet: no token of this mesh can be valid.
    let public_pem = keys
        .public_pem
        .as_ref()
        .ok_or_else(|| TokenError::BadSignature(mesh.to_string()))?;
    let decoding =
        DecodingKey::from_rsa_pem(public_pem.as_bytes()).map_err(|e| key_err(mesh)(e.into()))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    let claims = jsonwebtoken::decode::<Claims>(strip(token), &decoding, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                TokenError::BadSignature(mesh.to_string())
            }
            _ => TokenError::Malformed(e),
        })?
        .claims;
    if keys.revoked.contains(&claims.jti) {
        return Err(TokenError::Revoked(claims.jti));
    }
    Ok(claims)
}

/// Revokes a token of this control plane: it must carry a valid signature.
/// Returns its claims.
pub async fn revoke(store: &dyn ResourceStore, token: &str) -> Result<Claims, TokenError> {
    let claimed = unverified_claims(strip(token))?;
    let keys = MeshTokenKeys::load(store, &claimed.mesh).await?;
    let claims = match verify(&keys, token, &claimed.mesh, &claimed.name) {
        Ok(c) => c,
        Err(TokenError::Revoked(_)) => return Ok(claimed),
        Err(TokenError::Expired) => claimed,
        Err(e) => return Err(e),
    };
    let key = ResourceKey::new(ResourceType::Secret, &claims.mesh, REVOCATIONS_SECRET);
    add_revocation(store, &key, &claims.jti)
        .await
        .map_err(|e| match e {
            KeyError::Store(e) => e.into(),
            KeyError::Unusable(e) => key_err(&claims.mesh)(e),
        })?;
    Ok(claims)
}

/// Adds token id `jti` to the revocations kept as the secret `key` (a JSON
/// list of ids), which every check reads.
pub(super) async fn add_revocation(
    store: &dyn ResourceStore,
    key: &ResourceKey,
    jti: &str,
) -> Result<(), KeyError> {
    store::modify(store, key, |existing| {
        let mut ids = revoked_ids(existing.and_then(secret_of)).map_err(KeyError::Unusable)?;
        ids.insert(jti.to_string());
        let bytes = serde_json::to_vec(&ids).map_err(|e| KeyError::Unusable(e.into()))?;
        Ok(Some(Spec::Secret(SecretSpec::from_bytes(&bytes))))
    })
    .await
    .map(|_| ())
}

/// The ids a revocations secret holds (none without one).
pub(super) fn revoked_ids(
    secret: Option<&SecretSpec>,
) -> Result<BTreeSet<String>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(secret.map(secret_json).transpose()?.unwrap_or_default())
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
        let keys = MeshTokenKeys::load(&s, "a").await.unwrap();
        assert_eq!(verify(&keys, &t, "a", "web").unwrap().name, "web");
        assert!(matches!(
            verify(&keys, &t, "b", "web"),
            Err(TokenError::WrongMesh { .. })
        ));
        assert!(matches!(
            verify(&keys, &t, "a", "db"),
            Err(TokenError::WrongName { .. })
        ));
        assert!(matches!(
            verify(&keys, "", "a", "web"),
            Err(TokenError::Missing)
        ));
        assert!(matches!(
            verify(&keys, "garbage", "a", "web"),
            Err(TokenError::Malformed(_))
        ));
        // Signed by mesh b's key but claiming mesh a: forged.
        let b = issue(&s, "b", "web", BTreeMap::new(), Duration::from_secs(60))
            .await
            .unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let b_sig = b.split('.').nth(2).unwrap();
        parts[2] = b_sig;
        assert!(matches!(
            verify(&keys, &parts.join("."), "a", "web"),
            Err(TokenError::BadSignature(m)) if m == "a"
        ));
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
        let keys = MeshTokenKeys::load(&s, "a").await.unwrap();
        assert!(matches!(
            verify(&keys, &t1, "a", "web"),
            Err(TokenError::Revoked(_))
        ));
        assert!(verify(&keys, &t2, "a", "web").is_ok());
    }

    #[tokio::test]
    async fn a_validity_that_would_overflow_is_refused() {
        let s = store().await;
        for seconds in [0, u64::MAX, MAX_TOKEN_VALIDITY_SECONDS + 1] {
            let err = issue(
                &s,
                "a",
                "web",
                BTreeMap::new(),
                Duration::from_secs(seconds),
            )
            .await
            .unwrap_err();
            assert!(
                matches!(err, TokenError::Validity(n) if n == seconds),
                "{err}"
            );
            assert!(err.to_string().contains("validForSeconds"), "{err}");
        }
    }
}
