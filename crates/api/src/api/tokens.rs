//! Tokens minted through the HTTP API: user tokens (`POST /tokens/user`,
//! the admin only) and dataplane tokens (`POST /tokens/dataplane`, for the
//! meshes where the caller has `GENERATE_DATAPLANE_TOKEN`), as Kuma 2.x
//! serves them.

use super::authn::Caller;
use super::token_server::{self, TokenContext};
use super::{ApiError, SharedContext};
use crate::resources::Cause;
use crate::security::users::{self, UserTokenError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UserTokenRequest {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    /// `24h`, `30m`…
    valid_for: String,
}

fn user_token_error(e: UserTokenError) -> ApiError {
    match e {
        UserTokenError::Store(e) => e.into(),
        UserTokenError::SigningKey(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            e.to_string(),
        ),
        UserTokenError::NoName => ApiError::bad_request(
            "Invalid token request",
            vec![Cause::new("name", e.to_string())],
        ),
        UserTokenError::Validity(_) => ApiError::bad_request(
            "Invalid token request",
            vec![Cause::new("validFor", e.to_string())],
        ),
        other => ApiError::bad_request(other.to_string(), Vec::new()),
    }
}

/// `POST /tokens/user {"name", "groups", "validFor"}`: a user token.
pub(super) async fn user_token(
    State(ctx): State<SharedContext>,
    caller: Caller,
    body: Bytes,
) -> Result<String, ApiError> {
    caller.require_admin("mint user tokens")?;
    let req: UserTokenRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!(
                "expected {{\"name\": \"...\", \"groups\": [...], \"validFor\": \"24h\"}}: {e}"
            ),
            Vec::new(),
        )
    })?;
    let valid_for = users::parse_duration(&req.valid_for).map_err(|e| {
        ApiError::bad_request("Invalid token request", vec![Cause::new("validFor", e)])
    })?;
    let token = users::issue(ctx.store.as_ref(), &req.name, &req.groups, valid_for)
        .await
        .map_err(user_token_error)?;
    tracing::info!(user = req.name, groups = ?req.groups, by = %caller.user, "issued a user token");
    Ok(token)
}

/// `POST /tokens/user/revocations {"token"}`: the token no longer works,
/// from the next request on.
pub(super) async fn revoke_user_token(
    State(ctx): State<SharedContext>,
    caller: Caller,
    body: Bytes,
) -> Result<String, ApiError> {
    caller.require_admin("revoke user tokens")?;
    let token = token_server::revoked_token(&body)?;
    let claims = users::revoke(ctx.store.as_ref(), &token)
        .await
        .map_err(user_token_error)?;
    tracing::info!(user = claims.name, id = claims.jti, "revoked a user token");
    Ok(format!(
        "revoked token {} of user \"{}\"\n",
        claims.jti, claims.name
    ))
}

/// `POST /tokens/dataplane {"name", "mesh", "tags", "validFor"}`.
pub(super) async fn dataplane_token(
    State(ctx): State<SharedContext>,
    caller: Caller,
    body: Bytes,
) -> Result<String, ApiError> {
    let tokens = TokenContext {
        store: ctx.store.clone(),
        default_validity: ctx.dataplane_token_validity,
    };
    token_server::issue_for(&tokens, &caller, &body).await
}
