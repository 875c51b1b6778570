//! `TrafficTrace`: which dataplanes report spans of their HTTP traffic, and
//! to which of the mesh's tracing backends.

use super::policy::{Selector, validate_selectors};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficTraceSpec {
    #[serde(default)]
    pub selectors: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficTraceConf>,
}

/// Which of the mesh's tracing backends; the mesh default when unset.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficTraceConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl TrafficTraceSpec {
    pub fn backend(&self) -> Option<&str> {
        self.conf.as_ref().and_then(|c| c.backend.as_deref())
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = validate_selectors("selectors", &self.selectors);
        if self.backend() == Some("") {
            causes.push(Cause::new(
                "conf.backend",
                "must name a tracing backend of the mesh, or be left out",
            ));
        }
        causes
    }
}
