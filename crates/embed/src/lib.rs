//! `kuma-embed`, a build-time helper: the files under a directory as Rust
//! source, so that a crate's build script can embed a whole directory (the
//! Helm chart in `kuma-install`, the GUI's built files in `kuma-api`).

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path, found: &mut Vec<PathBuf>) {
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

/// Writes to `out` the files under `dir` as a list of (path inside `dir`,
/// contents read by `include`), in path order.
pub fn embed(dir: &Path, include: &str, out: &Path) {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    files.sort();
    let mut code = String::from("&[\n");
    for file in files {
        let inside = file
            .strip_prefix(dir)
            .expect("found under the directory")
            .to_string_lossy()
            .replace('\\', "/");
        code.push_str(&format!(
            "    ({inside:?}, {include}!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("]\n");
    std::fs::write(out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
