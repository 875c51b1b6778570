//! `TrafficRoute` (Kuma's name and shape): for the connections its sources
//! and destinations select, traffic is split by weight between subsets of
//! the destination service's dataplanes, each subset named by tags.

use super::policy::{Selector, validate_selectors};
use super::tags::{SERVICE_TAG, Tags, validate_tags};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficRouteSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    /// The split: each entry a weight and the tags of a subset.
    #[serde(default)]
    pub conf: Vec<WeightedDestination>,
}

/// One part of the split. Weights are relative (Kuma does not require
/// them to add up to 100); a weight of 0 sends nothing there.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedDestination {
    #[serde(default)]
    pub weight: u32,
    /// The subset's tags; `service` names the service.
    pub destination: Tags,
}

impl WeightedDestination {
    pub fn service(&self) -> &str {
        self.destination
            .get(SERVICE_TAG)
            .map(String::as_str)
            .unwrap_or("")
    }
}

impl TrafficRouteSpec {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = validate_selectors("sources", &self.sources);
        causes.extend(validate_selectors("destinations", &self.destinations));
        if self.conf.is_empty() {
            causes.push(Cause::new(
                "conf",
                "must have at least one {weight, destination} entry",
            ));
        }
        for (i, part) in self.conf.iter().enumerate() {
            let field = format!("conf[{i}].destination");
            causes.extend(validate_tags(&field, &part.destination, false));
            if !part.destination.contains_key(SERVICE_TAG) {
                causes.push(Cause::new(
                    &field,
                    "must have a \"service\" tag naming the service traffic goes to",
                ));
            }
        }
        if !self.conf.is_empty() && self.conf.iter().all(|p| p.weight == 0) {
            causes.push(Cause::new(
                "conf",
                "at least one weight must be above 0, or no traffic could go anywhere",
            ));
        }
        causes
    }
}
