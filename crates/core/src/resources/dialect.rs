//! Today's Kuma dialect (1.x and 2.x Universal YAML), taken on input and
//! translated to the reference's (0.3), which is the one model inside and
//! the one every answer is written in:
//!
//! - `networking.address` with `inbound[].port` / `servicePort` (and
//!   `address`) becomes `inbound[].interface: {address}:{port}:{servicePort}`;
//!   `outbound[].port` (and `address`) with the service in `tags` becomes
//!   `outbound[].interface` and `service`;
//! - the tags `kuma.io/service` and `kuma.io/protocol` become `service` and
//!   `protocol`, in dataplanes and in every policy selector;
//! - a TrafficRoute's `conf: {split}` (or `{destination}`) becomes its list;
//! - `sources` / `destinations` (and a TrafficLog's `conf`) at the top of a
//!   TrafficPermission or TrafficLog become its one rule.
//!
//! What cannot be said in the reference's model (an application listening
//! elsewhere than 127.0.0.1) is refused with the field and the reason.

use super::{Cause, ResourceType};
use serde_json::{Map, Value, json};

/// Today's tag names and the reference's.
const TAGS: [(&str, &str); 2] = [
    ("kuma.io/service", "service"),
    ("kuma.io/protocol", "protocol"),
];

/// The reference's name of a tag today's Kuma may name otherwise
/// (`kuma.io/service` is `service`); other tags keep theirs.
pub fn reference_tag(key: &str) -> &str {
    TAGS.iter()
        .find(|(today, _)| *today == key)
        .map_or(key, |(_, reference)| reference)
}

/// Translates `fields` (the kind's own, without type, name and mesh) in
/// place; what cannot be translated goes to `causes`.
pub fn translate(kind: ResourceType, fields: &mut Map<String, Value>, causes: &mut Vec<Cause>) {
    match kind {
        ResourceType::Dataplane => dataplane(fields, causes),
        ResourceType::TrafficPermission => {
            top_level_rule(fields, &["sources", "destinations"], causes);
            rule_selectors(fields, causes);
        }
        ResourceType::TrafficLog => {
            top_level_rule(fields, &["sources", "destinations", "conf"], causes);
            rule_selectors(fields, causes);
        }
        ResourceType::TrafficRoute => traffic_route(fields, causes),
        ResourceType::ProxyTemplate | ResourceType::TrafficTrace => {
            selectors(fields.get_mut("selectors"), "selectors", causes)
        }
        _ => {}
    }
}

fn tags(tags: Option<&mut Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(Value::Object(tags)) = tags else {
        return;
    };
    for (today, reference) in TAGS {
        let Some(value) = tags.remove(today) else {
            continue;
        };
        match tags.get(reference) {
            Some(existing) if *existing != value => causes.push(Cause::new(
                format!("{path}.{today}"),
                format!("says {value} but \"{reference}\" says {existing}: they are the same tag, give one"),
            )),
            _ => {
                tags.insert(reference.to_string(), value);
            }
        }
    }
}

fn selectors(list: Option<&mut Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(Value::Array(list)) = list else {
        return;
    };
    for (i, selector) in list.iter_mut().enumerate() {
        tags(
            selector.get_mut("match"),
            &format!("{path}[{i}].match"),
            causes,
        );
    }
}

fn rule_selectors(fields: &mut Map<String, Value>, causes: &mut Vec<Cause>) {
    let Some(Value::Array(rules)) = fields.get_mut("rules") else {
        return;
    };
    for (i, rule) in rules.iter_mut().enumerate() {
        for side in ["sources", "destinations"] {
            selectors(rule.get_mut(side), &format!("rules[{i}].{side}"), causes);
        }
    }
}

/// A TrafficRoute's selectors and split. Kuma 1.x writes the split as
/// `conf: {split: [...]}`, or `conf: {destination: {...}}` for all traffic
/// to one subset; both become the reference's list.
fn traffic_route(fields: &mut Map<String, Value>, causes: &mut Vec<Cause>) {
    for side in ["sources", "destinations"] {
        selectors(fields.get_mut(side), side, causes);
    }
    if let Some(Value::Object(conf)) = fields.get_mut("conf") {
        let list = match (conf.remove("split"), conf.remove("destination")) {
            (Some(split), None) => split,
            (None, Some(destination)) => json!([{"weight": 1, "destination": destination}]),
            (Some(_), Some(_)) => {
                causes.push(Cause::new(
                    "conf",
                    "has both \"split\" and \"destination\": give one",
                ));
                return;
            }
            (None, None) => return,
        };
        for key in conf.keys() {
            causes.push(Cause::new(
                format!("conf.{key}"),
                "is not supported; a TrafficRoute here splits traffic by weight only",
            ));
        }
        fields.insert("conf".into(), list);
    }
    if let Some(Value::Array(parts)) = fields.get_mut("conf") {
        for (i, part) in parts.iter_mut().enumerate() {
            tags(
                part.get_mut("destination"),
                &format!("conf[{i}].destination"),
                causes,
            );
        }
    }
}

