//! `kumactl get` and `kumactl delete`.

use super::client::ApiClient;
use super::output::{self, Format};
use super::{KumactlError, Session};
use crate::resources::ResourceType;
use serde_json::{Value, json};

fn kind(word: &str) -> Result<ResourceType, KumactlError> {
    ResourceType::from_cli_word(word).ok_or_else(|| {
        KumactlError::Invalid(format!(
            "unknown resource type \"{word}\"; expected one of {}",
            ResourceType::ALL
                .into_iter()
                .filter(|k| k.is_user_managed())
                .filter_map(ResourceType::collection)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn row(kind: ResourceType, item: &Value) -> Vec<String> {
    let name = str_field(item, "name").to_string();
    match kind {
        ResourceType::Mesh => {
            let mtls = item.get("mtls");
            let enabled = mtls
                .and_then(|m| m.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let ca = mtls
                .and_then(|m| m.get("ca"))
                .and_then(Value::as_object)
                .and_then(|ca| ca.keys().next().cloned())
                .unwrap_or_else(|| "-".into());
            vec![name, if enabled { "on" } else { "off" }.into(), ca]
        }
        ResourceType::Dataplane => vec![
            str_field(item, "mesh").to_string(),
            name,
            output::dataplane_tags(item.get("networking")),
        ],
        ResourceType::AccessRoleBinding => {
            let list = |key: &str, f: &dyn Fn(&Value) -> String| {
                item.get(key)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(f).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            };
            vec![
                name,
                list("subjects", &|s| {
                    format!("{}:{}", str_field(s, "type"), str_field(s, "name"))
                }),
                list("roles", &|r| r.as_str().unwrap_or("").to_string()),
            ]
        }
        ResourceType::AccessRole => {
            let rules = item
                .get("rules")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            vec![name, rules.to_string()]
        }
        kind if kind.is_target_ref_policy() => {
            // An omitted top-level targetRef is the whole mesh.
            let target = item.pointer("/spec/targetRef");
            let target_kind = target.map_or("Mesh", |t| str_field(t, "kind"));
            let target_name = target.map(|t| str_field(t, "name")).unwrap_or("");
            vec![
                str_field(item, "mesh").to_string(),
                name,
                target_kind.to_string(),
                if target_name.is_empty() {
                    "-"
                } else {
                    target_name
                }
                .to_string(),
            ]
        }
        _ => vec![str_field(item, "mesh").to_string(), name],
    }
}

fn headers(kind: ResourceType) -> &'static [&'static str] {
    match kind {
        ResourceType::Mesh => &["NAME", "mTLS", "CA"],
        ResourceType::Dataplane => &["MESH", "NAME", "TAGS"],
        ResourceType::AccessRole => &["NAME", "RULES"],
        ResourceType::AccessRoleBinding => &["NAME", "SUBJECTS", "ROLES"],
        kind if kind.is_target_ref_policy() => {
            &["MESH", "NAME", "TARGETREF KIND", "TARGETREF NAME"]
        }
        _ => &["MESH", "NAME"],
    }
}

pub async fn get(
    session: &Session,
    word: &str,
    name: Option<&str>,
    format: Format,
) -> Result<(), KumactlError> {
    let kind = kind(word)?;
    let client = session.client()?;
    let items = match name {
        Some(name) => vec![
            client
                .get(&ApiClient::path(kind, &session.mesh, name))
                .await?,
        ],
        None => {
            client
                .get_all(&ApiClient::path(kind, &session.mesh, ""))
                .await?
        }
    };
    let text = match (format, name) {
        (Format::Table, _) => {
            let rows: Vec<Vec<String>> = items.iter().map(|i| row(kind, i)).collect();
            output::table(headers(kind), &rows)
        }
        (_, Some(_)) => output::document(&items[0], format)?,
        (_, None) => output::document(&json!({ "items": items }), format)?,
    };
    print!("{text}");
    Ok(())
}

pub async fn delete(session: &Session, word: &str, name: &str) -> Result<(), KumactlError> {
    let kind = kind(word)?;
    session
        .client()?
        .delete(&ApiClient::path(kind, &session.mesh, name))
        .await?;
    println!("deleted {kind} \"{name}\"");
    Ok(())
}
