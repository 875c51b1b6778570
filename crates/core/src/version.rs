//! `version [--detailed]` of every program.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `<program> version` prints: the version alone, or with the build
/// details when `detailed`.
pub fn describe(program: &str, detailed: bool) -> String {
    if !detailed {
        return VERSION.to_string();
    }
    let features: Vec<&str> = [
        cfg!(feature = "universal").then_some("universal"),
        cfg!(feature = "kubernetes").then_some("kubernetes"),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "Product:    Kuma ({program})\nVersion:    {VERSION}\nFeatures:   {}\nTarget:     {}-{}\n",
        features.join(", "),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}