/// Today's one-rule shape (`sources`, `destinations` at the top) becomes
/// `rules: [{...}]`; both shapes in one document is an error at each field
/// of the newer one.
fn top_level_rule(fields: &mut Map<String, Value>, keys: &[&str], causes: &mut Vec<Cause>) {
    let present: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| fields.contains_key(*k))
        .collect();
    if present.is_empty() {
        return;
    }
    if fields.contains_key("rules") {
        for key in present {
            causes.push(Cause::new(
                key,
                "is today's Kuma shape, and this document also has \"rules\" (the reference's): use one of them",
            ));
        }
        return;
    }
    let rule: Map<String, Value> = present
        .into_iter()
        .filter_map(|k| fields.remove(k).map(|v| (k.to_string(), v)))
        .collect();
    fields.insert("rules".into(), json!([rule]));
}

fn port(value: Option<Value>, path: &str, causes: &mut Vec<Cause>) -> Option<u64> {
    match value {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => {
            n.as_u64()
        }
        Some(other) => {
            causes.push(Cause::new(
                path,
                format!("must be a port from 1 to 65535, got {other}"),
            ));
            None
        }
        None => None,
    }
}

fn string(value: Option<Value>, path: &str, causes: &mut Vec<Cause>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            causes.push(Cause::new(path, format!("must be a string, got {other}")));
            None
        }
        None => None,
    }
}

