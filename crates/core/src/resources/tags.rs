//! Tags: the labels of dataplane inbounds that policies select on.
//!
//! Allowed characters (documented in the README): keys use letters, digits
//! and `. - _ / :`; values use letters, digits and `. - _ :`. Both are
//! non-empty and at most 253 characters. Selectors additionally accept `*`
//! as a value, meaning "any".

use super::validation::Cause;
use std::collections::BTreeMap;

/// The tag every inbound must carry: the name of the service it serves.
pub const SERVICE_TAG: &str = "service";

pub type Tags = BTreeMap<String, String>;

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':')
}

fn value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')
}

pub fn validate_tag_key(field: &str, key: &str) -> Option<Cause> {
    (key.is_empty() || key.len() > 253 || !key.chars().all(key_char)).then(|| {
        Cause::new(
            field,
            format!(
                "tag key \"{key}\" must be 1 to 253 letters, digits or '.', '-', '_', '/', ':'"
            ),
        )
    })
}

pub fn validate_tag_value(field: &str, value: &str, allow_wildcard: bool) -> Option<Cause> {
    if allow_wildcard && value == "*" {
        return None;
    }
    (value.is_empty() || value.len() > 253 || !value.chars().all(value_char)).then(|| {
        let wildcard = if allow_wildcard { ", or \"*\" for any" } else { "" };
        Cause::new(
            field,
            format!(
                "tag value \"{value}\" must be 1 to 253 letters, digits or '.', '-', '_', ':'{wildcard}"
            ),
        )
    })
}

/// Checks every key and value of a tag map found at `field`.
pub fn validate_tags(field: &str, tags: &Tags, allow_wildcard: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in tags {
        let path = format!("{field}.{k}");
        causes.extend(validate_tag_key(&path, k));
        causes.extend(validate_tag_value(&path, v, allow_wildcard));
    }
    causes
}

/// Tags from `(key, value)` pairs, for tests.
#[cfg(any(test, feature = "testing"))]
pub fn of_pairs(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
