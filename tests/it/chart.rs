//! The Helm chart `charts/kuma`, with real Helm 4 (installed by `make
//! deps`): `helm lint` is clean, and every object it renders, with the
//! injector in `kuma-cp` or in its own Deployment, validates for
//! Kubernetes 1.30.

#![cfg(feature = "kubernetes")]

use crate::common;

use common::kubernetes_validate;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn helm(args: &[&str]) -> String {
    let helm = root().join(".venv/bin/helm");
    assert!(
        helm.is_file(),
        "{} is missing: run `make deps`",
        helm.display()
    );
    let out = Command::new(&helm)
        .args(args)
        .current_dir(root())
        .output()
        .expect("helm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "helm {args:?}:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn helm_lint_is_clean() {
    let report = helm(&["lint", "--strict", "charts/kuma"]);
    assert!(
        !report.contains("[WARNING]") && !report.contains("[ERROR]"),
        "{report}"
    );
}

#[test]
fn every_rendered_object_validates() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut objects = 0;
    for (name, extra) in [
        ("in-control-plane", vec!["--include-crds"]),
        (
            "separate-injector",
            vec![
                "--set",
                "injector.separate=true",
                "--set",
                "controlPlane.replicas=2",
            ],
        ),
    ] {
        let mut args = vec![
            "template",
            "kuma",
            "charts/kuma",
            "--namespace",
            "kuma-system",
        ];
        args.extend(extra);
        let rendered = helm(&args);
        objects += rendered.lines().filter(|l| l.starts_with("kind: ")).count();
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        files.push(file);
    }
    kubernetes_validate(&files, objects);
}

/// The chart installs the CRDs `kumactl install crds` prints: one source.
#[test]
fn the_chart_carries_the_generated_crds() {
    for (name, text) in kuma::k8s::crd::definition_files() {
        let in_chart = std::fs::read_to_string(root().join("charts/kuma/crds").join(&name))
            .unwrap_or_default();
        assert!(
            in_chart == text,
            "charts/kuma/crds/{name} is stale: UPDATE_GOLDEN=1 cargo test --lib crds_directory_is_current"
        );
    }
}

/// `kumactl install control-plane` with `args`.
fn kumactl_install(args: &[&str]) -> String {
    let out = Command::new(common::bin("kumactl"))
        .args(["install", "control-plane"])
        .args(args)
        .current_dir(root())
        .output()
        .expect("kumactl runs");
    assert!(
        out.status.success(),
        "kumactl install control-plane {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn objects(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("a YAML document"))
        .filter(|o: &serde_json::Value| !o.is_null())
        .collect()
}

fn find<'a>(objects: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

fn b64(value: &serde_json::Value) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .expect("base64");
    String::from_utf8(bytes).expect("PEM text")
}

fn secret<'a>(objects: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Secret {name}"))
}

/// Checks that `cert_pem` is signed by `ca_pem` and names `host`.
fn signed_for(what: &str, ca_pem: &str, cert_pem: &str, host: &str) {
    let (ca_der, cert_der) = (pem_der(ca_pem), pem_der(cert_pem));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("the CA parses");
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).expect("the certificate parses");
    cert.verify_signature(Some(ca.public_key()))
        .unwrap_or_else(|e| panic!("{what} is not signed by its CA: {e}"));
    let names = cert
        .subject_alternative_name()
        .expect("SANs parse")
        .expect("SANs present")
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>();
    assert!(
        names.iter().any(|n| n == &format!("DNSName({host})")),
        "{what}: {host} not in {names:?}"
    );
}

/// Checks that the webhook's certificate is signed by the CA the API
/// server is given (`caBundle`) and names the Service the webhook is
/// reached at, and that the control plane's is signed by the CA sidecars
/// are given and names its Service; then replaces them (fresh on every
/// rendering) with a placeholder and orders the objects, so that
/// renderings compare.
fn comparable(mut objects: Vec<serde_json::Value>, namespace: &str) -> Vec<serde_json::Value> {
    let injector_tls = secret(&objects, "kuma-injector-tls");
    let webhook = find(&objects, "MutatingWebhookConfiguration")["webhooks"][0].clone();
    assert!(b64(&injector_tls["data"]["tls.key"]).contains("PRIVATE KEY"));
    let service = webhook["clientConfig"]["service"]["name"].as_str().unwrap();
    signed_for(
        "the webhook certificate",
        &b64(&webhook["clientConfig"]["caBundle"]),
        &b64(&injector_tls["data"]["tls.crt"]),
        &format!("{service}.{namespace}.svc"),
    );
    let control_plane_tls = secret(&objects, "kuma-tls-cert");
    assert!(b64(&control_plane_tls["data"]["tls.key"]).contains("PRIVATE KEY"));
    signed_for(
        "the control plane's certificate",
        &b64(&control_plane_tls["data"]["ca.crt"]),
        &b64(&control_plane_tls["data"]["tls.crt"]),
        &format!("kuma-control-plane.{namespace}.svc"),
    );
    let validator = find(&objects, "ValidatingWebhookConfiguration");
    assert_eq!(
        validator["webhooks"][0]["clientConfig"]["caBundle"], webhook["clientConfig"]["caBundle"],
        "both webhooks trust the one certificate the service presents"
    );
    for object in &mut objects {
        match object["kind"].as_str() {
            Some("Secret") => {
                for key in ["tls.crt", "tls.key", "ca.crt"] {
                    if !object["data"][key].is_null() {
                        object["data"][key] = "<certificate>".into();
                    }
                }
            }
            Some("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
                for hook in object["webhooks"].as_array_mut().unwrap() {
                    hook["clientConfig"]["caBundle"] = "<certificate>".into();
                }
            }
            _ => {}
        }
    }
    objects.sort_by_key(|o| {
        (
            o["kind"].to_string(),
            o["metadata"]["namespace"].to_string(),
            o["metadata"]["name"].to_string(),
        )
    });
    objects
}

