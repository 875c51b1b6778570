//! Embeds the Helm chart `charts/kuma`, so that `kumactl install
//! control-plane` renders the very files `helm install` reads: one source
//! of manifests. `$OUT_DIR/chart_files.rs` is a list of (path inside the
//! chart, contents) in path order.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    // A directory makes cargo rerun this script when any file under it
    // changes, is added or is removed.
    println!("cargo:rerun-if-changed=../../charts/kuma");
    let chart = manifest_dir.join("../../charts/kuma");
    kuma_embed::embed(&chart, "include_str", &out_dir.join("chart_files.rs"));
}
