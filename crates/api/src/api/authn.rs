//! Who a request is from, and what that user may do.
//!
//! A request proves who it is with a user token (`Authorization: Bearer`)
//! or, on the HTTPS port, a client certificate; one with credentials is
//! always their user, from loopback too. A request from loopback without
//! credentials is the admin when `apiServer.authn.localhostIsAdmin` (the
//! default), which is how `kumactl` on the control plane's host works with
//! no setup. Anything else gets 401 saying how to authenticate.

use super::ApiError;
use crate::resources::{Access, AccessRoleBindingSpec, AccessRoleSpec, ResourceType, Spec};
use crate::runtime::Peer;
use crate::security::rbac::{Forbidden, Permissions};
use crate::security::users::{self, User, UserTokenError};
use crate::store::{ListQuery, SharedStore};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Arc;

const HOW_TO_AUTHENTICATE: &str = "authenticate with a user token (`Authorization: Bearer TOKEN`; `kumactl config control-planes add --auth-type=tokens --auth-conf token=TOKEN`, the admin mints one with `kumactl generate user-token`) or a client certificate on the HTTPS port (apiServer.https)";

fn unauthenticated(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Unauthenticated",
        format!("{why}; {HOW_TO_AUTHENTICATE}"),
    )
}

impl From<Forbidden> for ApiError {
    fn from(e: Forbidden) -> Self {
        tracing::info!(user = %e.user, access = %e.access, what = %e.what, "request refused");
        ApiError::new(StatusCode::FORBIDDEN, "Access denied", e.to_string())
    }
}

/// What authenticating needs; shared by every server that takes users'
/// requests (the HTTP API, the dataplane token server).
pub struct Authenticator {
    pub store: SharedStore,
    /// `apiServer.authn.localhostIsAdmin`.
    pub localhost_is_admin: bool,
    /// A verified client certificate is the admin, whatever it names (the
    /// public token server's, as in Kuma); otherwise it is the user of its
    /// common name.
    pub certificates_are_admin: bool,
}

/// Middleware: finds the request's user and what it may do, and puts the
/// [`Caller`] in the request's extensions, or answers 401.
pub async fn authenticate(
    State(ctx): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Taken out first: the request itself is not kept across the awaits.
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_string));
    let peer = request.extensions().get::<Peer>().cloned();
    let caller = match who(&ctx, authorization, peer).await {
        Ok(user) => match permissions(&ctx.store, &user).await {
            Ok(permissions) => Caller { user, permissions },
            Err(e) => return e.into_response(),
        },
        Err(e) => return e.into_response(),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn who(
    ctx: &Authenticator,
    authorization: Option<Result<String, axum::http::header::ToStrError>>,
    peer: Option<Peer>,
) -> Result<User, ApiError> {
    if let Some(value) = authorization {
        let value = value.unwrap_or_default();
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer TOKEN`"))?;
        let claims = users::verify(ctx.store.as_ref(), token)
            .await
            .map_err(|e| match e {
                UserTokenError::Store(e) => ApiError::from(e),
                other => {
                    tracing::info!(error = %other, "user token refused");
                    unauthenticated(other)
                }
            })?;
        return Ok(User::new(claims.name, claims.groups));
    }
    if let Some(certificate) = peer.as_ref().and_then(|p| p.certificate.as_ref()) {
        if ctx.certificates_are_admin {
            return Ok(User::local_admin());
        }
        return user_of_certificate(certificate);
    }
    let from_loopback = peer.is_some_and(|p| p.address.ip().to_canonical().is_loopback());
    if ctx.localhost_is_admin && from_loopback {
        return Ok(User::local_admin());
    }
    Err(unauthenticated("the request carries no credentials"))
}

/// A verified client certificate names its user: the common name, in the
/// groups of its organizations.
fn user_of_certificate(der: &[u8]) -> Result<User, ApiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| unauthenticated(format!("the client certificate cannot be read: {e}")))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| unauthenticated("the client certificate has no common name (CN)"))?;
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string);
    Ok(User::new(name, groups))
}

/// The user of a request and what it may do: what handlers take to decide.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub permissions: Permissions,
}

impl Caller {
    /// 403 unless the user may.
    pub fn require(
        &self,
        access: Access,
        kind: ResourceType,
        mesh: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        Ok(self
            .permissions
            .require(&self.user, access, kind, mesh, name)?)
    }
}

impl Caller {
    /// 403 unless the user is an admin.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.permissions.is_admin() {
            return Ok(());
        }
        tracing::info!(user = %self.user, what, "request refused");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Access denied",
            format!(
                "{} may not {what}: only members of the group {} may",
                self.user,
                users::ADMIN_GROUP
            ),
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthenticated("the request was not authenticated"))
    }
}

/// The rules bound to `user`, read from the store at each request, so a
/// changed role applies at once.
async fn permissions(store: &SharedStore, user: &User) -> Result<Permissions, ApiError> {
    if user.is_admin() {
        return Ok(Permissions::admin());
    }
    let roles = store
        .list(&ListQuery::of(ResourceType::AccessRole, None))
        .await?;
    let roles: BTreeMap<&str, &AccessRoleSpec> = roles
        .items
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::AccessRole(s) => Some((r.key.name.as_str(), s)),
            _ => None,
        })
        .collect();
    let bindings: Vec<AccessRoleBindingSpec> = store
        .list(&ListQuery::of(ResourceType::AccessRoleBinding, None))
        .await?
        .items
        .into_iter()
        .filter_map(|r| match r.spec {
            Spec::AccessRoleBinding(s) => Some(s),
            _ => None,
        })
        .collect();
    Ok(Permissions::of(
        user,
        |name| roles.get(name).copied(),
        &bindings,
    ))
}
