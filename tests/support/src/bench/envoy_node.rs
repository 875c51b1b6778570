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

use envoy_types::pb::envoy::config::core::v3::Node;
use serde_json::Value as Json;

/// The node recorded from Envoy 1.40.0, with `id` as its node id.
pub fn recorded(id: &str) -> Node {
    let json: Json = serde_json::from_str(include_str!("../../fixtures/envoy-node.json"))
        .expect("fixtures/envoy-node.json is JSON");
    with_id(&json, id)
}

/// The `node` of a `/server_info` answer, with `id` as its node id.
pub fn with_id(node: &Json, id: &str) -> Node {
    let node: Node = kuma_core::envoy_api::from_json("envoy.config.core.v3.Node", node.clone())
        .unwrap_or_else(|e| panic!("Envoy's node does not read as envoy.config.core.v3.Node: {e}"));
    Node {
        id: id.to_string(),
        ..node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{BuildVersion, node};
    use envoy_types::pb::envoy::r#type::v3::SemanticVersion;
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
