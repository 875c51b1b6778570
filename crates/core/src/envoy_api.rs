//! Envoy's API as data: the descriptors of every message of Envoy's v3 API
//! (compiled by `build.rs` from the `.proto` files of the envoy-types
//! crate), so that raw resources written as YAML or JSON are parsed into
//! the typed API, and generated ones are shown as JSON.

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;
use std::sync::LazyLock;

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin")).as_slice(),
    )
    .map_err(|e| format!("the embedded descriptors of Envoy's API do not load: {e}"))
});

const TYPE_PREFIX: &str = "type.googleapis.com/";

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const CLUSTER_LOAD_ASSIGNMENT: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The xDS resource types the control plane serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TypeUrl {
    Secret,
    Listener,
    Cluster,
    ClusterLoadAssignment,
}

impl TypeUrl {
    /// In the order a proxy needs them: secrets before the clusters and
    /// listeners that use them, clusters before their endpoints.
    pub const ALL: [TypeUrl; 4] = [
        TypeUrl::Secret,
        TypeUrl::Cluster,
        TypeUrl::ClusterLoadAssignment,
        TypeUrl::Listener,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TypeUrl::Secret => SECRET,
            TypeUrl::Listener => LISTENER,
            TypeUrl::Cluster => CLUSTER,
            TypeUrl::ClusterLoadAssignment => CLUSTER_LOAD_ASSIGNMENT,
        }
    }

    pub fn parse(s: &str) -> Option<TypeUrl> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The short name used in insights and metrics: sds, lds, cds, eds.
    pub fn short(self) -> &'static str {
        match self {
            TypeUrl::Secret => "sds",
            TypeUrl::Listener => "lds",
            TypeUrl::Cluster => "cds",
            TypeUrl::ClusterLoadAssignment => "eds",
        }
    }
}

/// Envoy's v2 names of the messages a raw resource may hold, and their v3
/// names. Envoy 1.40 speaks only v3; where the fields agree, a v2 document
/// is the v3 one under another name.
const V2_TO_V3: &[(&str, &str)] = &[
    ("envoy.api.v2.Listener", "envoy.config.listener.v3.Listener"),
    ("envoy.api.v2.Cluster", "envoy.config.cluster.v3.Cluster"),
    (
        "envoy.api.v2.ClusterLoadAssignment",
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    ),
    (
        "envoy.api.v2.RouteConfiguration",
        "envoy.config.route.v3.RouteConfiguration",
    ),
    (
        "envoy.config.filter.network.tcp_proxy.v2.TcpProxy",
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    ),
    (
        "envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    ),
    (
        "envoy.config.filter.http.router.v2.Router",
        "envoy.extensions.filters.http.router.v3.Router",
    ),
    (
        "envoy.api.v2.auth.UpstreamTlsContext",
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    ),
    (
        "envoy.api.v2.auth.DownstreamTlsContext",
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    ),
    (
        "envoy.config.accesslog.v2.FileAccessLog",
        "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    ),
];

/// A raw resource, parsed and encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource {
    /// The v3 type URL.
    pub type_url: String,
    /// The resource's own name (`name`, or `cluster_name` of an endpoint
    /// assignment): what Envoy knows it by.
    pub name: String,
    pub body: Any,
}

fn message(full_name: &str) -> Result<MessageDescriptor, String> {
    let pool = POOL.as_ref().map_err(Clone::clone)?;
    pool.get_message_by_name(full_name)
        .ok_or_else(|| format!("\"{full_name}\" is not a message of Envoy's v3 API"))
}

/// Rewrites every v2 `@type` in `value` to its v3 name; answers the v2
/// names it met, to say so if parsing then fails.
fn v2_to_v3(value: &mut Value, met: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(t)) = map.get_mut("@type")
                && let Some((v2, v3)) = V2_TO_V3
                    .iter()
                    .find(|(v2, _)| t.strip_prefix(TYPE_PREFIX) == Some(v2))
            {
                met.push(v2.to_string());
                *t = format!("{TYPE_PREFIX}{v3}");
            }
            map.values_mut().for_each(|v| v2_to_v3(v, met));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| v2_to_v3(v, met)),
        _ => {}
    }
}

