//! `kumactl get` and `kumactl delete`.

use super::client::ApiClient;
use super::output::{self, Format};
use super::{KumactlError, Session};
use crate::resources::ResourceType;
use serde_json::{Value, json};

fn kind(word: &str) -> Result<ResourceType, KumactlError> {
    ResourceType::from_cli_word(word).ok_or_else(|| {
        KumactlError::Invalid(format!(
            "unknown resource type \"{word}\"; expected one of meshes, dataplanes, traffic-permissions, traffic-logs, proxytemplates"
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
        _ => vec![str_field(item, "mesh").to_string(), name],
    }
}

fn headers(kind: ResourceType) -> &'static [&'static str] {
    match kind {
        ResourceType::Mesh => &["NAME", "mTLS", "CA"],
        ResourceType::Dataplane => &["MESH", "NAME", "TAGS"],
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
