//! `Dataplane`: what a proxy serves (inbound) and what it consumes
//! (outbound), in the interface-string format of the reference.

use super::tags::{SERVICE_TAG, Tags, validate_tag_value, validate_tags};
use super::validation::Cause;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataplaneSpec {
    pub networking: Networking,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Networking {
    /// A gateway's address (its listeners' come from its MeshGateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Set for a gateway, which has no inbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<super::gateway::Gateway>,
    #[serde(default)]
    pub inbound: Vec<InboundInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundInterface>,
    /// Set for a proxy that reaches the services of its mesh at their
    /// Service addresses (Kubernetes): it gets an outbound for every
    /// service of the mesh that has one, derived from the index rather than
    /// listed here.
    #[serde(
        default,
        rename = "transparentProxying",
        skip_serializing_if = "Option::is_none"
    )]
    pub transparent_proxying: Option<TransparentProxying>,
}

/// Where the node's redirection (iptables) sends a pod's traffic. A port of
/// 0 means no redirection: the outbound listeners then listen on the
/// Service addresses themselves.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransparentProxying {
    #[serde(default)]
    pub redirect_port_inbound: u16,
    #[serde(default)]
    pub redirect_port_outbound: u16,
}

impl TransparentProxying {
    /// Where the node redirects a pod's inbound TCP, by default.
    pub const INBOUND_PORT: u16 = 15006;
    /// Where the node redirects a pod's outbound TCP, by default.
    pub const OUTBOUND_PORT: u16 = 15001;
    /// The user the sidecar (Envoy) runs as: its own traffic is never
    /// redirected.
    pub const PROXY_UID: u32 = 5678;
}

/// `interface: {address}:{dataplane-port}:{service-port}` plus its tags.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundInterface {
    pub interface: String,
    #[serde(default)]
    pub tags: Tags,
    /// The inbound's name, as Kuma 2.x names inbounds: what a policy's
    /// `sectionName` may name (as well as the port). On Kubernetes, the
    /// name of the Service port it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether the workload behind this inbound takes traffic now (a pod
    /// and its sidecar are ready, and it is not terminating). Absent means
    /// ready; a not-ready inbound's endpoint is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<InboundHealth>,
    /// The Service address (`{ip}:{port}`) at which transparent proxies of
    /// the mesh reach this inbound's service (Kubernetes: the cluster IP
    /// and port of the Service it was made from).
    #[serde(
        default,
        rename = "serviceVip",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_vip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundHealth {
    pub ready: bool,
}

/// `interface: [address]:port` and the service it leads to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundInterface {
    pub interface: String,
    pub service: String,
    /// Another mesh, whose service `service` is a cross-mesh gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
}

/// A parsed inbound interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundEndpoint {
    pub address: IpAddr,
    pub dataplane_port: u16,
    pub service_port: u16,
}

