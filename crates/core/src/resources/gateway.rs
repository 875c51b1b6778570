//! Cross-mesh gateways: the one path between meshes.
//!
//! A gateway is a dataplane of its mesh with `networking.gateway` (Kuma's
//! builtin gateway) and no inbound. A `MeshGateway` selecting it says where
//! it listens; a listener with `crossMesh: true` takes mTLS connections
//! from proxies of the meshes that trust this one (`Mesh.crossMesh`), and a
//! `MeshGatewayRoute` says which service of its mesh it leads to. Who may
//! use it is a TrafficPermission of the gateway's mesh whose sources name
//! the other mesh with the tag `kuma.io/mesh`.
//!
//! ```yaml
//! type: MeshGateway
//! mesh: b
//! name: edge
//! selectors: [{match: {service: edge}}]
//! conf:
//!   listeners: [{port: 8080, protocol: TCP, crossMesh: true}]
//! ---
//! type: MeshGatewayRoute
//! mesh: b
//! name: edge-api
//! selectors: [{match: {service: edge}}]
//! conf:
//!   tcp:
//!     rules: [{backends: [{destination: {service: api}}]}]
//! ```

use super::policy::Selector;
use super::tags::{SERVICE_TAG, Tags, validate_tags};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

/// The tag by which a TrafficPermission's source names another mesh.
pub const MESH_TAG: &str = "kuma.io/mesh";

/// `networking.gateway` of a Dataplane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// `BUILTIN`: the control plane configures its listeners.
    #[serde(rename = "type")]
    pub kind: GatewayType,
    pub tags: Tags,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayType {
    #[default]
    Builtin,
}

