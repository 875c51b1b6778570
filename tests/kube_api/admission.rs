//! Mutating admission, as the API server does it on create: every
//! `MutatingWebhookConfiguration` stored in the fixture is read, each
//! webhook whose rules, `namespaceSelector` and `objectSelector` match is
//! called over HTTPS (reached through its Service's ready endpoints, or its
//! `url`), the server verified with the webhook's `caBundle` under the name
//! `{service}.{namespace}.svc`, and the JSON patch it answers applied. A
//! webhook that cannot be called, or answers nonsense, fails the request or
//! is skipped as its `failurePolicy` (default `Fail`) says; one that denies
//! fails it with its message.

use super::{Shared, Target, status};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// Runs `object` (about to be created at `target`) through the matching
/// webhooks; the object to store, or the answer to give instead.
pub async fn mutate(
    shared: &Shared,
    target: &Target,
    mut object: Value,
) -> Result<Value, Response> {
    let (hooks, namespace_labels) = {
        let store = shared.lock();
        let hooks: Vec<Value> = store
            .objects
            .iter()
            .filter(|((c, _, _), _)| {
                c == "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
            })
            .flat_map(|(_, config)| config["webhooks"].as_array().cloned().unwrap_or_default())
            .collect();
        let namespace_labels = target
            .namespace
            .as_ref()
            .and_then(|ns| {
                store
                    .objects
                    .get(&("v1/namespaces".to_string(), String::new(), ns.clone()))
            })
            .map(|ns| ns["metadata"]["labels"].clone())
            .unwrap_or(Value::Null);
        (hooks, namespace_labels)
    };
    for hook in hooks {
        if !applies(&hook, target, &object, &namespace_labels) {
            continue;
        }
        let name = hook["name"].as_str().unwrap_or("").to_string();
        match call(shared, &hook, target, &object).await {
            Ok(Verdict::Allowed(patch)) => {
                if let Some(patch) = patch
                    && let Err(e) = json_patch::patch(&mut object, &patch)
                {
                    return Err(status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        format!(
                            "Internal error occurred: failed to apply the patch of webhook \"{name}\": {e}"
                        ),
                    ));
                }
            }
            Ok(Verdict::Denied { code, message }) => {
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                return Err(status(
                    code,
                    code.canonical_reason().unwrap_or("BadRequest"),
                    format!("admission webhook \"{name}\" denied the request: {message}"),
                ));
            }
            Err(e) if hook["failurePolicy"] == "Ignore" => {
                eprintln!("kube_api: webhook \"{name}\" failed and is ignored: {e}");
            }
            Err(e) => {
                return Err(status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("Internal error occurred: failed calling webhook \"{name}\": {e}"),
                ));
            }
        }
    }
    Ok(object)
}

fn contains(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == wanted))
}

/// Whether a webhook's rules and selectors take this create.
fn applies(hook: &Value, target: &Target, object: &Value, namespace_labels: &Value) -> bool {
    let (group, version) = target.gv.split_once('/').unwrap_or(("", &target.gv));
    let rule_matches = hook["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|rule| {
            let scope = rule["scope"].as_str().unwrap_or("*");
            contains(&rule["operations"], "CREATE")
                && contains(&rule["apiGroups"], group)
                && contains(&rule["apiVersions"], version)
                && contains(&rule["resources"], &target.plural)
                && (scope == "*" || (scope == "Namespaced") == target.namespaced)
        })
    });
    // A cluster-scoped object meets the namespace selector only when it is
    // a Namespace, with its own labels.
    let namespace_matches = if target.namespaced {
        selects(&hook["namespaceSelector"], namespace_labels)
    } else if target.kind == "Namespace" {
        selects(&hook["namespaceSelector"], &object["metadata"]["labels"])
    } else {
        true
    };
    rule_matches
        && namespace_matches
        && selects(&hook["objectSelector"], &object["metadata"]["labels"])
}

/// A label selector (`matchLabels`, `matchExpressions`) against labels;
/// no selector, or an empty one, selects everything.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    let match_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let expressions = selector["matchExpressions"].as_array().is_none_or(|all| {
        all.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        })
    });
    match_labels && expressions
}

enum Verdict {
    Allowed(Option<json_patch::Patch>),
    Denied { code: u16, message: String },
}

