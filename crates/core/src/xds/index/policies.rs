//! The policies of one kind in a mesh, with which of them can apply to a
//! service, so that choosing a policy for a proxy looks at a handful of
//! candidates rather than at every policy of the mesh (a mesh with a
//! policy per service has thousands).
//!
//! Each kind names the selectors that tie a policy to a service: the
//! destinations of a permission, log or route, the selectors of a template
//! or trace. When every one of them matches an exact `service`, the policy
//! is filed under those services; otherwise (a `*`, or no `service` tag)
//! it may apply anywhere and is a candidate for every service.

use crate::resources::tags::SERVICE_TAG;
use crate::resources::{
    MeshGatewayRouteSpec, MeshGatewaySpec, ParsedProxyTemplate, Selector, TrafficLogSpec,
    TrafficPermissionSpec, TrafficRouteSpec, TrafficTraceSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A kind of policy, by the two sets of selectors the index needs: those
/// that tie it to services (it is filed under them) and those that pick
/// the proxies whose configuration it shapes (they are rebuilt when it
/// changes).
pub trait Policy {
    fn service_selectors(&self) -> Vec<&Selector>;
    fn proxy_selectors(&self) -> Vec<&Selector>;
}

/// A permission shapes the RBAC of the inbounds its destinations select.
impl Policy for TrafficPermissionSpec {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.rules.iter().flat_map(|r| &r.destinations).collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.service_selectors()
    }
}

/// A log shapes the outbounds of the proxies its sources select.
impl Policy for TrafficLogSpec {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.rules.iter().flat_map(|r| &r.destinations).collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.rules.iter().flat_map(|r| &r.sources).collect()
    }
}

/// A route shapes the outbounds of the proxies its sources select.
impl Policy for TrafficRouteSpec {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.destinations.iter().collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.sources.iter().collect()
    }
}

/// A trace shapes the HTTP listeners of the proxies it selects.
impl Policy for TrafficTraceSpec {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.selectors.iter().collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.service_selectors()
    }
}

/// A template shapes the whole configuration of the proxies it selects.
impl Policy for ParsedProxyTemplate {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.spec.selectors.iter().collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.service_selectors()
    }
}

/// A MeshGateway configures the gateways it selects.
impl Policy for MeshGatewaySpec {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.selectors.iter().collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.service_selectors()
    }
}

/// A MeshGatewayRoute sends the traffic of the gateways it selects.
impl Policy for MeshGatewayRouteSpec {
    fn service_selectors(&self) -> Vec<&Selector> {
        self.selectors.iter().collect()
    }
    fn proxy_selectors(&self) -> Vec<&Selector> {
        self.service_selectors()
    }
}

#[derive(Debug, Clone)]
pub struct Policies<P> {
    all: BTreeMap<String, Arc<P>>,
    by_service: HashMap<String, BTreeSet<String>>,
    anywhere: BTreeSet<String>,
}

impl<P> Default for Policies<P> {
    fn default() -> Self {
        Policies {
            all: BTreeMap::new(),
            by_service: HashMap::new(),
            anywhere: BTreeSet::new(),
        }
    }
}

/// What the index files a policy under: the exact services it may apply
/// to, or `None` when it may apply to any.
pub trait Filed {
    fn services(&self) -> Option<BTreeSet<&str>>;
}

impl<P: Policy> Filed for P {
    fn services(&self) -> Option<BTreeSet<&str>> {
        services(&self.service_selectors())
    }
}

/// The exact services `selectors` are limited to, or `None` when one of
/// them may match any service.
fn services<'a>(selectors: &[&'a Selector]) -> Option<BTreeSet<&'a str>> {
    selectors
        .iter()
        .map(
            |s| match s.match_tags.get(SERVICE_TAG).map(String::as_str) {
                Some("*") | None => None,
                Some(service) => Some(service),
            },
        )
        .collect()
}

impl<P: Filed> Policies<P> {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<P>> {
        self.all.get(name)
    }

    /// Every policy, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<P>)> {
        self.all.iter()
    }

    /// The policies that may apply to any of `services`: those filed under
    /// one of them and those that may apply anywhere, each once, in name
    /// order.
    pub fn for_services<'s>(
        &'s self,
        services: &[&str],
    ) -> impl Iterator<Item = (&'s String, &'s Arc<P>)> + use<'s, P> {
        let mut names: Vec<&String> = self.anywhere.iter().collect();
        for s in services {
            names.extend(self.by_service.get(*s).into_iter().flatten());
        }
        names.sort();
        names.dedup();
        names.into_iter().filter_map(|n| self.all.get_key_value(n))
    }

    /// Adds or replaces `name`; answers the previous version.
    pub fn insert(&mut self, name: &str, policy: P) -> Option<Arc<P>> {
        let old = self.remove(name);
        let policy = Arc::new(policy);
        match policy.services() {
            Some(services) => {
                for service in services {
                    self.by_service
                        .entry(service.to_string())
                        .or_default()
                        .insert(name.to_string());
                }
            }
            None => {
                self.anywhere.insert(name.to_string());
            }
        }
        self.all.insert(name.to_string(), policy);
        old
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<P>> {
        let old = self.all.remove(name)?;
        if let Some(services) = old.services() {
            for service in services {
                if let Some(names) = self.by_service.get_mut(service) {
                    names.remove(name);
                    if names.is_empty() {
                        self.by_service.remove(service);
                    }
                }
            }
        } else {
            self.anywhere.remove(name);
        }
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(service: &str) -> Selector {
        Selector {
            match_tags: [(SERVICE_TAG.to_string(), service.to_string())].into(),
        }
    }

    fn trace(selectors: Vec<Selector>) -> TrafficTraceSpec {
        TrafficTraceSpec {
            selectors,
            conf: None,
        }
    }

    #[test]
    fn candidates_are_the_policies_of_the_service_and_those_of_any() {
        let mut p: Policies<TrafficTraceSpec> = Policies::default();
        p.insert("to-redis", trace(vec![selector("redis")]));
        p.insert("to-both", trace(vec![selector("redis"), selector("db")]));
        p.insert("to-all", trace(vec![selector("*")]));
        p.insert(
            "by-version",
            trace(vec![Selector {
                match_tags: [("version".to_string(), "2".to_string())].into(),
            }]),
        );
        let names = |it: Vec<(&String, &Arc<TrafficTraceSpec>)>| -> Vec<String> {
            it.into_iter().map(|(n, _)| n.clone()).collect()
        };
        assert_eq!(
            names(p.for_services(&["redis"]).collect()),
            ["by-version", "to-all", "to-both", "to-redis"]
        );
        assert_eq!(
            names(p.for_services(&["db"]).collect()),
            ["by-version", "to-all", "to-both"]
        );
        assert_eq!(
            names(p.for_services(&["web"]).collect()),
            ["by-version", "to-all"]
        );
        // Moved and removed: filed anew.
        p.insert("to-redis", trace(vec![selector("web")]));
        assert_eq!(
            names(p.for_services(&["redis"]).collect()),
            ["by-version", "to-all", "to-both"]
        );
        p.remove("to-both");
        p.remove("to-all");
        assert_eq!(
            names(p.for_services(&["db", "web"]).collect()),
            ["by-version", "to-redis"]
        );
    }
}