impl Gateway {
    pub fn service(&self) -> Option<&str> {
        self.tags.get(SERVICE_TAG).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshGatewaySpec {
    /// The gateway dataplanes it configures, by their gateway tags.
    pub selectors: Vec<Selector>,
    pub conf: MeshGatewayConf,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshGatewayConf {
    pub listeners: Vec<GatewayListener>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayListener {
    pub port: u16,
    /// `TCP`, the one protocol served here.
    pub protocol: String,
    /// Taken by proxies of the meshes that trust this one, over mTLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cross_mesh: bool,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshGatewayRouteSpec {
    pub selectors: Vec<Selector>,
    pub conf: GatewayRouteConf,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayRouteConf {
    pub tcp: TcpGatewayRoute,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpGatewayRoute {
    pub rules: Vec<TcpGatewayRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpGatewayRule {
    pub backends: Vec<GatewayBackend>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayBackend {
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
    /// `service` (and only it) names the backend.
    pub destination: Tags,
}

fn one() -> u32 {
    1
}

fn is_one(w: &u32) -> bool {
    *w == 1
}

fn selectors_cause(selectors: &[Selector]) -> Option<Cause> {
    selectors
        .is_empty()
        .then(|| Cause::new("selectors", "must select at least one gateway"))
}

impl MeshGatewaySpec {
    /// Whether it configures the gateway with `tags`.
    pub fn selects(&self, tags: &Tags) -> bool {
        self.selectors.iter().any(|s| s.matches(tags))
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes: Vec<Cause> = selectors_cause(&self.selectors).into_iter().collect();
        if self.conf.listeners.is_empty() {
            causes.push(Cause::new(
                "conf.listeners",
                "must have at least one listener",
            ));
        }
        for (i, l) in self.conf.listeners.iter().enumerate() {
            let field = format!("conf.listeners[{i}]");
            if l.port == 0 {
                causes.push(Cause::new(format!("{field}.port"), "must be 1 to 65535"));
            }
            if l.protocol != "TCP" {
                causes.push(Cause::new(
                    format!("{field}.protocol"),
                    format!("\"{}\" is not served; expected TCP", l.protocol),
                ));
            }
            causes.extend(validate_tags(&format!("{field}.tags"), &l.tags, false));
        }
        causes
    }
}

impl MeshGatewayRouteSpec {
    pub fn selects(&self, tags: &Tags) -> bool {
        self.selectors.iter().any(|s| s.matches(tags))
    }

    /// The backends' services and weights (the first rule's: TCP has no
    /// match to tell rules apart).
    pub fn backends(&self) -> impl Iterator<Item = (&str, u32)> {
        self.conf
            .tcp
            .rules
            .first()
            .into_iter()
            .flat_map(|r| r.backends.iter())
            .filter_map(|b| {
                b.destination
                    .get(SERVICE_TAG)
                    .map(|s| (s.as_str(), b.weight))
            })
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes: Vec<Cause> = selectors_cause(&self.selectors).into_iter().collect();
        if self.conf.tcp.rules.len() != 1 {
            causes.push(Cause::new("conf.tcp.rules", "must have exactly one rule"));
        }
        for (i, rule) in self.conf.tcp.rules.iter().enumerate() {
            if rule.backends.is_empty() {
                causes.push(Cause::new(
                    format!("conf.tcp.rules[{i}].backends"),
                    "must have at least one backend",
                ));
            }
            for (j, b) in rule.backends.iter().enumerate() {
                let field = format!("conf.tcp.rules[{i}].backends[{j}].destination");
                if b.destination.len() != 1 || !b.destination.contains_key(SERVICE_TAG) {
                    causes.push(Cause::new(
                        field.clone(),
                        "must name exactly the service: {service: NAME}",
                    ));
                }
                causes.extend(validate_tags(&field, &b.destination, false));
            }
        }
        causes
    }
}

/// `Mesh.crossMesh`: the meshes whose cross-mesh gateways this mesh's
/// proxies may reach. Listing a mesh trusts its CA for its gateways only,
/// and lets its gateways trust this mesh's proxies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossMesh {
    pub gateways: Vec<CrossMeshGateways>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossMeshGateways {
    pub mesh: String,
}

impl CrossMesh {
    pub fn meshes(&self) -> impl Iterator<Item = &str> {
        self.gateways.iter().map(|g| g.mesh.as_str())
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        self.gateways
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                super::validate_name(&format!("crossMesh.gateways[{i}].mesh"), &g.mesh, false)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::resources::{Identity, Resource};
    use serde_json::json;

    fn refused(doc: serde_json::Value) -> String {
        Resource::from_json(doc, Identity::FromDocument)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn wrong_gateway_fields_are_named() {
        let err = refused(
            json!({"type": "MeshGateway", "mesh": "b", "name": "g", "selectors": [],
            "conf": {"listeners": [{"port": 0, "protocol": "HTTP"}]}}),
        );
        for field in [
            "selectors",
            "conf.listeners[0].port",
            "conf.listeners[0].protocol",
        ] {
            assert!(err.contains(field), "{field}: {err}");
        }
        let err = refused(json!({"type": "MeshGatewayRoute", "mesh": "b", "name": "r",
            "selectors": [{"match": {"service": "g"}}],
            "conf": {"tcp": {"rules": [{"backends": [{"destination": {"version": "1"}}]}]}}}));
        assert!(
            err.contains("conf.tcp.rules[0].backends[0].destination"),
            "{err}"
        );
        let err = refused(json!({"type": "Dataplane", "mesh": "b", "name": "gw",
            "networking": {"gateway": {"type": "BUILTIN", "tags": {}},
                           "inbound": [{"interface": "127.0.0.1:1:2", "tags": {"service": "x"}}]}}));
        for field in [
            "networking.inbound",
            "networking.address",
            "networking.gateway.tags.service",
        ] {
            assert!(err.contains(field), "{field}: {err}");
        }
        let err = refused(
            json!({"type": "Mesh", "name": "a", "crossMesh": {"gateways": [{"mesh": "Not A Mesh"}]}}),
        );
        assert!(err.contains("crossMesh.gateways[0].mesh"), "{err}");
    }

    #[test]
    fn a_gateway_dataplane_round_trips() {
        let doc = json!({"type": "Dataplane", "mesh": "b", "name": "gw",
            "networking": {"address": "10.0.0.9", "gateway": {"type": "BUILTIN", "tags": {"service": "edge"}}, "inbound": []}});
        let r = Resource::from_json(doc.clone(), Identity::FromDocument).unwrap();
        assert_eq!(r.to_json(), doc);
    }
}
