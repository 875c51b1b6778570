//! `kumactl inspect dataplanes`: dataplanes with their xDS status, as Kuma
//! shows them.

use super::output::{self, Format};
use super::{KumactlError, Session};
use crate::resources::DataplaneInsightSpec;
use chrono::Utc;
use serde_json::{Value, json};

fn field(overview: &Value, k: &str) -> String {
    overview
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn insight(overview: &Value) -> DataplaneInsightSpec {
    overview
        .get("dataplaneInsight")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn status_row(overview: &Value) -> Vec<String> {
    let field = |k: &str| field(overview, k);
    let insight = insight(overview);
    let now = Utc::now();
    let latest = insight.latest();
    let seconds_since = |t: Option<chrono::DateTime<Utc>>| t.map(|t| (now - t).num_seconds());
    let (updates, errors) = insight.subscriptions.iter().fold((0, 0), |(u, e), s| {
        (
            u + s.status.total.responses_sent,
            e + s.status.total.responses_rejected,
        )
    });
    vec![
        field("mesh"),
        field("name"),
        output::dataplane_tags(overview.get("dataplane").and_then(|d| d.get("networking"))),
        if insight.is_online() {
            "Online"
        } else {
            "Offline"
        }
        .into(),
        output::ago(seconds_since(latest.map(|s| s.connect_time))),
        output::ago(seconds_since(
            latest.and_then(|s| s.status.last_update_time),
        )),
        updates.to_string(),
        errors.to_string(),
    ]
}

pub async fn dataplanes(session: &Session, format: Format) -> Result<(), KumactlError> {
    let client = session.client()?;
    let items = client
        .get_all(&format!("/meshes/{}/dataplanes+insights", session.mesh))
        .await?;
    let text = match format {
        Format::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(status_row).collect();
            output::table(
                &[
                    "MESH",
                    "NAME",
                    "TAGS",
                    "STATUS",
                    "LAST CONNECTED AGO",
                    "LAST UPDATED AGO",
                    "TOTAL UPDATES",
                    "TOTAL ERRORS",
                ],
                &rows,
            )
        }
        _ => output::document(&json!({ "items": items }), format)?,
    };
    print!("{text}");
    if format == Format::Table {
        for overview in &items {
            let streams = insight(overview).connected_streams();
            if streams > 1 {
                println!(
                    "dataplane \"{}\" has {streams} connected kuma-dp streams: is a second kuma-dp running with its name? It is Online while any of them is",
                    field(overview, "name")
                );
            }
        }
    }
    // Kubernetes: pods that should be in the mesh and are not. A control
    // plane without the list (Universal) answers an empty one.
    if format == Format::Table
        && let Ok(outside) = client
            .get(&format!("/meshes/{}/pods-without-sidecar", session.mesh))
            .await
    {
        for pod in outside["items"].as_array().into_iter().flatten() {
            println!("{}", pod["reason"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}
