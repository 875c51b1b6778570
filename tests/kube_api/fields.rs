//! Field validation of built-in kinds, as the real server decodes them:
//! each object goes through its typed form (k8s-openapi's, the same Go
//! structs' fields), so a field the kind does not have is dropped, and
//! refused when the client asked for `fieldValidation=Strict` (kubectl's
//! and Helm's default); a value of the wrong type is refused always. What
//! is stored is what a real server would store. Kuma's kinds are left as
//! they are: `kuma-cp` validates them itself and reports what is wrong.
//! One difference remains: a resource quantity written as a bare number
//! (`cpu: 1`) is refused here, as k8s-openapi reads quantities as strings,
//! where the real server takes it.

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, coordination::v1 as coordination,
    core::v1 as core, rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// The object as the server keeps it, or why it refuses it.
pub fn decode(gv: &str, kind: &str, object: Value, strict: bool) -> Result<Value, String> {
    let typed = match (gv, kind) {
        ("v1", "Namespace") => round_trip::<core::Namespace>(&object),
        ("v1", "Pod") => round_trip::<core::Pod>(&object),
        ("v1", "Service") => round_trip::<core::Service>(&object),
        ("v1", "Secret") => round_trip::<core::Secret>(&object),
        ("v1", "ConfigMap") => round_trip::<core::ConfigMap>(&object),
        ("v1", "ServiceAccount") => round_trip::<core::ServiceAccount>(&object),
        ("apps/v1", "Deployment") => round_trip::<apps::Deployment>(&object),
        ("coordination.k8s.io/v1", "Lease") => round_trip::<coordination::Lease>(&object),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<rbac::ClusterRole>(&object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<rbac::ClusterRoleBinding>(&object)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::Role>(&object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<rbac::RoleBinding>(&object),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            round_trip::<admission::MutatingWebhookConfiguration>(&object)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            round_trip::<admission::ValidatingWebhookConfiguration>(&object)
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            round_trip::<apiextensions::CustomResourceDefinition>(&object)
        }
        _ => return Ok(object),
    }?;
    let mut unknown = Vec::new();
    missing(&object, &typed, "", &mut unknown);
    let mut typed = typed;
    if kind == "Secret" {
        string_data_into_data(&mut typed);
    }
    if strict && !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(format!("strict decoding error: {}", fields.join(", ")));
    }
    Ok(typed)
}

/// A Secret's `stringData` is written into its `data`, as the real server
/// does on every write.
fn string_data_into_data(secret: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|s| s.remove("stringData"))
    else {
        return;
    };
    for (key, value) in strings {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap_or(""));
        secret["data"][key] = Value::from(encoded);
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The fields of `given` (not null) that `kept` lacks, as dotted paths.
fn missing(given: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    None if !value.is_null() => out.push(here),
                    Some(k) => missing(value, k, &here, out),
                    None => {}
                }
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (g, k)) in given.iter().zip(kept).enumerate() {
                missing(g, k, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
