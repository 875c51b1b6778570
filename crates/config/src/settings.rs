//! How a program's settings are read.
//!
//! Every setting has a default, a key in the YAML file given by
//! `-c FILE`, and a `KUMA_*` environment variable derived from that key
//! (`store.postgres.dbName` is `KUMA_STORE_POSTGRES_DB_NAME`), with
//! precedence flag > environment > file > default. The variables are
//! derived from the defaults rather than listed by hand, so a new setting
//! cannot lack one, and the help text from the settings' doc comments, so
//! that the help and the code cannot drift apart.
//!
//! The settings themselves live beside the component they configure (the
//! HTTP API's in `kuma-api`, the injector's in `kuma-injector`, …); a
//! program gathers them into one type that implements [`Settings`].

pub use crate::runtime::env_var_name;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;

/// The settings of one program: every field has a default (`Default`), a
/// doc comment (the schema) and serde names in camelCase (the keys).
pub trait Settings: Serialize + DeserializeOwned + schemars::JsonSchema + Default {
    /// What the types cannot say: ranges, settings that go together.
    fn validate(&self) -> Result<(), ConfigError>;
    /// How the program logs.
    fn logging(&self) -> &LoggingConfig;
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{var}={value:?}: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
    #[error("setting {key} ({var}): {message}")]
    Invalid {
        key: String,
        var: String,
        message: String,
    },
}

impl ConfigError {
    /// The setting at dotted `key` is wrong, as `message` says.
    pub fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            var: env_var_name(key),
            message: message.into(),
        }
    }
}

/// Refuses a number outside `range`, naming the setting and the range.
pub fn in_range(
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!(
            "{value} is out of range: expected {} to {}",
            range.start(),
            range.end()
        ),
    ))
}

/// The log line format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How a server logs (`logging.*`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// A `tracing` filter: `info`, `debug`, `kuma=debug,info`, …
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// A setting given on the command line, as a dotted key and a value.
pub type Override = (&'static str, String);

/// One setting: its dotted key in the `-c` file, its environment
/// variable, its default.
pub struct Setting {
    pub key: String,
    pub var: String,
    pub default: Value,
}

/// The defaults of `S` as a JSON tree, what every load merges onto.
fn defaults_value<S: Settings>() -> Value {
    serde_json::to_value(S::default()).unwrap_or(Value::Null)
}

/// Every setting of `S`, in file order, walked from its defaults.
pub fn settings<S: Settings>() -> Vec<Setting> {
    settings_in(&defaults_value::<S>())
}

/// The settings whose defaults are `defaults`.
fn settings_in(defaults: &Value) -> Vec<Setting> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<Setting>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    walk(&join(prefix, k), child, out);
                }
            }
            leaf => out.push(Setting {
                key: prefix.to_string(),
                var: env_var_name(prefix),
                default: leaf.clone(),
            }),
        }
    }
    let mut out = Vec::new();
    walk("", defaults, &mut out);
    out
}

/// `prefix.key`, or `key` at the top.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// What each setting means (dotted key -> its doc comment), from the
/// settings' own types.
pub fn descriptions<S: Settings>() -> HashMap<String, String> {
    fn walk(prefix: &str, schema: &Value, out: &mut HashMap<String, String>) {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, child) in properties {
            let path = join(prefix, key);
            if let Some(text) = child.get("description").and_then(Value::as_str) {
                let mut meaning = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let choices: Vec<&str> = child
                    .get("enum")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if !choices.is_empty() {
                    meaning.push_str(&format!(" One of: {}.", choices.join(", ")));
                }
                out.insert(path.clone(), meaning);
            }
            walk(&path, child, out);
        }
    }
    let generator = schemars::generate::SchemaSettings::default()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let schema = generator.into_root_schema_for::<S>().to_value();
    let mut out = HashMap::new();
    walk("", &schema, &mut out);
    out
}

