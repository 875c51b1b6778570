//! The Helm chart `charts/kuma`, with real Helm 4 (installed by `make
//! deps`): `helm lint` is clean, and every object it renders, with the
//! injector in `kuma-cp` or in its own Deployment, validates for
//! Kubernetes 1.30.

#![cfg(feature = "kubernetes")]

mod common;

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