/// Parses a raw resource (YAML or JSON, with `@type`) into Envoy's typed
/// v3 API. `allowed` are the v3 type URLs it may have. The error names the
/// field and the parser's reason.
pub fn parse_resource(text: &str, allowed: &[&str]) -> Result<RawResource, String> {
    let mut value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("is not valid YAML or JSON: {e}"))?;
    let mut v2 = Vec::new();
    v2_to_v3(&mut value, &mut v2);
    let Value::Object(mut fields) = value else {
        return Err("must be an object with an '@type' field".into());
    };
    let type_url = match fields.remove("@type") {
        Some(Value::String(t)) => t,
        _ => return Err("must have an '@type' field naming its Envoy type".into()),
    };
    if !allowed.contains(&type_url.as_str()) {
        return Err(format!(
            "'@type' {type_url} cannot be served to a proxy; expected one of {}",
            allowed.join(", ")
        ));
    }
    let descriptor = message(type_url.trim_start_matches(TYPE_PREFIX))?;
    let mut track = serde_path_to_error::Track::new();
    let parsed = DynamicMessage::deserialize(
        descriptor,
        serde_path_to_error::Deserializer::new(Value::Object(fields), &mut track),
    )
    .map_err(|e| {
        let path = track.path().to_string();
        let field = if path == "." {
            String::new()
        } else {
            format!("field {path}: ")
        };
        let v2 = if v2.is_empty() {
            String::new()
        } else {
            format!(
                " (read as v3: {} has no such field in v3, which is all Envoy 1.40 speaks)",
                v2.join(", ")
            )
        };
        format!("{field}{e}{v2}")
    })?;
    let name_field = if type_url.ends_with(".ClusterLoadAssignment") {
        "cluster_name"
    } else {
        "name"
    };
    let name = parsed
        .get_field_by_name(name_field)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if name.is_empty() {
        return Err(format!(
            "must have a \"{name_field}\": the name Envoy knows the resource by"
        ));
    }
    Ok(RawResource {
        name,
        body: Any {
            type_url: type_url.clone(),
            value: prost::Message::encode_to_vec(&parsed),
        },
        type_url,
    })
}

/// A message of Envoy's API read from its JSON (either field names), such
/// as the `node` of Envoy's admin `/server_info`.
pub fn from_json<M: prost::Message + Default>(full_name: &str, json: Value) -> Result<M, String> {
    let parsed =
        DynamicMessage::deserialize(message(full_name)?, json).map_err(|e| e.to_string())?;
    M::decode(prost::Message::encode_to_vec(&parsed).as_slice()).map_err(|e| e.to_string())
}

/// An encoded resource as JSON, in Envoy's own field names (as
/// `/config_dump` shows them), or `None` when its type is not Envoy's.
pub fn to_json(any: &Any) -> Option<Value> {
    let descriptor = message(any.type_url.trim_start_matches(TYPE_PREFIX)).ok()?;
    let decoded = DynamicMessage::decode(descriptor, any.value.as_slice()).ok()?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut json = decoded
        .serialize_with_options(serde_json::value::Serializer, &options)
        .ok()?;
    if let Value::Object(map) = &mut json {
        map.insert("@type".into(), Value::String(any.type_url.clone()));
    }
    Some(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER_V3: &str = CLUSTER;

    /// The reference's ProxyTemplate example names the v2 Cluster; it is
    /// read as the v3 one and round-trips through the typed API.
    #[test]
    fn the_references_v2_cluster_parses_as_v3() {
        let text = "'@type': type.googleapis.com/envoy.api.v2.Cluster\nconnectTimeout: 5s\nloadAssignment:\n  clusterName: localhost:8443\n  endpoints:\n    - lbEndpoints:\n        - endpoint:\n            address:\n              socketAddress:\n                address: 127.0.0.1\n                portValue: 8443\nname: localhost:8443\ntype: STATIC\n";
        let raw = parse_resource(text, &[CLUSTER_V3]).unwrap();
        assert_eq!(raw.type_url, CLUSTER_V3);
        assert_eq!(raw.name, "localhost:8443");
        let cluster: envoy_types::pb::envoy::config::cluster::v3::Cluster =
            prost::Message::decode(raw.body.value.as_slice()).unwrap();
        assert_eq!(cluster.connect_timeout.unwrap().seconds, 5);
        let json = to_json(&raw.body).unwrap();
        assert_eq!(json["name"], "localhost:8443");
        assert_eq!(json["type"], "STATIC");
    }

    #[test]
    fn a_bad_resource_names_the_field_and_the_reason() {
        let cases = [
            (
                "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: x\nconnectTimeout: soon\n",
                "field connectTimeout: failed to parse duration",
            ),
            (
                "'@type': type.googleapis.com/envoy.api.v2.Cluster\nname: x\nhosts: []\n",
                "envoy.api.v2.Cluster has no such field in v3",
            ),
            (
                "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nconnectTimeout: 1s\n",
                "must have a \"name\"",
            ),
            (
                "'@type': type.googleapis.com/envoy.config.route.v3.Route\nname: x\n",
                "cannot be served",
            ),
            ("name: x\n", "'@type'"),
            ("[1, 2", "not valid YAML"),
        ];
        for (text, expected) in cases {
            let err = parse_resource(text, &[CLUSTER_V3]).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
