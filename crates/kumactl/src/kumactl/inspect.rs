//! `kumactl inspect dataplanes`: dataplanes with their xDS status, as Kuma
//! shows them.

use super::output::{self, Format};
use super::{KumactlError, Session};
use crate::resources::{ComponentVersion, DataplaneInsightSpec, SubscriptionVersion};
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
    let mtls = insight.mtls.as_ref();
    let version = |component: fn(&SubscriptionVersion) -> Option<&ComponentVersion>| {
        latest
            .and_then(|s| s.version.as_ref())
            .and_then(component)
            .map(|c| c.version.clone())
            .unwrap_or_else(|| "unknown".into())
    };
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
        output::ago(seconds_since(
            mtls.and_then(|m| m.last_certificate_regeneration),
        )),
        mtls.and_then(|m| m.certificate_expiration_time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into()),
        mtls.map(|m| m.certificate_regenerations.to_string())
            .unwrap_or_else(|| "0".into()),
        version(|v| v.kuma_dp.as_ref()),
        version(|v| v.envoy.as_ref()),
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
                    "CERT REGENERATED AGO",
                    "CERT EXPIRATION",
                    "CERT REGENERATIONS",
                    "KUMA-DP VERSION",
                    "ENVOY VERSION",
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
            if let Some(rejected) = insight(overview)
                .latest()
                .and_then(|s| s.status.last_nack_message.as_ref())
            {
                println!(
                    "dataplane \"{}\": Envoy rejected its configuration and keeps the last one it accepted: {rejected}",
                    field(overview, "name")
                );
            }
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

/// `kumactl inspect dataplane NAME`: the policies that shaped its proxy
/// (from `.../policies`), or its configuration (`.../xds`, always JSON
/// unless YAML is asked for).
pub async fn dataplane(
    session: &Session,
    name: &str,
    config_dump: bool,
    format: Format,
) -> Result<(), KumactlError> {
    let client = session.client()?;
    let base = format!("/meshes/{}/dataplanes/{name}", session.mesh);
    if config_dump {
        let dump = client.get(&format!("{base}/xds")).await?;
        let format = if format == Format::Yaml {
            Format::Yaml
        } else {
            Format::Json
        };
        print!("{}", output::document(&dump, format)?);
        return Ok(());
    }
    let explained = client.get(&format!("{base}/policies")).await?;
    match format {
        Format::Table => print!("{}", policies_text(&explained)),
        _ => print!("{}", output::document(&explained, format)?),
    }
    Ok(())
}

/// `service=web,version=2` for a selector `{"match": {...}}`.
fn selector_text(selector: &Value) -> String {
    selector["match"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The `targetRef` policies of one kind that apply, least specific first,
/// each with its items (`from` or `to`, else its `rules`) as written.
fn target_ref_policies(kind: &str, policies: &Value, items: &str) -> String {
    let mut out = String::new();
    for p in policies.as_array().into_iter().flatten() {
        let items = if p[items].as_array().is_some_and(|i| !i.is_empty()) {
            items
        } else {
            "rules"
        };
        out += &format!(
            "  {kind} {} (targetRef {}): {items} {}\n",
            p["name"].as_str().unwrap_or_default(),
            p["targetRef"]["kind"].as_str().unwrap_or_default(),
            p[items]
        );
    }
    out
}

/// A rule of MeshTrafficPermission's `rules` form: `deny spiffe://a/b,
/// allow spiffe://a/*` (a prefix ends in `*`).
fn identities_text(conf: &Value) -> String {
    let mut parts = Vec::new();
    for (field, word) in [
        ("deny", "deny"),
        ("allowWithShadowDeny", "allow with shadow deny"),
        ("allow", "allow"),
    ] {
        for id in conf[field].as_array().into_iter().flatten() {
            let id = &id["spiffeID"];
            let star = if id["type"] == "Prefix" { "*" } else { "" };
            parts.push(format!(
                "{word} {}{star}",
                id["value"].as_str().unwrap_or_default()
            ));
        }
    }
    parts.join(", ")
}

/// A subset of peers: `service=web, version!=2`, or `every peer`.
fn subset_text(subset: &Value) -> String {
    let tags: Vec<String> = subset
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let not = t["not"].as_bool().unwrap_or(false);
            format!(
                "{}{}{}",
                t["key"].as_str().unwrap_or_default(),
                if not { "!=" } else { "=" },
                t["value"].as_str().unwrap_or_default()
            )
        })
        .collect();
    if tags.is_empty() {
        "every peer".into()
    } else {
        tags.join(", ")
    }
}

