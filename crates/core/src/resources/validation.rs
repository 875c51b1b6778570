//! Validation results: every problem of a resource at once, each with the
//! path of the field and what was expected.

use serde::{Deserialize, Serialize};

/// One problem with one field. `field` is a path such as
/// `networking.inbound[0].interface`; empty when the whole document is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// All problems found in one resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub causes: Vec<Cause>,
}

impl ValidationError {
    pub fn new(causes: Vec<Cause>) -> Self {
        ValidationError { causes }
    }

    pub fn single(field: &str, message: &str) -> Self {
        ValidationError {
            causes: vec![Cause::new(field, message)],
        }
    }
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Prefixes the field path of nested causes: `rules[0]` + `sources` gives
/// `rules[0].sources`.
pub(crate) fn nested(prefix: &str, causes: Vec<Cause>) -> impl Iterator<Item = Cause> + '_ {
    causes.into_iter().map(move |c| Cause {
        field: if c.field.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", c.field)
        },
        message: c.message,
    })
}

/// The other side of the HTTP API's error answer (`{"title", "details",
/// "causes"}`, its `ApiError`): one line from such an answer (`details`, then every cause as `field: message`), for clients such
/// as `kumactl` and `kuma-dp`. A body that is not such an answer is shown
/// as it is.
pub fn describe_error_body<S>(status: S, body: &str) -> String
where
    S: std::fmt::Display + Copy + Into<u16>,
{
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let details = parsed
        .get("details")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = body.trim();
            if text.is_empty() {
                status.to_string()
            } else {
                text.to_string()
            }
        });
    let causes: Vec<String> = parsed
        .get("causes")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let field = c
                .get("field")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            let message = c
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            if field.is_empty() {
                message.to_string()
            } else {
                format!("{field}: {message}")
            }
        })
        .collect();
    let code: u16 = status.into();
    if causes.is_empty() {
        format!("{details} ({code})")
    } else {
        format!("{details} ({code}): {}", causes.join("; "))
    }
}
