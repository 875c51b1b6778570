//! `ProxyTemplate`: which generated configuration profile a selected proxy
//! gets, plus raw Envoy resources that add to it or replace parts of it.

use super::policy::{Selector, validate_selectors};
use super::validation::Cause;
use crate::envoy_api::{self, RawResource};
use serde::{Deserialize, Serialize};

/// The profile of generated configuration every proxy gets by default.
pub const DEFAULT_PROFILE: &str = "default-proxy";

/// The types a raw resource may have: those the control plane serves.
pub const RAW_TYPES: [&str; 3] = [
    envoy_api::LISTENER,
    envoy_api::CLUSTER,
    envoy_api::CLUSTER_LOAD_ASSIGNMENT,
];

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

/// A template with its raw resources parsed once, as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedProxyTemplate {
    pub spec: ProxyTemplateSpec,
    pub resources: Vec<RawResource>,
}

impl ParsedProxyTemplate {
    /// Whether the generated configuration is kept under the raw resources.
    pub fn imports_default(&self) -> bool {
        self.spec.imports.iter().any(|i| i == DEFAULT_PROFILE)
    }
}

impl ProxyTemplateSpec {
    /// Parses the raw resources; one that does not parse (which validation
    /// keeps out of the store) is left out.
    pub fn parsed(self) -> ParsedProxyTemplate {
        let resources = self
            .resources
            .iter()
            .filter_map(|r| envoy_api::parse_resource(&r.resource, &RAW_TYPES).ok())
            .collect();
        ParsedProxyTemplate {
            spec: self,
            resources,
        }
    }

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
            if let Err(reason) = envoy_api::parse_resource(&r.resource, &RAW_TYPES) {
                causes.push(Cause::new(format!("{field}.resource"), reason));
            }
        }
        causes
    }
}
