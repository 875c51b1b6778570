//! `Mesh`: the unit of tenancy, with its mTLS, logging and tracing settings.

use super::validation::Cause;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mtls {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CertificateAuthority>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthority {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinCa>,
}

/// The control plane generates and keeps the mesh's root CA itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuiltinCa {}

/// Tracing has no settings in this version of the model; `{}` is kept so
/// that documents round-trip as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracing {}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logging {
    #[serde(default)]
    pub backends: Vec<LoggingBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
}

/// Where access logs go: exactly one of `file` or `tcp`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingBackend {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileLoggingBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpLoggingBackend>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLoggingBackend {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpLoggingBackend {
    pub address: String,
}

impl MeshSpec {
    pub fn mtls_enabled(&self) -> bool {
        self.mtls.as_ref().is_some_and(|m| m.enabled)
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(mtls) = &self.mtls
            && mtls.enabled
            && mtls
                .ca
                .as_ref()
                .and_then(|ca| ca.builtin.as_ref())
                .is_none()
        {
            causes.push(Cause::new(
                "mtls.ca",
                "a CA must be set when mTLS is enabled; use {\"builtin\": {}}",
            ));
        }
        let Some(logging) = &self.logging else {
            return causes;
        };
        let mut seen = Vec::new();
        for (i, b) in logging.backends.iter().enumerate() {
            let field = format!("logging.backends[{i}]");
            if b.name.is_empty() {
                causes.push(Cause::new(format!("{field}.name"), "must be set"));
            } else if seen.contains(&b.name.as_str()) {
                causes.push(Cause::new(
                    format!("{field}.name"),
                    format!("\"{}\" is used by another backend", b.name),
                ));
            }
            seen.push(b.name.as_str());
            match (&b.file, &b.tcp) {
                (Some(f), None) if f.path.is_empty() => {
                    causes.push(Cause::new(format!("{field}.file.path"), "must be set"))
                }
                (None, Some(t)) if !valid_host_port(&t.address) => causes.push(Cause::new(
                    format!("{field}.tcp.address"),
                    format!("\"{}\" must be host:port", t.address),
                )),
                (Some(_), None) | (None, Some(_)) => {}
                _ => causes.push(Cause::new(
                    field,
                    "exactly one of \"file\" or \"tcp\" must be set",
                )),
            }
        }
        if let Some(default) = &logging.default_backend
            && !seen.contains(&default.as_str())
        {
            causes.push(Cause::new(
                "logging.defaultBackend",
                format!("\"{default}\" is not the name of a backend in logging.backends"),
            ));
        }
        causes
    }
}

fn valid_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}
