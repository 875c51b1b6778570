//! Kuma's CRDs as a real kube-apiserver serves them: what no imitation
//! of the API server could show. A custom resource of the wrong shape is
//! refused from the CRD's schema with the field named; unknown fields are
//! pruned while maps such as tags keep every key; `kubectl explain` reads
//! the schema; `kubectl get` prints the CRDs' columns.

use kuma_test_support::cluster::control_plane;

use control_plane::ControlPlane;
use serde_json::json;

fn dataplane(name: &str, networking: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
           "metadata": {"name": name}, "mesh": "default",
           "spec": {"networking": networking}})
}

fn cluster() -> &'static ControlPlane {
    let cp = ControlPlane::shared();
    cp.install_crds();
    cp
}

#[test]
fn a_custom_resource_of_the_wrong_type_is_refused_with_the_field_named() {
    let cp = cluster();
    let ns = cp.namespace("schema", json!({}));
    let path = format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes");
    let bad = dataplane(
        "web",
        json!({"inbound": [{"interface": 8080, "tags": {"service": "web"}}]}),
    );
    let (status, answer) = cp.request("POST", &path, Some(("application/json", bad.to_string())));
    assert_eq!(status, 422, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.networking.inbound[0].interface") && message.contains("string"),
        "the refusal names the field and the type expected: {message}"
    );
    assert_eq!(
        cp.request("GET", &format!("{path}/web"), None).0,
        404,
        "nothing was stored"
    );

    let out = cp.kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&serde_json::to_string(&bad).unwrap()),
    );
    assert!(!out.ok, "kubectl apply took it");
    let stderr = &out.stderr;
    assert!(
        stderr.contains("spec.networking.inbound[0].interface"),
        "kubectl shows the API server's reason: {stderr}"
    );
}

#[test]
fn unknown_fields_are_pruned_and_tags_keep_every_key() {
    let cp = cluster();
    let ns = cp.namespace("prune", json!({}));
    let path = format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes");
    let object = dataplane(
        "web",
        json!({"address": "10.0.0.1", "bogus": true,
               "inbound": [{"interface": "10.0.0.1:8080:8081",
                            "tags": {"service": "web", "team": "payments"},
                            "notAField": "x"}]}),
    );
    // Without strict validation, as an operator writing JSON does.
    let (status, stored) = cp.request(
        "POST",
        &format!("{path}?fieldValidation=Ignore"),
        Some(("application/json", object.to_string())),
    );
    assert_eq!(status, 201, "{stored}");
    let networking = &stored["spec"]["networking"];
    assert!(networking.get("bogus").is_none(), "{networking}");
    assert!(
        networking["inbound"][0].get("notAField").is_none(),
        "{networking}"
    );
    assert_eq!(
        networking["inbound"][0]["tags"],
        json!({"service": "web", "team": "payments"})
    );

    // kubectl validates strictly, and says which fields are unknown.
    let mut strict = object.clone();
    strict["metadata"]["name"] = "strict".into();
    let out = cp.kubectl(
        &["apply", "--server-side", "-n", &ns, "-f", "-"],
        Some(&strict.to_string()),
    );
    assert!(!out.ok, "strict validation took unknown fields");
    let stderr = &out.stderr;
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn kubectl_explain_reads_the_crd_schema() {
    let cp = cluster();
    let out = cp.kubectl(&["explain", "dataplane.spec.networking"], None);
    let text = &out.stdout;
    assert!(out.ok, "{}", out.stderr);
    for field in ["inbound", "outbound", "transparentProxying"] {
        assert!(text.contains(field), "{field} in:\n{text}");
    }
}

#[test]
fn kubectl_get_prints_the_crds_columns() {
    let cp = cluster();
    let ns = cp.namespace("columns", json!({}));
    let mesh = format!("columns-{ns}");
    cp.apply(
        "/apis/kuma.io/v1alpha1/meshes",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": mesh},
               "spec": {"mtls": {"enabled": true, "ca": {"builtin": {}}}}}),
    );
    let mut web = dataplane(
        "web",
        json!({"inbound": [{"interface": "10.0.0.1:8080:8081", "tags": {"service": "web"}}]}),
    );
    web["mesh"] = mesh.clone().into();
    cp.apply(
        &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes"),
        web,
    );
    let out = cp.kubectl(&["get", "meshes,dataplanes", "-A"], None);
    let text = &out.stdout;
    assert!(out.ok, "{}", out.stderr);
    let mesh_row = text
        .lines()
        .find(|l| l.contains(&format!("mesh.kuma.io/{mesh}")))
        .unwrap_or_else(|| panic!("no row of the mesh:\n{text}"));
    assert!(mesh_row.contains("true"), "the mTLS column: {mesh_row}");
    let dataplane_row = text
        .lines()
        .find(|l| l.contains("dataplane.kuma.io/web") && l.contains(&ns))
        .unwrap_or_else(|| panic!("no row of the dataplane:\n{text}"));
    assert!(
        dataplane_row.contains(&mesh) && dataplane_row.contains(" web "),
        "the Mesh and Service columns: {dataplane_row}"
    );
    assert!(text.contains("MTLS") && text.contains("SERVICE"), "{text}");
    cp.delete(&format!("/apis/kuma.io/v1alpha1/meshes/{mesh}"));
}

