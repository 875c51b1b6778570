//! `ProxyTemplate`: which generated configuration profile a selected proxy
//! gets, plus raw Envoy resources to add.

use super::policy::{Selector, validate_selectors};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

/// The profile of generated configuration every proxy gets by default.
pub const DEFAULT_PROFILE: &str = "default-proxy";

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyTemplateSpec {
    #[serde(default)]
    pub selectors: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ProxyTemplateRawResource>,
}

/// A raw Envoy resource in YAML (or JSON), with its `@type`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyTemplateRawResource {
    pub name: String,
    #[serde(default)]
    pub version: String,
    pub resource: String,
}

impl ProxyTemplateSpec {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = validate_selectors("selectors", &self.selectors);
        for (i, import) in self.imports.iter().enumerate() {
            if import != DEFAULT_PROFILE {
                causes.push(Cause::new(
                    format!("imports[{i}]"),
                    format!("unknown profile \"{import}\"; available: {DEFAULT_PROFILE}"),
                ));
            }
        }
        for (i, r) in self.resources.iter().enumerate() {
            let field = format!("resources[{i}]");
            if r.name.is_empty() {
                causes.push(Cause::new(format!("{field}.name"), "must be set"));
            }
            match serde_yaml_ng::from_str::<serde_json::Value>(&r.resource) {
                Ok(serde_json::Value::Object(o)) if o.contains_key("@type") => {}
                Ok(_) => causes.push(Cause::new(
                    format!("{field}.resource"),
                    "must be an Envoy resource object with an '@type' field",
                )),
                Err(e) => causes.push(Cause::new(
                    format!("{field}.resource"),
                    format!("is not valid YAML: {e}"),
                )),
            }
        }
        causes
    }
}
