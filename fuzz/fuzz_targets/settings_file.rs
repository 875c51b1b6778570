//! The settings file of `kuma-cp run -c FILE`: any text is a config or an
//! error that names the file or the setting at fault.
#![no_main]

use kuma::config::Config;
use kuma::settings::{ConfigError, load};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static FILE: LazyLock<tempfile::NamedTempFile> =
    LazyLock::new(|| tempfile::NamedTempFile::new().expect("a temporary file"));

fuzz_target!(|data: &[u8]| {
    let path = FILE.path();
    std::fs::write(path, data).expect("written");
    let path = path.to_str().expect("a UTF-8 path");
    match load::<Config>(Some(path), |_| None, &[]) {
        Ok(_) => {}
        Err(ConfigError::File {
            path: named,
            message,
        }) => {
            assert_eq!(named, path);
            assert!(!message.is_empty());
        }
        Err(ConfigError::Invalid { key, var, message }) => {
            assert!(!key.is_empty() && var.starts_with("KUMA_") && !message.is_empty());
        }
        Err(e @ ConfigError::Env { .. }) => panic!("no environment was given: {e}"),
    }
});
