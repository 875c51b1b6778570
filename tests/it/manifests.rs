//! Every manifest the project ships validates against the Kubernetes API
//! schemas (with `kubernetes-validate` from PyPI, installed by `make test`)
//! for Kubernetes 1.30, the oldest version supported. Kuma's own objects in
//! the examples, which `kubernetes-validate` has no schema for, must pass
//! the control plane's validation of a custom resource.

#![cfg(feature = "kubernetes")]

use crate::common;

use common::kubernetes_validate;
use kuma::k8s::crd::{CRDS, GROUP, to_resource};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn crds_validate_for_kubernetes_1_30() {
    let files = files_in("crds");
    assert_eq!(
        files.len(),
        kuma::k8s::crd::CRDS.len(),
        "one CRD per Kuma kind"
    );
    kubernetes_validate(&files, files.len());
}

#[test]
fn example_objects_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut builtin = Vec::new();
    let mut kuma_objects = 0;
    for file in files_in("examples/kubernetes") {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            if api_version.starts_with(&format!("{GROUP}/")) {
                let kind = value["kind"].as_str().unwrap_or_default();
                let crd = CRDS
                    .iter()
                    .find(|c| c.kind.name() == kind)
                    .unwrap_or_else(|| panic!("{}: unknown kind {kind}", file.display()));
                let object = serde_json::from_value(value.clone()).unwrap();
                if let Err(e) = to_resource(crd, &object) {
                    panic!("{} document {}: {e}", file.display(), i + 1);
                }
                kuma_objects += 1;
            } else {
                let path = dir.path().join(format!("{}-{i}.yaml", builtin.len()));
                std::fs::write(&path, serde_yaml_ng::to_string(&value).unwrap()).unwrap();
                builtin.push(path);
            }
        }
    }
    assert!(kuma_objects > 0 && !builtin.is_empty());
    kubernetes_validate(&builtin, builtin.len());
}
