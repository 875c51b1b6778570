//! Errors of the HTTP API, as JSON `{"title", "details", "causes"}`.

use crate::resources::{Cause, ValidationError};
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every 4xx and 5xx answer of the API (its OpenAPI `Error`).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(rename = "Error")]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// What went wrong, in a few words.
    pub title: String,
    /// What went wrong and what to do about it.
    pub details: String,
    /// One per field at fault, `field` a path such as `networking.inbound[0].port`.
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &str, details: impl Into<String>) -> Self {
        ApiError {
            status,
            title: title.to_string(),
            details: details.into(),
            causes: Vec::new(),
        }
    }

    pub fn bad_request(details: impl Into<String>, causes: Vec<Cause>) -> Self {
        ApiError {
            causes,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "Could not process the request",
                details,
            )
        }
    }

    pub fn invalid(err: ValidationError) -> Self {
        Self::bad_request("Resource is not valid", err.causes)
    }

    pub fn not_found(details: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", details)
    }

    pub fn read_only() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "On Kubernetes the HTTP API is read-only: change resources with `kubectl apply` of Kuma's CRDs",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let details = e.to_string();
        match e {
            StoreError::NotFound(_) => Self::not_found(details),
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "Conflict", details)
            }
            StoreError::MeshNotFound(mesh) => Self::bad_request(
                details,
                vec![Cause::new(
                    "mesh",
                    format!("mesh \"{mesh}\" does not exist; create the Mesh first"),
                )],
            ),
            StoreError::Unavailable(_) | StoreError::NotLeader(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Store unavailable",
                details,
            ),
            StoreError::Corrupt(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", details)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, details = %self.details, "API request failed");
        }
        (self.status, axum::Json(&self)).into_response()
    }
}

/// A missing mesh in a path is a 404, not a 400: the URL names nothing.
pub fn mesh_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::MeshNotFound(mesh) => {
            ApiError::not_found(format!("mesh \"{mesh}\" does not exist"))
        }
        other => other.into(),
    }
}
