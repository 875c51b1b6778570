//! The three patch types a real API server takes, as kubectl and Helm use
//! them:
//!
//! - JSON merge patch (RFC 7386), `application/merge-patch+json`
//!   (`kubectl label`, `kubectl patch --type merge`, custom resources);
//! - strategic merge patch, `application/strategic-merge-patch+json`, which
//!   `kubectl apply` sends for built-in kinds: lists with a merge key
//!   (containers by `name`, volume mounts by `mountPath`, ...) merge item by
//!   item, and the `$patch`, `$setElementOrder/`, `$retainKeys` and
//!   `$deleteFromPrimitiveList/` directives are honoured. The merge keys are
//!   Kubernetes' own (`patchMergeKey` of the Go types) for the fields the
//!   fixture's kinds have; any other list is replaced whole, as the real
//!   server does for an atomic list;
//! - server-side apply, `application/apply-patch+yaml`: the applied
//!   configuration is merged in, and what the same field manager applied
//!   before but no longer does is removed. Ownership conflicts between
//!   managers are not detected: the fixture applies as if `--force-conflicts`.

use serde_json::{Map, Value};

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The merge key of a list field, as Kubernetes declares it.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "topologySpreadConstraints" => "topologyKey",
        // A container's ports merge by containerPort, a Service's by port.
        "ports" if items.iter().any(|i| i.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

/// Lists of strings that merge as sets.
fn is_primitive_merge(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic merge patch to `target`.
pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replacement = patch.clone();
            replacement.remove("$patch");
            *target = Value::Object(replacement);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown $patch directive \"{other}\"")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object");
    let mut orders = Vec::new();
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), value.clone()));
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = t.get_mut(field) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(format!("unknown directive \"{key}\""));
        }
        match value {
            Value::Null => {
                t.remove(key);
            }
            Value::Object(_) => strategic(t.entry(key.clone()).or_insert(Value::Null), value)?,
            Value::Array(items) => {
                let existing = match t.get(key) {
                    Some(Value::Array(existing)) => existing.clone(),
                    _ => Vec::new(),
                };
                let merged = if let Some(merge_key) = merge_key(key, items) {
                    merge_list(existing, items, merge_key)?
                } else if is_primitive_merge(key) {
                    let mut merged = existing.clone();
                    merged.extend(items.iter().filter(|i| !existing.contains(i)).cloned());
                    merged
                } else {
                    items.clone()
                };
                t.insert(key.clone(), Value::Array(merged));
            }
            other => {
                t.insert(key.clone(), other.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(list)) = t.get_mut(&field) {
            let order = order.as_array().cloned().unwrap_or_default();
            let key = merge_key(&field, list);
            let rank = |item: &Value| {
                order
                    .iter()
                    .position(|o| match key {
                        Some(k) => o.get(k).is_some() && o.get(k) == item.get(k),
                        None => o == item,
                    })
                    .unwrap_or(usize::MAX)
            };
            list.sort_by_key(rank);
        }
    }
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(mut existing: Vec<Value>, patch: &[Value], key: &str) -> Result<Vec<Value>, String> {
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(format!("a list item without its merge key \"{key}\""));
        };
        let position = existing.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(at), true) => {
                existing.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => strategic(&mut existing[at], item)?,
            (None, false) => {
                let mut added = Value::Null;
                strategic(&mut added, item)?;
                existing.push(added);
            }
        }
    }
    Ok(existing)
}

/// Server-side apply of `applied` by a manager whose previous applied
/// configuration was `previous`: fields it no longer applies are removed,
/// then the new configuration is merged in.
pub fn apply(target: &mut Value, previous: Option<&Value>, applied: &Value) {
    if let Some(previous) = previous {
        let mut removal = Value::Object(Map::new());
        dropped_fields(previous, applied, &mut removal);
        merge(target, &removal);
    }
    merge(target, applied);
}

/// A merge patch that deletes each field of `before` absent from `after`.
fn dropped_fields(before: &Value, after: &Value, removal: &mut Value) {
    let (Value::Object(before), Value::Object(after)) = (before, after) else {
        return;
    };
    for (key, value) in before {
        match after.get(key) {
            None => {
                removal[key] = Value::Null;
            }
            Some(now) if value.is_object() && now.is_object() => {
                let mut inner = Value::Object(Map::new());
                dropped_fields(value, now, &mut inner);
                if inner.as_object().is_some_and(|m| !m.is_empty()) {
                    removal[key] = inner;
                }
            }
            Some(_) => {}
        }
    }
}