fn dataplane(fields: &mut Map<String, Value>, causes: &mut Vec<Cause>) {
    let Some(Value::Object(networking)) = fields.get_mut("networking") else {
        return;
    };
    // A gateway keeps its address: it has no inbound to put it in.
    if networking.contains_key("gateway") {
        return;
    }
    let address = string(networking.remove("address"), "networking.address", causes);
    let mut address_used = false;
    if let Some(Value::Array(inbound)) = networking.get_mut("inbound") {
        for (i, entry) in inbound.iter_mut().enumerate() {
            let Value::Object(entry) = entry else {
                continue;
            };
            let path = format!("networking.inbound[{i}]");
            tags(entry.get_mut("tags"), &format!("{path}.tags"), causes);
            let today = ["port", "servicePort", "address", "serviceAddress"]
                .iter()
                .any(|k| entry.contains_key(*k));
            if !today {
                continue;
            }
            if entry.contains_key("interface") {
                causes.push(Cause::new(
                    &path,
                    "has both \"interface\" (the reference's) and \"port\"/\"servicePort\" (today's Kuma): use one of them",
                ));
                continue;
            }
            let own = string(entry.remove("address"), &format!("{path}.address"), causes);
            let Some(dataplane_port) = port(entry.remove("port"), &format!("{path}.port"), causes)
            else {
                causes.push(Cause::new(format!("{path}.port"), "must be set"));
                continue;
            };
            let service_port = port(
                entry.remove("servicePort"),
                &format!("{path}.servicePort"),
                causes,
            )
            .unwrap_or(dataplane_port);
            if let Some(service_address) = string(
                entry.remove("serviceAddress"),
                &format!("{path}.serviceAddress"),
                causes,
            ) && service_address != "127.0.0.1"
            {
                causes.push(Cause::new(
                    format!("{path}.serviceAddress"),
                    format!("\"{service_address}\" is not supported: the application is reached on 127.0.0.1 (the reference's interface format has no other)"),
                ));
            }
            address_used |= own.is_none();
            let Some(address) = own.or_else(|| address.clone()) else {
                causes.push(Cause::new(
                    "networking.address",
                    format!("must be set for {path}.port (or give {path}.address)"),
                ));
                continue;
            };
            entry.insert(
                "interface".into(),
                Value::String(format!("{address}:{dataplane_port}:{service_port}")),
            );
        }
    }
    if let Some(Value::Array(outbound)) = networking.get_mut("outbound") {
        for (i, entry) in outbound.iter_mut().enumerate() {
            let Value::Object(entry) = entry else {
                continue;
            };
            let path = format!("networking.outbound[{i}]");
            if !entry.contains_key("port") && !entry.contains_key("tags") {
                continue;
            }
            if entry.contains_key("interface") {
                causes.push(Cause::new(
                    &path,
                    "has both \"interface\" (the reference's) and \"port\" (today's Kuma): use one of them",
                ));
                continue;
            }
            tags(entry.get_mut("tags"), &format!("{path}.tags"), causes);
            let service = entry.remove("tags").and_then(|t| t.get("service").cloned());
            if let Some(service) = service {
                entry.entry("service").or_insert(service);
            }
            let own = string(entry.remove("address"), &format!("{path}.address"), causes);
            let Some(port) = port(entry.remove("port"), &format!("{path}.port"), causes) else {
                causes.push(Cause::new(format!("{path}.port"), "must be set"));
                continue;
            };
            entry.insert(
                "interface".into(),
                Value::String(format!("{}:{port}", own.unwrap_or_default())),
            );
        }
    }
    if address.is_some() && !address_used {
        causes.push(Cause::new(
            "networking.address",
            "is today's Kuma's, for inbounds given with \"port\"; none is: put the address in each inbound's interface, or drop it",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(kind: ResourceType, fields: Value) -> (Value, Vec<String>) {
        let Value::Object(mut fields) = fields else {
            panic!("an object")
        };
        let mut causes = Vec::new();
        translate(kind, &mut fields, &mut causes);
        (
            Value::Object(fields),
            causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect(),
        )
    }

    #[test]
    fn todays_dataplane_becomes_the_references() {
        let (fields, causes) = translated(
            ResourceType::Dataplane,
            json!({"networking": {"address": "192.168.0.1",
                "inbound": [{"port": 11011, "servicePort": 11012,
                             "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http", "version": "2"}}],
                "outbound": [{"port": 33033, "tags": {"kuma.io/service": "database"}}]}}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(
            fields,
            json!({"networking": {
                "inbound": [{"interface": "192.168.0.1:11011:11012",
                             "tags": {"service": "backend", "protocol": "http", "version": "2"}}],
                "outbound": [{"service": "database", "interface": ":33033"}]}})
        );
    }

    #[test]
    fn todays_permission_becomes_one_rule() {
        let (fields, causes) = translated(
            ResourceType::TrafficPermission,
            json!({"sources": [{"match": {"kuma.io/service": "web"}}],
                   "destinations": [{"match": {"kuma.io/service": "backend"}}]}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(
            fields,
            json!({"rules": [{"sources": [{"match": {"service": "web"}}],
                              "destinations": [{"match": {"service": "backend"}}]}]})
        );
    }

    #[test]
    fn todays_traffic_route_split_becomes_the_list() {
        let (fields, causes) = translated(
            ResourceType::TrafficRoute,
            json!({"sources": [{"match": {"kuma.io/service": "web"}}],
                   "destinations": [{"match": {"kuma.io/service": "backend"}}],
                   "conf": {"split": [{"weight": 90, "destination": {"kuma.io/service": "backend", "version": "1"}}]}}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(
            fields,
            json!({"sources": [{"match": {"service": "web"}}],
                   "destinations": [{"match": {"service": "backend"}}],
                   "conf": [{"weight": 90, "destination": {"service": "backend", "version": "1"}}]})
        );
        let (_, causes) = translated(
            ResourceType::TrafficRoute,
            json!({"conf": {"destination": {"kuma.io/service": "a"}, "loadBalancer": {}}}),
        );
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].starts_with("conf.loadBalancer: "), "{causes:?}");
    }

    #[test]
    fn mixed_up_documents_name_every_wrong_field() {
        let (_, causes) = translated(
            ResourceType::TrafficLog,
            json!({"rules": [], "sources": [], "destinations": [], "conf": {}}),
        );
        assert_eq!(causes.len(), 3, "{causes:?}");
        let (_, causes) = translated(
            ResourceType::Dataplane,
            json!({"networking": {"inbound": [
                {"port": 1, "tags": {"service": "a", "kuma.io/service": "b"}},
                {"interface": "127.0.0.1:1:2", "port": 3},
                {"port": 4, "serviceAddress": "10.0.0.1"}]}}),
        );
        let text = causes.join("\n");
        for expected in [
            "networking.inbound[0].tags.kuma.io/service: says \"b\" but \"service\" says \"a\"",
            "networking.address: must be set for networking.inbound[0].port",
            "networking.inbound[1]: has both \"interface\"",
            "networking.inbound[2].serviceAddress: \"10.0.0.1\" is not supported",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
    }
}