/// Where a webhook is reached: its URL, and (for a Service) the host name
/// its certificate must carry and the endpoint that answers for it.
fn locate(shared: &Shared, hook: &Value) -> Result<(String, Option<(String, SocketAddr)>), String> {
    let config = &hook["clientConfig"];
    if let Some(url) = config["url"].as_str() {
        return Ok((url.to_string(), None));
    }
    let service = &config["service"];
    let (name, namespace) = (
        service["name"].as_str().unwrap_or(""),
        service["namespace"].as_str().unwrap_or(""),
    );
    let port = service["port"].as_u64().unwrap_or(443);
    let path = service["path"].as_str().unwrap_or("/");
    let host = format!("{name}.{namespace}.svc");
    let url = format!("https://{host}:{port}{path}");
    let store = shared.lock();
    let svc = store
        .objects
        .get(&(
            "v1/services".to_string(),
            namespace.to_string(),
            name.to_string(),
        ))
        .ok_or_else(|| format!("Post \"{url}\": service \"{name}\" not found"))?;
    let port_spec = svc["spec"]["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["port"].as_u64() == Some(port)))
        .ok_or_else(|| format!("Post \"{url}\": service \"{name}\" has no port {port}"))?;
    let target_port = &port_spec["targetPort"];
    let endpoint = store
        .objects
        .iter()
        .filter(|((c, ns, _), _)| c == "v1/pods" && ns == namespace)
        .map(|(_, pod)| pod)
        .filter(|pod| {
            selects(
                &json!({"matchLabels": svc["spec"]["selector"]}),
                &pod["metadata"]["labels"],
            )
        })
        .filter(|pod| {
            pod["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .find_map(|pod| {
            let ip: std::net::IpAddr = pod["status"]["podIP"].as_str()?.parse().ok()?;
            let number = match target_port {
                Value::Number(n) => n.as_u64()?,
                Value::String(port_name) => pod["spec"]["containers"]
                    .as_array()?
                    .iter()
                    .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                    .find(|p| p["name"] == port_name.as_str())?["containerPort"]
                    .as_u64()?,
                _ => port,
            };
            Some(SocketAddr::new(ip, u16::try_from(number).ok()?))
        })
        .ok_or_else(|| format!("Post \"{url}\": no endpoints available for service \"{name}\""))?;
    Ok((url, Some((host, endpoint))))
}

async fn call(
    shared: &Shared,
    hook: &Value,
    target: &Target,
    object: &Value,
) -> Result<Verdict, String> {
    let (url, endpoint) = locate(shared, hook)?;
    let ca = hook["clientConfig"]["caBundle"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| format!("Post \"{url}\": the webhook has no caBundle to verify it with"))?;
    let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| format!("caBundle: {e}"))?;
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10));
    let mut client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(timeout);
    if let Some((host, address)) = &endpoint {
        client = client.resolve(host, *address);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let uid = uuid::Uuid::new_v4().to_string();
    let (group, version) = target.gv.split_once('/').unwrap_or(("", &target.gv));
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": target.kind},
            "resource": {"group": group, "version": version, "resource": target.plural},
            "requestKind": {"group": group, "version": version, "kind": target.kind},
            "requestResource": {"group": group, "version": version, "resource": target.plural},
            "name": object["metadata"]["name"],
            "namespace": target.namespace,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    });
    let answer = client
        .post(format!("{url}?timeout={}s", timeout.as_secs()))
        .json(&review)
        .send()
        .await
        .map_err(|e| format!("failed to call webhook: Post \"{url}\": {}", chain(&e)))?;
    let code = answer.status();
    let body: Value = answer
        .json()
        .await
        .map_err(|e| format!("received invalid webhook response: {e}"))?;
    if !code.is_success() {
        return Err(format!("webhook answered {code}: {body}"));
    }
    let response = &body["response"];
    if response["uid"] != uid.as_str() {
        return Err(format!(
            "expected response.uid=\"{uid}\", got {}",
            response["uid"]
        ));
    }
    if response["allowed"] != true {
        return Ok(Verdict::Denied {
            code: response["status"]["code"].as_u64().unwrap_or(400) as u16,
            message: response["status"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        });
    }
    let Some(patch) = response["patch"].as_str() else {
        return Ok(Verdict::Allowed(None));
    };
    if response["patchType"] != "JSONPatch" {
        return Err(format!("unsupported patchType {}", response["patchType"]));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| format!("the patch is not base64: {e}"))?;
    let patch = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the patch is not a JSON patch: {e}"))?;
    Ok(Verdict::Allowed(Some(patch)))
}

/// An error with its causes, as Go prints a wrapped error.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
