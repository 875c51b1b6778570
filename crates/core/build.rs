//! Embeds the descriptors of Envoy's API, compiled from the `.proto` files
//! the `envoy-types` crate ships (the same files its Rust types were
//! generated from), so that raw Envoy resources in YAML or JSON can be
//! parsed into the typed API and generated ones shown as JSON:
//! `$OUT_DIR/envoy_descriptors.bin` (`envoy_api`).

use std::path::{Path, PathBuf};

/// The `proto/` directory of the envoy-types crate this build uses: its
/// version from Cargo.lock, its sources where cargo unpacked them.
fn envoy_types_protos(workspace: &Path) -> PathBuf {
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).expect("Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"envoy-types\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .expect("envoy-types is in Cargo.lock");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let registries = cargo_home.join("registry/src");
    std::fs::read_dir(&registries)
        .into_iter()
        .flatten()
        .flatten()
        .map(|r| r.path().join(format!("envoy-types-{version}/proto")))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "the sources of envoy-types {version} are not under {}; run `cargo fetch`",
                registries.display()
            )
        })
}

/// Reads Envoy's `.proto` files with one difference: a type named
/// relative to a package (`config.core.v3.HttpUri`) is written out in full
/// (`.envoy.config.core.v3.HttpUri`), resolved as protoc resolves it:
/// against the packages of the file itself and of its direct imports.
/// protox resolves against every file it has read, where another
/// package (`envoy.extensions.config`) may shadow the one meant.
struct QualifyingResolver(protox::file::ChainFileResolver);

impl protox::file::FileResolver for QualifyingResolver {
    fn resolve_path(&self, path: &Path) -> Option<String> {
        self.0.resolve_path(path)
    }

    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        let file = self.0.open_file(name)?;
        match file.source().map(qualify) {
            Some(qualified) if Some(qualified.as_str()) != file.source() => {
                protox::file::File::from_source(name, &qualified)
            }
            _ => Ok(file),
        }
    }
}

/// `source` with its package-relative type names made absolute.
fn qualify(source: &str) -> String {
    let statement = |keyword: &'static str| {
        source.lines().filter_map(move |l| {
            let rest = l.trim().strip_prefix(keyword)?;
            Some(
                rest.trim_matches(|c: char| c == ' ' || c == ';' || c == '"')
                    .to_string(),
            )
        })
    };
    let own = statement("package ").next().unwrap_or_default();
    // Envoy's files live where their package says (envoy/config/core/v3).
    let mut visible = std::collections::BTreeSet::new();
    let imported =
        statement("import ").filter_map(|p| Some(p.rsplit_once('/')?.0.replace('/', ".")));
    for package in imported.chain([own.clone()]) {
        let parts: Vec<&str> = package.split('.').collect();
        for i in 1..=parts.len() {
            visible.insert(parts[..i].join("."));
        }
    }
    let scope: Vec<&str> = own.split('.').filter(|p| !p.is_empty()).collect();
    let resolve = |name: &str| -> Option<String> {
        let first = name.split('.').next()?;
        (0..=scope.len()).rev().find_map(|i| {
            let prefix = scope[..i].join(".");
            let join = |n: &str| {
                if prefix.is_empty() {
                    n.to_string()
                } else {
                    format!("{prefix}.{n}")
                }
            };
            visible
                .contains(&join(first))
                .then(|| format!(".{}", join(name)))
        })
    };
    let mut out = String::with_capacity(source.len());
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("package ")
            || trimmed.starts_with("import ")
            || trimmed.starts_with("//")
        {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut previous = ' ';
        while let Some(c) = rest.chars().next() {
            let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
            if c.is_ascii_lowercase() && matches!(previous, ' ' | '\t' | '<' | ',' | '(') {
                let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
                let name = &rest[..end];
                let last_is_type = name
                    .rsplit('.')
                    .next()
                    .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_uppercase()));
                match (name.contains('.') && last_is_type)
                    .then(|| resolve(name))
                    .flatten()
                {
                    Some(full) => out.push_str(&full),
                    None => out.push_str(name),
                }
                previous = name.chars().last().unwrap_or(' ');
                rest = &rest[end..];
                continue;
            }
            out.push(c);
            previous = c;
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn envoy_descriptors(workspace: &Path, out_dir: &Path) {
    let protos = envoy_types_protos(workspace);
    let includes: Vec<PathBuf> = [
        "data-plane-api",
        "xds",
        "googleapis",
        "protoc-gen-validate",
        "cel-spec/proto",
        "opentelemetry-proto",
        "client_model",
        "ratelimit",
    ]
    .iter()
    .map(|d| protos.join(d))
    .collect();
    let mut files = Vec::new();
    kuma_embed::files_under(&protos.join("data-plane-api/envoy"), &mut files);
    files.retain(|f| f.extension().is_some_and(|e| e == "proto"));
    files.sort();
    let mut resolver = protox::file::ChainFileResolver::new();
    for include in &includes {
        resolver.add(protox::file::IncludeFileResolver::new(include.clone()));
    }
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(QualifyingResolver(resolver));
    compiler.include_imports(true);
    compiler
        .open_files(&files)
        .unwrap_or_else(|e| panic!("compiling Envoy's .proto files: {e}"));
    let set = compiler.file_descriptor_set();
    let bytes = prost::Message::encode_to_vec(&set);
    let out = out_dir.join("envoy_descriptors.bin");
    std::fs::write(&out, bytes).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    // The workspace's lock file names the envoy-types in use.
    let workspace = manifest_dir.join("../..");
    envoy_descriptors(&workspace, &out_dir);
    println!("cargo:rerun-if-changed=../../Cargo.lock");
}
