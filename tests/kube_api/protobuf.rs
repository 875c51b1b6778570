//! Request bodies in Kubernetes' protobuf encoding, which kubectl's and
//! Helm's typed clients send for built-in kinds (`kubectl create
//! namespace`, Helm's release Secrets) and cannot be told to replace with
//! JSON. The fixture decodes what those clients write this way into
//! the JSON it stores, and answers JSON (which they accept too). A body
//! with anything the messages below do not name is refused with 415
//! rather than stored with fields missing: re-encoding the decoded message
//! must give back every byte.
//!
//! Wire format: the magic `k8s\0`, then a `runtime.Unknown` whose `raw` is
//! the object's own message (field numbers from Kubernetes'
//! `generated.proto`).

use base64::Engine;
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    content_type: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    kind: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Time {
    #[prost(int64, optional, tag = "1")]
    seconds: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    nanos: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerReference {
    #[prost(string, optional, tag = "1")]
    kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    name: Option<String>,
    #[prost(string, optional, tag = "4")]
    uid: Option<String>,
    #[prost(string, optional, tag = "5")]
    api_version: Option<String>,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "4")]
    self_link: Option<String>,
    #[prost(string, optional, tag = "5")]
    uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    resource_version: Option<String>,
    #[prost(int64, optional, tag = "7")]
    generation: Option<i64>,
    #[prost(message, optional, tag = "8")]
    creation_timestamp: Option<Time>,
    #[prost(btree_map = "string, string", tag = "11")]
    labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerReference>,
    #[prost(string, repeated, tag = "14")]
    finalizers: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct NamespaceSpec {
    #[prost(string, repeated, tag = "1")]
    finalizers: Vec<String>,
}

/// A new Namespace's status: Go encodes it, empty, with every object.
#[derive(Clone, PartialEq, Message)]
struct NamespaceStatus {
    #[prost(string, optional, tag = "1")]
    phase: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct Namespace {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<NamespaceSpec>,
    #[prost(message, optional, tag = "3")]
    status: Option<NamespaceStatus>,
}

#[derive(Clone, PartialEq, Message)]
struct Secret {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    immutable: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct Preconditions {
    #[prost(string, optional, tag = "1")]
    uid: Option<String>,
    #[prost(string, optional, tag = "2")]
    resource_version: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct DeleteOptions {
    #[prost(int64, optional, tag = "1")]
    grace_period_seconds: Option<i64>,
    #[prost(message, optional, tag = "2")]
    preconditions: Option<Preconditions>,
    #[prost(bool, optional, tag = "3")]
    orphan_dependents: Option<bool>,
    #[prost(string, optional, tag = "4")]
    propagation_policy: Option<String>,
    #[prost(string, repeated, tag = "5")]
    dry_run: Vec<String>,
}

/// Decodes `message` fully or says which kind it could not.
fn decode_all<M: Message + Default>(kind: &str, raw: &[u8]) -> Result<M, String> {
    let message =
        M::decode(raw).map_err(|e| format!("a protobuf {kind} that does not decode: {e}"))?;
    if message.encoded_len() != raw.len() {
        return Err(format!(
            "a protobuf {kind} with fields the fixture does not decode; send it as JSON"
        ));
    }
    Ok(message)
}

/// The JSON object a protobuf body stands for.
pub fn to_json(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body without the k8s magic prefix")?;
    let unknown = Unknown::decode(envelope)
        .map_err(|e| format!("a protobuf envelope that does not decode: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut object = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns: Namespace = decode_all(&kind, &raw)?;
            let mut object = json!({"metadata": metadata(ns.metadata.unwrap_or_default())});
            if let Some(spec) = ns.spec.filter(|s| !s.finalizers.is_empty()) {
                object["spec"] = json!({"finalizers": spec.finalizers});
            }
            if let Some(phase) = ns.status.and_then(|s| s.phase).filter(|p| !p.is_empty()) {
                object["status"] = json!({"phase": phase});
            }
            object
        }
        ("v1", "Secret") => {
            let secret: Secret = decode_all(&kind, &raw)?;
            let mut object = json!({"metadata": metadata(secret.metadata.unwrap_or_default())});
            let b64 = base64::engine::general_purpose::STANDARD;
            if !secret.data.is_empty() {
                object["data"] = secret
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(b64.encode(v))))
                    .collect();
            }
            if !secret.string_data.is_empty() {
                object["stringData"] = json!(secret.string_data);
            }
            if let Some(t) = secret.r#type {
                object["type"] = json!(t);
            }
            if let Some(immutable) = secret.immutable {
                object["immutable"] = json!(immutable);
            }
            object
        }
        (_, "DeleteOptions") => {
            let options: DeleteOptions = decode_all(&kind, &raw)?;
            let mut object = json!({});
            if let Some(p) = options.propagation_policy {
                object["propagationPolicy"] = json!(p);
            }
            if let Some(o) = options.orphan_dependents {
                object["orphanDependents"] = json!(o);
            }
            if let Some(g) = options.grace_period_seconds {
                object["gracePeriodSeconds"] = json!(g);
            }
            if !options.dry_run.is_empty() {
                object["dryRun"] = json!(options.dry_run);
            }
            if let Some(p) = options.preconditions {
                object["preconditions"] =
                    json!({"uid": p.uid, "resourceVersion": p.resource_version});
            }
            object
        }
        _ => {
            return Err(format!(
                "a protobuf {api_version} {kind}; the fixture decodes protobuf Namespaces, Secrets and DeleteOptions only, send it as JSON"
            ));
        }
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    Ok(object)
}

fn metadata(meta: ObjectMeta) -> Value {
    let mut out = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_string(), value);
    };
    let strings = [
        ("name", meta.name),
        ("generateName", meta.generate_name),
        ("namespace", meta.namespace),
        ("uid", meta.uid),
        ("resourceVersion", meta.resource_version),
    ];
    // Go's JSON leaves out what is empty; so does this.
    for (key, value) in strings {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            put(key, json!(v));
        }
    }
    if let Some(g) = meta.generation.filter(|g| *g != 0) {
        put("generation", json!(g));
    }
    if let Some(t) = meta
        .creation_timestamp
        .filter(|t| t.seconds.is_some())
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds.unwrap_or(0), t.nanos.unwrap_or(0) as u32)
        })
    {
        put(
            "creationTimestamp",
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
    }
    if !meta.labels.is_empty() {
        put("labels", json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        put("annotations", json!(meta.annotations));
    }
    if !meta.owner_references.is_empty() {
        let refs: Vec<Value> = meta
            .owner_references
            .into_iter()
            .map(|r| {
                let mut reference = json!({"apiVersion": r.api_version, "kind": r.kind, "name": r.name, "uid": r.uid});
                if let Some(c) = r.controller {
                    reference["controller"] = json!(c);
                }
                if let Some(b) = r.block_owner_deletion {
                    reference["blockOwnerDeletion"] = json!(b);
                }
                reference
            })
            .collect();
        put("ownerReferences", json!(refs));
    }
    if !meta.finalizers.is_empty() {
        put("finalizers", json!(meta.finalizers));
    }
    Value::Object(out)
}
