//! The node a real Envoy sends in its first discovery request: its build
//! version, every extension it was built with, its client features, and
//! the metadata kuma-dp's bootstrap gave it. Tens of kilobytes, where a
//! bare node id is a few bytes: a simulated proxy that sends less than
//! Envoy makes the control plane look lighter than it is.
//!
//! Read from the `node` of Envoy's admin `/server_info` (JSON, with the
//! proto's field names), live from a running Envoy or from the copy kept
//! in `fixtures/envoy-node.json` (Envoy 1.40.0 under kuma-dp, recorded
//! with `curl localhost:<admin port>/server_info`).

use envoy_types::pb::envoy::config::core::v3::{BuildVersion, Extension, Node, node};
use envoy_types::pb::envoy::r#type::v3::SemanticVersion;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use serde_json::Value as Json;

/// The node recorded from Envoy 1.40.0, with `id` as its node id.
pub fn recorded(id: &str) -> Node {
    let json: Json = serde_json::from_str(include_str!("../../fixtures/envoy-node.json"))
        .expect("fixtures/envoy-node.json is JSON");
    with_id(&json, id)
}

/// The `node` of a `/server_info` answer, with `id` as its node id.
pub fn with_id(node: &Json, id: &str) -> Node {
    let text = |key: &str| node[key].as_str().unwrap_or_default().to_string();
    let build = &node["user_agent_build_version"];
    Node {
        id: id.to_string(),
        cluster: text("cluster"),
        metadata: node.get("metadata").map(structure),
        user_agent_name: text("user_agent_name"),
        user_agent_version_type: build.get("version").map(|version| {
            node::UserAgentVersionType::UserAgentBuildVersion(BuildVersion {
                version: Some(semantic(version)),
                metadata: build.get("metadata").map(structure),
            })
        }),
        extensions: node["extensions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Extension {
                name: e["name"].as_str().unwrap_or_default().to_string(),
                category: e["category"].as_str().unwrap_or_default().to_string(),
                disabled: e["disabled"].as_bool().unwrap_or_default(),
                type_urls: strings(&e["type_urls"]),
                ..Default::default()
            })
            .collect(),
        client_features: strings(&node["client_features"]),
        ..Default::default()
    }
}

fn semantic(version: &Json) -> SemanticVersion {
    let number = |key: &str| version[key].as_u64().unwrap_or_default() as u32;
    SemanticVersion {
        major_number: number("major_number"),
        minor_number: number("minor_number"),
        patch: number("patch"),
    }
}

fn strings(list: &Json) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn structure(json: &Json) -> Struct {
    Struct {
        fields: json
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    }
}

fn value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(value).collect(),
        }),
        Json::Object(_) => Kind::StructValue(structure(json)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_recorded_node_is_envoys_size_and_names_its_extensions() {
        let node = recorded("default.dp-1");
        assert_eq!(node.id, "default.dp-1");
        assert!(node.extensions.len() > 100, "{}", node.extensions.len());
        assert!(
            node.encoded_len() > 20_000,
            "Envoy's node is tens of kilobytes, not {}",
            node.encoded_len()
        );
        assert!(matches!(
            node.user_agent_version_type,
            Some(node::UserAgentVersionType::UserAgentBuildVersion(
                BuildVersion {
                    version: Some(SemanticVersion {
                        major_number: 1,
                        minor_number: 40,
                        ..
                    }),
                    ..
                }
            ))
        ));
    }
}