/// Kuma's Kubernetes form of today's policies applies with kubectl as
/// written (`kuma.io/mesh` label, namespaced); `kubectl get` shows their
/// targets; a targetRef kind the schema does not know is refused by the
/// API server itself.
#[test]
fn target_ref_policies_apply_with_kubectl_as_kuma_writes_them() {
    let cp = cluster();
    let ns = cp.namespace("policies", json!({}));
    let policies = format!(
        "apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata:
  name: allow-orders
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: MeshService
    name: backend
  from:
  - targetRef:
      kind: MeshSubset
      tags:
        kuma.io/service: orders
    default:
      action: AllowWithShadowDeny
---
apiVersion: kuma.io/v1alpha1
kind: MeshHTTPRoute
metadata:
  name: backend-v2
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: frontend
  to:
  - targetRef:
      kind: MeshService
      name: backend
    rules:
    - matches:
      - path:
          type: PathPrefix
          value: /v2
      default:
        filters:
        - type: RequestMirror
          requestMirror:
            percentage: \"12.5\"
            backendRef:
              kind: MeshService
              name: shadow
        backendRefs:
        - kind: MeshServiceSubset
          name: backend
          tags:
            version: v2
---
apiVersion: kuma.io/v1alpha1
kind: MeshTLS
metadata:
  name: permissive
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Mesh
  from:
  - targetRef:
      kind: Mesh
    default:
      mode: Permissive
      tlsVersion:
        min: TLS12
---
apiVersion: kuma.io/v1alpha1
kind: MeshHTTPRoute
metadata:
  name: route-to-backend-v2
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: frontend
  to:
  - targetRef:
      kind: MeshService
      name: backend
      namespace: {ns}
      sectionName: http
    rules:
    - matches:
      - path:
          type: PathPrefix
          value: /v2
      default:
        backendRefs:
        - kind: MeshService
          name: backend-v2
          namespace: {ns}
          port: 3001
---
apiVersion: kuma.io/v1alpha1
kind: MeshTCPRoute
metadata:
  name: frontend-to-backend-db
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: frontend
  to:
  - targetRef:
      kind: MeshService
      labels:
        kuma.io/display-name: backend
      sectionName: postgres
    rules:
    - default:
        backendRefs:
        - kind: MeshService
          labels:
            kuma.io/display-name: backend-replica
          port: 5432
---
apiVersion: kuma.io/v1alpha1
kind: MeshTrafficPermission
metadata:
  name: deny-observability-ns
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: backend
    sectionName: admin
  rules:
  - default:
      deny:
      - spiffeID:
          type: Prefix
          value: spiffe://default.zone-1.mesh.local/ns/observability/sa
      allowWithShadowDeny:
      - spiffeID:
          type: Exact
          value: spiffe://default.zone-1.mesh.local/ns/legacy/sa/client
---
apiVersion: kuma.io/v1alpha1
kind: MeshTLS
metadata:
  name: strict-backend
  namespace: {ns}
  labels:
    kuma.io/mesh: default
spec:
  targetRef:
    kind: Dataplane
    labels:
      app: backend
  rules:
  - default:
      mode: Strict
"
    );
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&policies));
    assert!(out.ok, "{}", out.stderr);
    let out = cp.kubectl(
        &[
            "get",
            "meshtrafficpermissions,meshhttproutes,meshtcproutes,meshtlses",
            "-n",
            &ns,
        ],
        None,
    );
    assert!(out.ok, "{}", out.stderr);
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains("allow-orders"))
        .unwrap_or_else(|| panic!("no row:\n{}", out.stdout));
    assert!(
        row.contains("MeshService") && row.contains("backend"),
        "the TargetRef columns: {row}"
    );
    for name in [
        "route-to-backend-v2",
        "frontend-to-backend-db",
        "deny-observability-ns",
        "strict-backend",
    ] {
        assert!(
            out.stdout.contains(name),
            "{name} not listed:\n{}",
            out.stdout
        );
    }
    let bogus = policies
        .replace(
            "kind: MeshService\n    name: backend\n  from",
            "kind: Bogus\n    name: backend\n  from",
        )
        .replace("name: allow-orders", "name: bogus");
    let out = cp.kubectl(&["apply", "-f", "-"], Some(&bogus));
    assert!(!out.ok, "a targetRef of kind Bogus was taken");
    assert!(
        out.stderr.contains("spec.targetRef.kind") && out.stderr.contains("Bogus"),
        "{}",
        out.stderr
    );
}
