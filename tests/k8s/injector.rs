//! `kuma-injector` over real HTTPS with `AdmissionReview` bodies: which
//! pods get a sidecar, what the patch makes of them (a pod Kubernetes
//! accepts, a native sidecar or a classic one), bad and oversized reviews;
//! and the sidecar's own `kuma-dp` invocation, taken from the patched pod,
//! starting Envoy against a `kuma-cp` in Kubernetes mode.

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use base64::Engine;
use common::{bin, envoy_binary, eventually, free_port, kubernetes_validate};
use control_plane::ControlPlane;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A webhook to send reviews to; the `kuma-injector` process, if it is
/// one of its own.
struct InjectorProcess {
    child: Option<Child>,
    url: String,
    client: reqwest::blocking::Client,
}

impl Drop for InjectorProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh certificate for localhost in a directory of its own, as the
/// webhook's `certDir` wants it; answers the directory and the PEM.
fn webhook_certificate(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let certs = dir.join(format!("certs-{}", free_port()));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(certs.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    (certs, cert.cert.pem())
}

/// An HTTPS client trusting `ca_pem`.
fn webhook_client(ca_pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        // Each review on a connection of its own, as the API server's
        // requests may be: an answer that closes one (413) spoils no other.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `kuma-injector run` with a fresh certificate for localhost, against the
/// test cluster's API server as the chart's ServiceAccount (the chart's
/// injector Deployment runs as it).
fn injector(api: &ControlPlane, dir: &std::path::Path, env: &[(&str, &str)]) -> InjectorProcess {
    let (certs, ca_pem) = webhook_certificate(dir);
    let mut child = Command::new(bin("kuma-injector"))
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", api.kuma_cp_kubeconfig())
        .env("KUMA_LOGGING_FORMAT", "json")
        .env("KUMA_INJECTOR_WEBHOOK_SERVER_ADDRESS", "127.0.0.1")
        .env("KUMA_INJECTOR_WEBHOOK_SERVER_PORT", "0")
        .env("KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR", &certs)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kuma-injector runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut port = None;
    for line in lines.by_ref().map_while(Result::ok) {
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "listening" && v["server"] == "injector webhook" {
            port = v["address"]
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .map(|(_, p)| p.to_string());
            break;
        }
    }
    // Keep reading, so a full pipe never stalls the injector.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if std::env::var_os("KUMA_TEST_VERBOSE").is_some() {
                eprintln!("{line}");
            }
        }
    });
    let port = port.expect("the injector logs its port");
    InjectorProcess {
        child: Some(child),
        url: format!("https://localhost:{port}/inject-sidecar"),
        client: webhook_client(&ca_pem),
    }
}

fn review(pod: &Value, namespace: &str) -> Value {
    review_of(("", "v1", "Pod", "pods"), pod, namespace)
}

/// An `AdmissionReview` of creating `object` (group, version, kind and
/// resource as `of` says) in `namespace`.
fn review_of(of: (&str, &str, &str, &str), object: &Value, namespace: &str) -> Value {
    let (group, version, kind, resource) = of;
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "4b6f2a30-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object, "dryRun": false,
        }
    })
}

fn app_pod(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"serviceAccountName": "web",
                 "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]}
    })
}

/// Sends a review; answers the HTTP status and the body.
fn post(injector: &InjectorProcess, body: Vec<u8>) -> (u16, String) {
    let answer = injector
        .client
        .post(&injector.url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("the webhook answers");
    (answer.status().as_u16(), answer.text().unwrap_or_default())
}

/// The pod as the API server stores it after the webhook: the patch of the
/// answer applied (json-patch 4, as kube's admission types use), or the
/// pod unchanged when there is none.
fn admit(injector: &InjectorProcess, pod: &Value, namespace: &str) -> (Value, bool) {
    let (status, body) = post(injector, review(pod, namespace).to_string().into_bytes());
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{body}");
    assert_eq!(response["uid"], "4b6f2a30-0000-4000-8000-000000000001");
    let Some(patch) = response["patch"].as_str() else {
        return (pod.clone(), false);
    };
    assert_eq!(response["patchType"], "JSONPatch");
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap(),
    )
    .unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    (patched, true)
}