/// A parsed outbound interface; an empty address means 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundEndpoint {
    pub address: IpAddr,
    pub port: u16,
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn parse_address(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// An interface's address, or what is wrong with it: a host name gets its
/// own words (addresses are IPs; Envoy listens on and dials IPs), anything
/// else the interface's expected shape.
fn address(s: &str, expected: impl Fn() -> String) -> Result<IpAddr, String> {
    parse_address(s).ok_or_else(|| {
        let host_name = !s.is_empty()
            && s.chars().any(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if host_name {
            format!("\"{s}\" is a host name; addresses here are IP addresses (e.g. 127.0.0.1 for localhost): {}", expected())
        } else {
            expected()
        }
    })
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

impl InboundInterface {
    pub fn endpoint(&self) -> Result<InboundEndpoint, String> {
        let expected = || {
            format!(
                "\"{}\" must be {{address}}:{{dataplane-port}}:{{service-port}}, e.g. 127.0.0.1:9000:6379, with ports from 1 to 65535",
                self.interface
            )
        };
        let mut parts = self.interface.rsplitn(3, ':');
        let service = parts.next().ok_or_else(expected)?;
        let dataplane = parts.next().ok_or_else(expected)?;
        let address = parts.next().ok_or_else(expected)?;
        Ok(InboundEndpoint {
            address: self::address(address, expected)?,
            dataplane_port: parse_port(dataplane).ok_or_else(expected)?,
            service_port: parse_port(service).ok_or_else(expected)?,
        })
    }

    pub fn service(&self) -> Option<&str> {
        self.tags.get(SERVICE_TAG).map(String::as_str)
    }

    /// Whether its endpoint may be used now.
    pub fn is_ready(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.ready)
    }

    /// The parsed Service address, if it has one.
    pub fn vip(&self) -> Option<Result<OutboundEndpoint, String>> {
        let vip = self.service_vip.as_ref()?;
        let expected = || {
            format!(
                "\"{vip}\" must be {{ip}}:{{port}}, e.g. 10.96.0.10:80, with a port from 1 to 65535"
            )
        };
        Some(
            vip.rsplit_once(':')
                .ok_or_else(expected)
                .and_then(|(a, p)| {
                    Ok(OutboundEndpoint {
                        address: address(a, expected)?,
                        port: parse_port(p).ok_or_else(expected)?,
                    })
                }),
        )
    }
}

impl OutboundInterface {
    pub fn endpoint(&self) -> Result<OutboundEndpoint, String> {
        let expected = || {
            format!(
                "\"{}\" must be [address]:port, e.g. :10000 or 127.0.0.1:10000, with a port from 1 to 65535",
                self.interface
            )
        };
        let (address, port) = self.interface.rsplit_once(':').ok_or_else(expected)?;
        Ok(OutboundEndpoint {
            address: if address.is_empty() {
                LOOPBACK
            } else {
                self::address(address, expected)?
            },
            port: parse_port(port).ok_or_else(expected)?,
        })
    }
}

impl DataplaneSpec {
    /// The tags of each inbound: what policies select a dataplane by.
    pub fn inbound_tags(&self) -> Vec<&Tags> {
        self.networking.inbound.iter().map(|i| &i.tags).collect()
    }

    /// Every service this dataplane serves, in inbound order (a gateway's
    /// first), without repeats.
    pub fn services(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let gateway = self.networking.gateway.iter().filter_map(|g| g.service());
        for s in gateway.chain(self.networking.inbound.iter().filter_map(|i| i.service())) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// True when some inbound carries every one of `tags`.
    pub fn matches_tags(&self, tags: &Tags) -> bool {
        self.networking
            .inbound
            .iter()
            .any(|i| tags.iter().all(|(k, v)| i.tags.get(k) == Some(v)))
    }

    /// The gateway's address, when it is one.
    pub fn gateway_address(&self) -> Option<IpAddr> {
        self.networking.gateway.as_ref()?;
        self.networking.address.as_deref()?.parse().ok()
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        match &self.networking.gateway {
            None if self.networking.inbound.is_empty() => causes.push(Cause::new(
                "networking.inbound",
                "must have at least one inbound interface",
            )),
            None => {}
            Some(gateway) => {
                if !self.networking.inbound.is_empty() {
                    causes.push(Cause::new(
                        "networking.inbound",
                        "a gateway has no inbound: its MeshGateway says where it listens",
                    ));
                }
                if self.gateway_address().is_none() {
                    causes.push(Cause::new(
                        "networking.address",
                        "a gateway needs its IP address",
                    ));
                }
                if gateway.service().is_none() {
                    causes.push(Cause::new(
                        format!("networking.gateway.tags.{SERVICE_TAG}"),
                        "tag \"service\" is mandatory",
                    ));
                }
                causes.extend(validate_tags(
                    "networking.gateway.tags",
                    &gateway.tags,
                    false,
                ));
            }
        }
        // (address, port) -> the field that listens there first
        let mut listeners: HashMap<(IpAddr, u16), String> = HashMap::new();
        let mut claim = |causes: &mut Vec<Cause>, addr: IpAddr, port: u16, field: String| {
            if let Some(first) = listeners.get(&(addr, port)) {
                causes.push(Cause::new(
                    field,
                    format!("port {port} on {addr} is already used by {first}"),
                ));
            } else {
                listeners.insert((addr, port), field);
            }
        };
        for (i, inbound) in self.networking.inbound.iter().enumerate() {
            let field = format!("networking.inbound[{i}]");
            match inbound.endpoint() {
                Ok(ep) => claim(
                    &mut causes,
                    ep.address,
                    ep.dataplane_port,
                    format!("{field}.interface"),
                ),
                Err(msg) => causes.push(Cause::new(format!("{field}.interface"), msg)),
            }
            if !inbound.tags.contains_key(SERVICE_TAG) {
                causes.push(Cause::new(
                    format!("{field}.tags.{SERVICE_TAG}"),
                    "tag \"service\" is mandatory",
                ));
            }
            causes.extend(validate_tags(
                &format!("{field}.tags"),
                &inbound.tags,
                false,
            ));
            if let Some(Err(msg)) = inbound.vip() {
                causes.push(Cause::new(format!("{field}.serviceVip"), msg));
            }
            if let Some(name) = &inbound.name {
                causes.extend(validate_tag_value(&format!("{field}.name"), name, false));
            }
        }
        for (i, outbound) in self.networking.outbound.iter().enumerate() {
            let field = format!("networking.outbound[{i}]");
            match outbound.endpoint() {
                Ok(ep) => claim(
                    &mut causes,
                    ep.address,
                    ep.port,
                    format!("{field}.interface"),
                ),
                Err(msg) => causes.push(Cause::new(format!("{field}.interface"), msg)),
            }
            causes.extend(validate_tag_value(
                &format!("{field}.service"),
                &outbound.service,
                false,
            ));
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(s: &str) -> InboundInterface {
        InboundInterface {
            interface: s.into(),
            tags: [("service".to_string(), "redis".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_inbound_interfaces() {
        let ep = inbound("127.0.0.1:9000:6379").endpoint().unwrap();
        assert_eq!((ep.dataplane_port, ep.service_port), (9000, 6379));
        assert_eq!(ep.address, LOOPBACK);
        let ep = inbound("::1:9000:6379").endpoint().unwrap();
        assert_eq!(ep.address, "::1".parse::<IpAddr>().unwrap());
        for bad in [
            "127.0.0.1:abc",
            "127.0.0.1:0:1",
            "127.0.0.1:1:70000",
            "host:1:2",
            "1:2",
        ] {
            assert!(inbound(bad).endpoint().is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_outbound_address_means_loopback() {
        let o = OutboundInterface {
            mesh: None,
            interface: ":10000".into(),
            service: "redis".into(),
        };
        assert_eq!(
            o.endpoint().unwrap(),
            OutboundEndpoint {
                address: LOOPBACK,
                port: 10000
            }
        );
    }

    #[test]
    fn refuses_two_listeners_on_one_port() {
        let spec = DataplaneSpec {
            networking: Networking {
                address: None,
                gateway: None,
                inbound: vec![inbound("127.0.0.1:9000:6379")],
                outbound: vec![OutboundInterface {
                    mesh: None,
                    interface: ":9000".into(),
                    service: "x".into(),
                }],
                ..Default::default()
            },
        };
        let causes = spec.validate();
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "networking.outbound[0].interface");
        assert!(
            causes[0]
                .message
                .contains("already used by networking.inbound[0].interface")
        );
    }
}
