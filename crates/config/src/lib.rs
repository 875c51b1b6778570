//! `kuma-config`: how the programs read their settings (flags,
//! environment, file, defaults; the `KUMA_*` variables and the help text
//! derived from the settings' types) and the command-line helpers they
//! share. The settings themselves live beside the components they
//! configure. It may import `kuma-runtime` only.

pub mod cli;
pub mod settings;

use kuma_runtime::runtime;