/// A namespace labelled for injection, and one not.
fn namespaces(api: &ControlPlane) -> (String, String) {
    (
        api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"})),
        api.namespace("other", json!({})),
    )
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn the_webhook_injects_only_where_asked_and_the_patched_pod_is_valid() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let (demo, other) = namespaces(api);
    let dir = tempfile::tempdir().unwrap();
    let native = injector(api, dir.path(), &[]);

    let (patched, changed) = admit(&native, &app_pod("web-1", &demo), &demo);
    assert!(changed, "a pod of a labelled namespace gets a sidecar");
    let annotations = &patched["metadata"]["annotations"];
    assert_eq!(annotations["kuma.io/sidecar-injected"], "true");
    assert_eq!(annotations["kuma.io/mesh"], "default");
    assert_eq!(annotations["kuma.io/transparent-proxying"], "enabled");
    assert_eq!(
        annotations["kuma.io/transparent-proxying-inbound-port"],
        "15006"
    );
    assert_eq!(
        annotations["kuma.io/transparent-proxying-outbound-port"],
        "15001"
    );
    // Native sidecar: an init container that keeps running, started (and
    // ready, by its startup probe) before the application.
    let sidecar = container(&patched, "initContainers", "kuma-sidecar");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert!(sidecar["startupProbe"]["exec"].is_object());
    assert_eq!(sidecar["securityContext"]["runAsUser"], 5678);
    assert_eq!(
        sidecar["resources"]["requests"],
        json!({"cpu": "50m", "memory": "64Mi"})
    );
    assert_eq!(
        sidecar["resources"]["limits"],
        json!({"cpu": "1000m", "memory": "512Mi"})
    );
    let init = container(&patched, "initContainers", "kuma-init");
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]})
    );
    assert_eq!(
        init["command"],
        json!(["kumactl", "install", "transparent-proxy"])
    );
    assert_eq!(patched["spec"]["initContainers"][0]["name"], "kuma-init");
    // Kubernetes' types parse it and its schemas accept it.
    let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(patched.clone()).unwrap();
    assert_eq!(typed.spec.unwrap().containers.len(), 1);
    let file = dir.path().join("patched-pod.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&patched).unwrap()).unwrap();
    kubernetes_validate(&[file], 1);

    // Reviewing the patched pod again changes nothing.
    assert_eq!(admit(&native, &patched, &demo), (patched.clone(), false));
    // Other namespaces, and pods that opt out, are left alone.
    assert!(!admit(&native, &app_pod("web-2", &other), &other).1);
    let mut opted_out = app_pod("web-3", &demo);
    opted_out["metadata"]["annotations"] = json!({"kuma.io/sidecar-injection": "disabled"});
    assert!(!admit(&native, &opted_out, &demo).1);

    // Classic sidecars where native ones are switched off.
    let classic = injector(
        api,
        dir.path(),
        &[("KUMA_INJECTOR_NATIVE_SIDECARS", "false")],
    );
    let (patched, _) = admit(&classic, &app_pod("web-4", &demo), &demo);
    let sidecar = container(&patched, "containers", "kuma-sidecar");
    assert_eq!(sidecar["args"], json!(["run"]));
    assert!(sidecar["restartPolicy"].is_null());
    assert!(container(&patched, "initContainers", "kuma-sidecar").is_null());

    // A malformed review gets a clear answer; an oversized one a 413.
    let (status, body) = post(
        &native,
        b"{\"kind\": \"AdmissionReview\", \"request\": 42}".to_vec(),
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("not an admission.k8s.io/v1 AdmissionReview"),
        "{body}"
    );
    let (status, body) = post(&native, b"not json".to_vec());
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&native, vec![b' '; 4 * 1024 * 1024]);
    assert_eq!(status, 413, "{body}");
    // Still serving after all that.
    assert!(admit(&native, &app_pod("web-5", &demo), &demo).1);
}

/// Resolves a container's environment as the kubelet would: downward-API
/// fields, then `$(VAR)` references to earlier variables.
fn container_env(sidecar: &Value, pod: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for var in sidecar["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => pod["metadata"]["name"].as_str().unwrap().to_string(),
            Some("metadata.namespace") => {
                pod["metadata"]["namespace"].as_str().unwrap().to_string()
            }
            Some(other) => panic!("unexpected field {other}"),
            None => {
                let mut value = var["value"].as_str().unwrap().to_string();
                for (k, v) in &out {
                    value = value.replace(&format!("$({k})"), v);
                }
                value
            }
        };
        out.push((name, value));
    }
    out
}

