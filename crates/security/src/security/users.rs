//! Who is asking the HTTP API: a [`User`] with a name and groups, proven by
//! a user token (an RS256 JWT signed by a key of the control plane) or a
//! client certificate, or the local admin.
//!
//! The signing key is the global secret [`SIGNING_KEY_SECRET`], generated
//! on first use; tokens are not stored. A token is revoked without a
//! restart by putting its id into the global secret [`REVOCATIONS_SECRET`],
//! which every check reads.

use super::tokens::{KeyError, add_revocation, now, revoked_ids, secret_of, stored_signing_key};
use crate::resources::{ResourceKey, ResourceType};
use crate::store::{ResourceStore, StoreError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub const SIGNING_KEY_SECRET: &str = "user-token-signing-key";
pub const REVOCATIONS_SECRET: &str = "user-token-revocations";
/// The global secret holding the bootstrap admin's token.
pub const ADMIN_TOKEN_SECRET: &str = "admin-user-token";

/// Members of this group may do anything, and only they manage access
/// roles and mint user tokens.
pub const ADMIN_GROUP: &str = "mesh-system:admin";
/// Every user who proved who they are is in this group.
pub const AUTHENTICATED_GROUP: &str = "mesh-system:authenticated";
/// The name of the local admin (a request from loopback without
/// credentials, when `apiServer.authn.localhostIsAdmin`).
pub const LOCAL_ADMIN: &str = "mesh-system:admin";

/// Longest validity of a user token: one year.
pub const MAX_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// A user with `groups`, and the group every authenticated user is in.
    pub fn new(name: impl Into<String>, groups: impl IntoIterator<Item = String>) -> Self {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        User {
            name: name.into(),
            groups,
        }
    }

    pub fn local_admin() -> Self {
        User::new(LOCAL_ADMIN, [ADMIN_GROUP.to_string()])
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user \"{}\"", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserClaims {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Token id, what revocation names.
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

/// Why a user token was refused, or could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum UserTokenError {
    #[error("the user token is malformed: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    #[error("the user token's signature is not valid (forged, or from another control plane)")]
    BadSignature,
    #[error("the user token expired")]
    Expired,
    #[error("the user token {0} was revoked")]
    Revoked(String),
    #[error("name must be set")]
    NoName,
    #[error("validFor {0:?} is out of range: expected 1s to 8760h")]
    Validity(Duration),
    #[error("cannot read or keep the user token keys: {0}")]
    Store(#[from] StoreError),
    #[error("the user token signing key is unusable: {0}")]
    SigningKey(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<KeyError> for UserTokenError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(e) => UserTokenError::Store(e),
            KeyError::Unusable(e) => UserTokenError::SigningKey(e),
        }
    }
}

fn global_secret(name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::GlobalSecret, "", name)
}

/// Issues a token for user `name` in `groups`, valid for `valid_for`.
pub async fn issue(
    store: &dyn ResourceStore,
    name: &str,
    groups: &[String],
    valid_for: Duration,
) -> Result<String, UserTokenError> {
    if name.is_empty() {
        return Err(UserTokenError::NoName);
    }
    if valid_for.is_zero() || valid_for > MAX_VALIDITY {
        return Err(UserTokenError::Validity(valid_for));
    }
    let key = stored_signing_key(store, &global_secret(SIGNING_KEY_SECRET)).await?;
    let iat = now();
    let claims = UserClaims {
        name: name.to_string(),
        groups: groups.to_vec(),
        jti: uuid::Uuid::new_v4().to_string(),
        iat,
        exp: iat + valid_for.as_secs(),
    };
    let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes())
        .map_err(|e| UserTokenError::SigningKey(e.into()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &encoding)
        .map_err(|e| UserTokenError::SigningKey(e.into()))
}

/// Checks a token: its signature by this control plane's key, its expiry
/// and revocation, read from the store at each call.
pub async fn verify(store: &dyn ResourceStore, token: &str) -> Result<UserClaims, UserTokenError> {
    let claims = verify_signature(store, token).await?;
    let revoked = match store.get(&global_secret(REVOCATIONS_SECRET)).await {
        Ok(r) => revoked_ids(secret_of(&r)).map_err(UserTokenError::SigningKey)?,
        Err(StoreError::NotFound(_)) => Default::default(),
        Err(e) => return Err(e.into()),
    };
    if revoked.contains(&claims.jti) {
        return Err(UserTokenError::Revoked(claims.jti));
    }
    Ok(claims)
}

async fn verify_signature(
    store: &dyn ResourceStore,
    token: &str,
) -> Result<UserClaims, UserTokenError> {
    let public_pem = match store.get(&global_secret(SIGNING_KEY_SECRET)).await {
        Ok(r) => {
            let secret =
                secret_of(&r).ok_or_else(|| UserTokenError::SigningKey("not a secret".into()))?;
            super::tokens::secret_json::<super::tokens::SigningKey>(secret)
                .map_err(UserTokenError::SigningKey)?
                .public_pem
        }
        // No key yet: no token can be valid.
        Err(StoreError::NotFound(_)) => return Err(UserTokenError::BadSignature),
        Err(e) => return Err(e.into()),
    };
    let decoding = DecodingKey::from_rsa_pem(public_pem.as_bytes())
        .map_err(|e| UserTokenError::SigningKey(e.into()))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<UserClaims>(token.trim(), &decoding, &validation)
        .map(|d| d.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => UserTokenError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidSignature => UserTokenError::BadSignature,
            _ => UserTokenError::Malformed(e),
        })
}

