//! Kubernetes Events the control plane records on objects it cannot use as
//! they are, so `kubectl describe` shows the reason beside the object.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// Records a Warning on the object `involved` (`apiVersion`, `kind`,
/// `name`, `namespace`, `uid`), in its namespace (`default` for a
/// cluster-scoped one). A failure is logged, never fatal.
pub async fn warn(client: &kube::Client, involved: Value, reason: &str, message: &str) {
    let namespace = involved["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = involved["name"].as_str().unwrap_or("object").to_string();
    let now = chrono::Utc::now().to_rfc3339();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": involved,
        "reason": reason, "message": message, "type": "Warning",
        "source": {"component": "kuma-cp"},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let created = match serde_json::from_value::<Event>(event) {
        Ok(event) => Api::<Event>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await
            .err()
            .map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(error) = created {
        tracing::warn!(
            name,
            namespace,
            error,
            "cannot record an Event on the object"
        );
    }
}
