//! `kumactl apply -f FILE|-`: every document of the file is parsed and
//! validated first, with the same code the control plane uses, so a bad
//! file changes nothing; then each is `PUT`.

use super::KumactlError;
use super::Session;
use super::client::ApiClient;
use crate::resources::{Identity, Resource};
use serde::Deserialize;
use std::io::Read;

/// The resources of a YAML (or JSON) stream, or the first problem found,
/// named by its document number.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Resource>, KumactlError> {
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = match serde_json::Value::deserialize(document) {
            Ok(serde_json::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                // A syntax error leaves the parser where it cannot find the
                // next document; the stream ends here.
                problems.push(format!("{source}: document {}: not valid YAML: {e}", i + 1));
                break;
            }
        };
        let label = describe(&value);
        match Resource::from_json(value, Identity::FromDocument) {
            Ok(r) => resources.push(r),
            Err(e) => problems.push(format!("{source}: document {} ({label}): {e}", i + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(KumactlError::Invalid(problems.join("; ")));
    }
    if resources.is_empty() {
        return Err(KumactlError::Invalid(format!(
            "{source}: no resources found"
        )));
    }
    Ok(resources)
}

fn describe(value: &serde_json::Value) -> String {
    let field = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    format!("{} \"{}\"", field("type"), field("name"))
}

pub async fn run(session: &Session, file: &str, dry_run: bool) -> Result<(), KumactlError> {
    let (source, text) = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(KumactlError::file("standard input"))?;
        ("standard input".to_string(), text)
    } else {
        let text = std::fs::read_to_string(file).map_err(KumactlError::file(file))?;
        (file.to_string(), text)
    };
    let resources = parse_documents(&source, &text)?;
    if dry_run {
        for r in &resources {
            println!("{} is valid (dry run, nothing applied)", r.key);
        }
        return Ok(());
    }
    let client = session.client()?;
    for r in &resources {
        let path = ApiClient::path(r.key.kind, &r.key.mesh, &r.key.name);
        let created = client.put(&path, &r.to_json()).await.map_err(|e| match e {
            KumactlError::Refused(why) => {
                KumactlError::Refused(format!("applying {}: {why}", r.key))
            }
            other => other,
        })?;
        println!("{} {}", r.key, if created { "created" } else { "updated" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_documents() {
        let text = "type: Mesh\nname: a\n---\ntype: Dataplane\nmesh: a\nname: d\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:1:2\n    tags:\n      service: s\n";
        let rs = parse_documents("f.yaml", text).unwrap();
        assert_eq!(rs.len(), 2);
    }

    #[test]
    fn stops_at_a_yaml_syntax_error() {
        let err = parse_documents("f.yaml", "type: Mesh\nname: [oops\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("document 1: not valid YAML"), "{err}");
    }

    #[test]
    fn names_the_bad_document() {
        let text = "type: Mesh\nname: a\n---\ntype: Dataplane\nmesh: a\nname: d\nnetworking: {}\n";
        let err = parse_documents("f.yaml", text).unwrap_err().to_string();
        assert!(
            err.starts_with("f.yaml: document 2 (Dataplane \"d\"): networking.inbound"),
            "{err}"
        );
    }
}