/// A split: `backend 90, backend{version=2} 10`.
fn split_text(split: &Value) -> String {
    let parts: Vec<String> = split
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {}",
                s["cluster"].as_str().unwrap_or_default(),
                s["weight"]
            )
        })
        .collect();
    parts.join(", ")
}

fn names(list: &Value) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The explanation as lines a person reads: each policy by kind and name,
/// and the selectors that matched.
fn policies_text(explained: &Value) -> String {
    let mut out = format!(
        "Dataplane \"{}\" in mesh \"{}\"\n",
        explained["dataplane"].as_str().unwrap_or_default(),
        explained["mesh"].as_str().unwrap_or_default()
    );
    let template = &explained["ProxyTemplate"];
    out += &match template["name"].as_str() {
        Some(name) => format!(
            "  ProxyTemplate {name} (selector {}), imports: {}\n",
            selector_text(&template["selector"]),
            template["imports"]
                .as_array()
                .map(|i| i
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "nothing".into())
        ),
        None => "  ProxyTemplate: none, the default-proxy profile\n".into(),
    };
    let trace = &explained["TrafficTrace"];
    out += &match trace["name"].as_str() {
        Some(name) => format!(
            "  TrafficTrace {name} (selector {}) -> backend {}\n",
            selector_text(&trace["selector"]),
            trace["backend"].as_str().unwrap_or_default()
        ),
        None => "  TrafficTrace: none, no spans are reported\n".into(),
    };
    for inbound in explained["inbound"].as_array().into_iter().flatten() {
        out += &format!(
            "inbound {}\n",
            inbound["interface"].as_str().unwrap_or_default()
        );
        let permissions = inbound["TrafficPermission"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let today = &inbound["MeshTrafficPermission"];
        if today.is_object() {
            out += &target_ref_policies("MeshTrafficPermission", &today["policies"], "from");
            for rule in today["rules"].as_array().into_iter().flatten() {
                out += &if rule["identities"].is_object() {
                    format!(
                        "    peers by SPIFFE id: {} (from {})\n",
                        identities_text(&rule["identities"]),
                        names(&rule["origins"])
                    )
                } else {
                    format!(
                        "    peers {} -> {} (from {})\n",
                        subset_text(&rule["subset"]),
                        rule["action"].as_str().unwrap_or("?"),
                        names(&rule["origins"])
                    )
                };
            }
            if today["rules"].as_array().is_none_or(Vec::is_empty) {
                out += "    no rule: no one may connect\n";
            }
        } else if permissions.is_empty() {
            out += "  TrafficPermission: none (with mTLS on, no one may connect)\n";
        }
        let tls = &inbound["MeshTLS"];
        if tls.is_object() {
            out += &target_ref_policies("MeshTLS", &tls["policies"], "from");
            out += &format!("    merged: {}\n", tls["merged"]);
        }
        for p in permissions {
            let sources: Vec<String> = p["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(selector_text)
                .collect();
            out += &format!(
                "  TrafficPermission {} (destination {}) admits {}\n",
                p["name"].as_str().unwrap_or_default(),
                selector_text(&p["destination"]),
                sources.join(" or ")
            );
        }
    }
    for outbound in explained["outbound"].as_array().into_iter().flatten() {
        out += &format!(
            "outbound {} -> {}\n",
            outbound["interface"].as_str().unwrap_or_default(),
            outbound["service"].as_str().unwrap_or_default()
        );
        let matched = |p: &Value| {
            format!(
                "{} (source {}, destination {})",
                p["name"].as_str().unwrap_or_default(),
                selector_text(&p["source"]),
                selector_text(&p["destination"])
            )
        };
        let log = &outbound["TrafficLog"];
        out += &if log.is_null() {
            "  TrafficLog: none\n".to_string()
        } else {
            format!(
                "  TrafficLog {} -> backend {}\n",
                matched(log),
                log["backend"]
                    .as_str()
                    .unwrap_or("(none: the mesh has no such backend)")
            )
        };
        let routes = &outbound["routes"];
        if routes.is_object() {
            for p in routes["policies"].as_array().into_iter().flatten() {
                out += &format!(
                    "  {} {}: {}\n",
                    p["kind"].as_str().unwrap_or_default(),
                    p["name"].as_str().unwrap_or_default(),
                    p["to"]
                );
            }
            out += &format!("    merged: splits {}", split_text(&routes["split"]));
            let rules = routes["httpRules"].as_array().map_or(0, Vec::len);
            out += &if rules > 0 {
                format!(", after {rules} HTTP rules: {}\n", routes["httpRules"])
            } else {
                "\n".to_string()
            };
            continue;
        }
        let route = &outbound["TrafficRoute"];
        out += &if route.is_null() {
            "  TrafficRoute: none, all to the service\n".to_string()
        } else {
            format!(
                "  TrafficRoute {} splits {}\n",
                matched(route),
                split_text(&route["split"])
            )
        };
    }
    out
}

/// Prints `rows` as a table under `headers`, or as `{items: [...]}` with
/// each row an object keyed by its header.
fn print_rows(headers: &[&str], rows: &[Vec<String>], format: Format) -> Result<(), KumactlError> {
    let text = match format {
        Format::Table => output::table(headers, rows),
        _ => {
            let items: Vec<Value> = rows
                .iter()
                .map(|row| {
                    headers
                        .iter()
                        .zip(row)
                        .map(|(h, cell)| (h.to_lowercase(), Value::from(cell.as_str())))
                        .collect::<serde_json::Map<_, _>>()
                        .into()
                })
                .collect();
            output::document(&json!({ "items": items }), format)?
        }
    };
    print!("{text}");
    Ok(())
}

/// (online, total) of dataplane overviews.
fn online_of(overviews: &[&Value]) -> (usize, usize) {
    let online = overviews.iter().filter(|o| insight(o).is_online()).count();
    (online, overviews.len())
}

/// `kumactl inspect control-plane-ca`: the control plane's CA as PEM,
/// ready for a file.
pub async fn control_plane_ca(session: &Session) -> Result<(), KumactlError> {
    let answer = session.client()?.get("/control-plane/ca").await?;
    print!("{}", answer["caCert"].as_str().unwrap_or_default());
    Ok(())
}

/// `kumactl inspect meshes`: each mesh with what is on in it and its
/// dataplanes online / total.
pub async fn meshes(session: &Session, format: Format) -> Result<(), KumactlError> {
    let client = session.client()?;
    let mut rows = Vec::new();
    for mesh in client.get_all("/meshes").await? {
        let name = field(&mesh, "name");
        let overviews = client
            .get_all(&format!("/meshes/{name}/dataplanes+insights"))
            .await?;
        let (online, total) = online_of(&overviews.iter().collect::<Vec<_>>());
        let mtls = if mesh["mtls"]["enabled"] == true {
            "builtin"
        } else {
            "off"
        };
        let logging: Vec<&str> = mesh["logging"]["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["name"].as_str())
            .collect();
        rows.push(vec![
            name,
            mtls.to_string(),
            if logging.is_empty() {
                "off".to_string()
            } else {
                logging.join(",")
            },
            format!("{online}/{total}"),
        ]);
    }
    print_rows(&["NAME", "MTLS", "LOGGING", "DATAPLANES"], &rows, format)
}

/// `kumactl inspect services`: the services of the mesh (its dataplanes'
/// inbound `service` tags), each with its dataplanes online / total.
pub async fn services(session: &Session, format: Format) -> Result<(), KumactlError> {
    let client = session.client()?;
    let overviews = client
        .get_all(&format!("/meshes/{}/dataplanes+insights", session.mesh))
        .await?;
    let mut by_service: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for overview in &overviews {
        let mut services: Vec<String> = overview["dataplane"]["networking"]["inbound"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["tags"]["service"].as_str().map(str::to_string))
            .collect();
        services.dedup();
        for service in services {
            by_service.entry(service).or_default().push(overview);
        }
    }
    let rows: Vec<Vec<String>> = by_service
        .iter()
        .map(|(service, overviews)| {
            let (online, total) = online_of(overviews);
            let status = match online {
                0 => "Offline",
                n if n == total => "Online",
                _ => "Partially degraded",
            };
            vec![
                service.clone(),
                status.to_string(),
                format!("{online}/{total}"),
            ]
        })
        .collect();
    print_rows(&["SERVICE", "STATUS", "DATAPLANES"], &rows, format)
}