/// kumactl's rendering is Helm's plus the Namespace Helm's
/// `--create-namespace` makes.
fn assert_same_as_helm(kumactl: &str, helm: &str, namespace: &str) {
    let mut ours = objects(kumactl);
    assert_eq!(ours[0]["kind"], "Namespace", "the Namespace comes first");
    assert_eq!(ours[0]["metadata"]["name"], namespace);
    ours.remove(0);
    let ours = comparable(ours, namespace);
    let helms = comparable(objects(helm), namespace);
    assert_eq!(ours.len(), helms.len(), "as many objects as Helm renders");
    for (ours, helms) in ours.iter().zip(&helms) {
        assert!(
            ours == helms,
            "kumactl and helm differ on {} {}:\nkumactl: {ours:#}\nhelm: {helms:#}",
            helms["kind"],
            helms["metadata"]["name"]
        );
    }
}

#[test]
fn kumactl_renders_what_helm_renders_for_the_default_values() {
    let helm = helm(&[
        "template",
        "kuma",
        "charts/kuma",
        "--namespace",
        "kuma-system",
        "--include-crds",
    ]);
    assert_same_as_helm(&kumactl_install(&[]), &helm, "kuma-system");
}

#[test]
fn kumactl_renders_what_helm_renders_for_a_values_file_and_flags() {
    let helm = helm(&[
        "template",
        "kuma",
        "charts/kuma",
        "--namespace",
        "mesh-system",
        "--include-crds",
        "--values",
        "tests/data/chart-values.yaml",
        "--set",
        "global.image.registry=quay.example/kuma,global.image.tag=2.1.0",
        "--set",
        "injector.failurePolicy=Ignore",
        "--set",
        "controlPlane.replicas=5,controlPlane.resources.limits.memory=null,injector.resources.limits=null",
    ]);
    let kumactl = kumactl_install(&[
        "--namespace",
        "mesh-system",
        "--values",
        "tests/data/chart-values.yaml",
        "--image-registry",
        "quay.example/kuma",
        "--control-plane-version",
        "2.1.0",
        "--injector-failure-policy",
        "Ignore",
        "--set",
        "controlPlane.replicas=5,controlPlane.resources.limits.memory=null,injector.resources.limits=null",
    ]);
    assert_same_as_helm(&kumactl, &helm, "mesh-system");
    // And what the test claims to vary does vary.
    let ours = objects(&kumactl);
    let injector = ours
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "kuma-injector")
        .expect("the separate injector");
    assert_eq!(
        injector["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.example/kuma/kuma-injector:2.1.0"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &kumactl).unwrap();
    kubernetes_validate(&[file], ours.len());
}

/// `manifests/kuma-control-plane.yaml` is `kumactl install control-plane`
/// with the default values, its certificate fields left empty (each
/// installation must generate its own).
const MANIFEST: &str = "manifests/kuma-control-plane.yaml";

fn without_certificates(rendering: &str) -> String {
    let mut out = String::from(
        "# The default installation, for reading and diffing: generated by\n\
         # `kumactl install control-plane` (UPDATE_GOLDEN=1 cargo test --test it chart::).\n\
         # Its webhook certificate is left empty; install with `helm install` or\n\
         # `kumactl install control-plane | kubectl apply -f -`, which generate one.\n",
    );
    for line in rendering.lines() {
        let key = line.trim_start();
        match ["tls.crt: ", "tls.key: ", "ca.crt: ", "caBundle: "]
            .iter()
            .find(|k| key.starts_with(*k))
        {
            Some(k) => out.push_str(&format!("{}{k}\"\"", &line[..line.len() - key.len()])),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn manifests_hold_the_default_rendering() {
    let current = without_certificates(&kumactl_install(&[]));
    let path = root().join(MANIFEST);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "{MANIFEST} is stale: UPDATE_GOLDEN=1 cargo test --test it chart::manifests_hold_the_default_rendering"
    );
    kubernetes_validate(&[path], objects(&current).len());
}