/// The help text listing every setting: its key in the `-c` file, its
/// environment variable, its default and what it means.
pub fn env_help<S: Settings>() -> String {
    let meanings = descriptions::<S>();
    let mut out = String::from(
        "Settings (key in the -c file, environment variable, default; flags > environment > file > default):\n",
    );
    for Setting { key, var, default } in settings::<S>() {
        let shown = match default {
            Value::String(s) if s.is_empty() => "\"\"".to_string(),
            Value::String(s) => s,
            other => other.to_string(),
        };
        out.push_str(&format!("  {key}\n      {var}  [default: {shown}]\n"));
        if let Some(meaning) = meanings.get(&key) {
            out.push_str(&format!("      {meaning}\n"));
        }
    }
    out
}

fn set_path(root: &mut Value, key: &str, value: Value) {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        node = &mut node[*part];
    }
    node[parts[parts.len() - 1]] = value;
}

/// Parses a raw string into the type of the setting's default.
fn typed(default: &Value, raw: &str) -> Result<Value, String> {
    match default {
        Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "" => Ok(Value::Bool(false)),
            _ => Err("expected true or false".into()),
        },
        Value::Number(_) => raw
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| "expected a non-negative whole number".into()),
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// Checks a file's keys against the known settings, so a typo is an error
/// rather than a silently ignored line.
fn check_known(prefix: &str, file: &Value, defaults: &Value) -> Result<(), String> {
    let (Value::Object(f), Value::Object(d)) = (file, defaults) else {
        return Ok(());
    };
    for (k, v) in f {
        let key = join(prefix, k);
        match d.get(k) {
            None => return Err(format!("unknown setting \"{key}\"")),
            Some(dv @ Value::Object(_)) => {
                if !v.is_object() {
                    return Err(format!("\"{key}\" must be a map of settings"));
                }
                check_known(&key, v, dv)?
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// The settings file at `path`, checked against the known keys.
fn read_file(path: &str, defaults: &Value) -> Result<Value, ConfigError> {
    let file_err = |message: String| ConfigError::File {
        path: path.to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    let parsed: Value = serde_yaml_ng::from_str(&text).map_err(|e| file_err(e.to_string()))?;
    if !parsed.is_null() && !parsed.is_object() {
        return Err(file_err(
            "must be a map of settings (e.g. \"apiServer:\\n  port: 5681\"), not a list or a single value".into(),
        ));
    }
    check_known("", &parsed, defaults).map_err(file_err)?;
    Ok(parsed)
}

/// Builds the settings: defaults, then the file, then the environment (as
/// `lookup` answers), then command-line overrides.
pub fn load<S: Settings>(
    file: Option<&str>,
    lookup: impl Fn(&str) -> Option<String>,
    overrides: &[Override],
) -> Result<S, ConfigError> {
    let defaults = defaults_value::<S>();
    let mut merged = defaults.clone();
    if let Some(path) = file {
        let parsed = read_file(path, &defaults)?;
        if !parsed.is_null() {
            merge(&mut merged, parsed);
        }
    }
    let known = settings_in(&defaults);
    for Setting { key, var, default } in &known {
        if let Some(raw) = lookup(var) {
            let value = typed(default, &raw).map_err(|message| ConfigError::Env {
                var: var.clone(),
                value: raw.clone(),
                message,
            })?;
            set_path(&mut merged, key, value);
        }
    }
    for (key, raw) in overrides {
        let empty = Value::String(String::new());
        let default = known
            .iter()
            .find(|s| s.key == *key)
            .map_or(&empty, |s| &s.default);
        let value = typed(default, raw).map_err(|message| ConfigError::invalid(key, message))?;
        set_path(&mut merged, key, value);
    }
    let loaded: S = serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::invalid(&key, e.into_inner().to_string())
    })?;
    loaded.validate()?;
    Ok(loaded)
}

/// Loads from the process environment.
pub fn from_env<S: Settings>(file: Option<&str>, overrides: &[Override]) -> Result<S, ConfigError> {
    load(file, |k| std::env::var(k).ok(), overrides)
}