#[test]
fn the_injected_sidecar_starts_kuma_dp_and_envoy_against_the_control_plane() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let (demo, _) = namespaces(api);
    let web_token = api.service_account_token(&demo, "web");
    let cp = api.kuma_cp(&[]);
    let dir = tempfile::tempdir().unwrap();
    let admin_port = free_port().to_string();
    let injector = injector(
        api,
        dir.path(),
        &[
            (
                "KUMA_INJECTOR_CONTROL_PLANE_BOOTSTRAP_SERVER_URL",
                &cp.bootstrap,
            ),
            (
                "KUMA_INJECTOR_CONTROL_PLANE_CA_CERT_FILE",
                cp.ca_file.as_ref().unwrap().to_str().unwrap(),
            ),
            ("KUMA_INJECTOR_SIDECAR_CONTAINER_ADMIN_PORT", &admin_port),
            ("KUMA_INJECTOR_SIDECAR_CONTAINER_DRAIN_TIME_SECONDS", "2"),
        ],
    );
    let (mut pod, changed) = admit(&injector, &app_pod("web-1", &demo), &demo);
    assert!(changed);
    // The API server stores it; the kubelet runs it and reports it.
    pod["status"] = json!({"phase": "Running", "podIP": "127.0.0.1",
                           "conditions": [{"type": "Ready", "status": "True"}]});
    api.apply_with_status(&format!("/api/v1/namespaces/{demo}/pods"), pod.clone());
    let service = api.apply(
        &format!("/api/v1/namespaces/{demo}/services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": free_port()}]}}),
    );
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("a cluster IP");
    assert!(eventually(Duration::from_secs(10), || api
        .get(&format!(
            "/apis/kuma.io/v1alpha1/namespaces/{demo}/dataplanes/web-1"
        ))
        .is_some()));

    // The sidecar container exactly as injected: its command, arguments and
    // environment; the service-account token mounted where it says.
    let sidecar = container(&pod, "initContainers", "kuma-sidecar").clone();
    let mut env = container_env(&sidecar, &pod);
    let token_path = env
        .iter()
        .find(|(k, _)| k == "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        token_path,
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    );
    let mounted = dir.path().join("serviceaccount-token");
    std::fs::write(&mounted, &web_token).unwrap();
    for (k, v) in env.iter_mut() {
        if k == "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH" {
            *v = mounted.to_str().unwrap().to_string();
        }
    }
    assert_eq!(sidecar["command"], json!(["kuma-dp"]));
    let args: Vec<String> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    // The image's PATH holds kuma-dp and envoy.
    let path = format!(
        "{}:{}",
        bin("kuma-dp").parent().unwrap().display(),
        envoy_binary().parent().unwrap().display()
    );
    let log = std::fs::File::create(dir.path().join("sidecar.log")).unwrap();
    let mut sidecar_process = Command::new(bin("kuma-dp"))
        .args(&args)
        .env_clear()
        .env("PATH", &path)
        .env("KUMA_DATAPLANE_RUNTIME_CONFIG_DIR", dir.path())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Its own startup probe, run as the kubelet would, passes once Envoy is
    // ready and configured.
    let probe: Vec<String> = sidecar["startupProbe"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let ready = eventually(Duration::from_secs(30), || {
        Command::new(bin("kuma-dp"))
            .args(&probe[1..])
            .status()
            .is_ok_and(|s| s.success())
    });
    let listeners = reqwest::blocking::get(format!("http://127.0.0.1:{admin_port}/listeners"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    let _ = sidecar_process.kill();
    let _ = sidecar_process.wait();
    let sidecar_log = std::fs::read_to_string(dir.path().join("sidecar.log")).unwrap_or_default();
    assert!(
        ready,
        "the startup probe never passed; kuma-dp:\n{sidecar_log}"
    );
    assert!(
        listeners.contains(&format!("outbound:{cluster_ip}:80")),
        "Envoy got its configuration: {listeners}"
    );
}

#[test]
fn kuma_cp_serves_the_webhook_too_when_asked() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let (demo, _) = namespaces(api);
    let dir = tempfile::tempdir().unwrap();
    let (certs, ca_pem) = webhook_certificate(dir.path());
    let port = free_port().to_string();
    let _cp = api.kuma_cp(&[
        ("KUMA_INJECTOR_ENABLED", "true"),
        ("KUMA_INJECTOR_WEBHOOK_SERVER_PORT", &port),
        (
            "KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR",
            certs.to_str().unwrap(),
        ),
    ]);
    let webhook = InjectorProcess {
        child: None,
        url: format!("https://localhost:{port}/inject-sidecar"),
        client: webhook_client(&ca_pem),
    };
    assert!(admit(&webhook, &app_pod("web-1", &demo), &demo).1);
}

#[test]
fn the_webhook_denies_policies_of_a_namespace_the_mesh_does_not_admit() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    api.apply(
        "/apis/kuma.io/v1alpha1/meshes",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "team-a"},
               "spec": {"constraints": {"dataplaneProxy": {"requirements": [
                   {"tags": {"k8s.kuma.io/namespace": "team-a"}}]}}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut webhook = injector(api, dir.path(), &[]);
    webhook.url = webhook
        .url
        .replace("/inject-sidecar", "/validate-kuma-resources");
    let verdict = |namespace: &str, mesh: &str| -> Value {
        let permission = json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficPermission",
            "metadata": {"name": "allow-all", "namespace": namespace}, "mesh": mesh,
            "spec": {"rules": [{"sources": [{"match": {"service": "*"}}],
                                "destinations": [{"match": {"service": "*"}}]}]}});
        let review = review_of(
            (
                "kuma.io",
                "v1alpha1",
                "TrafficPermission",
                "trafficpermissions",
            ),
            &permission,
            namespace,
        );
        let (status, body) = post(&webhook, review.to_string().into_bytes());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["response"].clone()
    };
    // Team b, in its namespace, writes a policy into team a's mesh: denied.
    let denied = verdict("team-b", "team-a");
    assert_eq!(denied["allowed"], false, "{denied}");
    let message = denied["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("TrafficPermission team-b/allow-all")
            && message.contains("admits the namespaces team-a only"),
        "{message}"
    );
    // Team a in its own namespace, the control plane's namespace, and a
    // mesh without namespace constraints are allowed.
    for (namespace, mesh) in [
        ("team-a", "team-a"),
        ("kuma-system", "team-a"),
        ("team-b", "default"),
    ] {
        assert_eq!(
            verdict(namespace, mesh)["allowed"],
            true,
            "{namespace} -> {mesh}"
        );
    }
}
