//! Embeds the GUI's built files, `gui/dist`, when `npm run build` has
//! written them (`$OUT_DIR/gui_files.rs`: (path, contents) in path order;
//! empty without them).

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let gui = manifest_dir.join("../../gui/dist");
    if gui.join("index.html").is_file() {
        println!("cargo:rerun-if-changed=../../gui/dist");
        kuma_embed::embed(&gui, "include_bytes", &out_dir.join("gui_files.rs"));
    } else {
        // Watching `gui/` notices the build's first `dist/`.
        println!("cargo:rerun-if-changed=../../gui");
        std::fs::write(out_dir.join("gui_files.rs"), "&[]\n").expect("OUT_DIR is writable");
    }
}