/// Revokes a token signed by this control plane (expired or not); returns
/// its claims.
pub async fn revoke(store: &dyn ResourceStore, token: &str) -> Result<UserClaims, UserTokenError> {
    let claims = match verify_signature(store, token).await {
        Ok(c) => c,
        Err(UserTokenError::Expired) => {
            // Expired tokens need no revoking, but saying so is kinder.
            return Err(UserTokenError::Expired);
        }
        Err(e) => return Err(e),
    };
    add_revocation(store, &global_secret(REVOCATIONS_SECRET), &claims.jti).await?;
    Ok(claims)
}

/// Keeps a valid admin token in [`ADMIN_TOKEN_SECRET`]: issued once, and
/// again when the stored one no longer verifies (expired, revoked, or
/// signed by a key since replaced).
pub async fn ensure_admin_token(store: &dyn ResourceStore) -> Result<(), UserTokenError> {
    let key = global_secret(ADMIN_TOKEN_SECRET);
    let stored = match store.get(&key).await {
        Ok(r) => secret_of(&r).and_then(|s| s.bytes().ok()),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(token) = stored.and_then(|b| String::from_utf8(b).ok())
        && verify(store, &token).await.is_ok()
    {
        return Ok(());
    }
    let token = issue(store, LOCAL_ADMIN, &[ADMIN_GROUP.to_string()], MAX_VALIDITY).await?;
    let spec =
        crate::resources::Spec::Secret(crate::resources::SecretSpec::from_bytes(token.as_bytes()));
    crate::store::modify(store, &key, |_| Ok::<_, StoreError>(Some(spec.clone()))).await?;
    tracing::info!(secret = ADMIN_TOKEN_SECRET, "stored an admin user token");
    Ok(())
}

/// Reads a duration as Go and Kuma write it: `24h`, `90m`, `1h30m`, `45s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let wrong = || format!("\"{text}\" is not a duration; expected e.g. 24h, 90m, 1h30m or 45s");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(wrong()),
        };
        let n: u64 = digits.parse().map_err(|_| wrong())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(wrong)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(wrong());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_token_names_its_user_until_revoked() {
        let store = MemoryStore::new();
        let token = issue(&store, "alice", &["team-a".into()], Duration::from_secs(60))
            .await
            .unwrap();
        let claims = verify(&store, &token).await.unwrap();
        assert_eq!(
            (claims.name.as_str(), claims.groups.clone()),
            ("alice", vec!["team-a".to_string()])
        );
        revoke(&store, &token).await.unwrap();
        let err = verify(&store, &token).await.unwrap_err();
        assert!(matches!(err, UserTokenError::Revoked(_)), "{err}");
    }

    #[tokio::test]
    async fn a_token_of_another_control_plane_is_refused() {
        let ours = MemoryStore::new();
        let theirs = MemoryStore::new();
        issue(&ours, "x", &[], Duration::from_secs(60))
            .await
            .unwrap();
        let token = issue(
            &theirs,
            "mallory",
            &[ADMIN_GROUP.into()],
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let err = verify(&ours, &token).await.unwrap_err();
        assert!(matches!(err, UserTokenError::BadSignature), "{err}");
        assert!(matches!(
            verify(&ours, "not.a.jwt").await.unwrap_err(),
            UserTokenError::Malformed(_)
        ));
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        for bad in ["", "24", "h", "1d", "0s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn validity_is_bounded() {
        let store = MemoryStore::new();
        for bad in [Duration::ZERO, MAX_VALIDITY + Duration::from_secs(1)] {
            assert!(matches!(
                issue(&store, "x", &[], bad).await.unwrap_err(),
                UserTokenError::Validity(_)
            ));
        }
    }
}
