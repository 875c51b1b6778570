//! Every manifest the project ships validates against the Kubernetes API
//! schemas (with `kubernetes-validate` from PyPI, installed by `make test`)
//! for Kubernetes 1.30, the oldest version supported.

use std::path::Path;
use std::process::Command;

#[test]
fn crds_validate_for_kubernetes_1_30() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let validator = root.join(".venv/bin/kubernetes-validate");
    assert!(
        validator.is_file(),
        "{} is missing: run `make deps`",
        validator.display()
    );
    let mut files: Vec<_> = std::fs::read_dir(root.join("crds"))
        .expect("crds/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "one CRD per Kuma kind");
    let out = Command::new(&validator)
        .args(["--kubernetes-version", "1.30.0", "--strict"])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(report.matches("passed").count(), files.len(), "{report}");
}
