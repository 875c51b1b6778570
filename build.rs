//! Embeds the Helm chart `charts/kuma` in the library, so that `kumactl
//! install control-plane` renders the very files `helm install` reads: one
//! source of manifests. Writes `$OUT_DIR/chart_files.rs`, a list of
//! (path inside the chart, contents) in path order.

use std::path::{Path, PathBuf};

fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let chart = manifest_dir.join("charts/kuma");
    // A directory makes cargo rerun this script when any file under it
    // changes, is added or is removed.
    println!("cargo:rerun-if-changed=charts/kuma");
    let mut files = Vec::new();
    files_under(&chart, &mut files);
    files.sort();
    let mut code = String::from("&[\n");
    for file in files {
        let inside = file
            .strip_prefix(&chart)
            .expect("found under the chart")
            .to_string_lossy()
            .replace('\\', "/");
        code.push_str(&format!(
            "    ({inside:?}, include_str!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("]\n");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("chart_files.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
