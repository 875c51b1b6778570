//! `Secret`: mesh-scoped bytes the control plane keeps for itself, such as
//! a mesh's CA key. Never served by the HTTP API.

use super::validation::Cause;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The Secret holding a mesh's root certificate and key (its builtin CA).
pub const CA_SECRET: &str = "ca-builtin";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Base64-encoded content.
    pub data: String,
}

impl SecretSpec {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        SecretSpec {
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.data)
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        match self.bytes() {
            Ok(_) => Vec::new(),
            Err(e) => vec![Cause::new("data", format!("must be base64: {e}"))],
        }
    }
}
