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
    /// Which dataplanes may join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<super::membership::Constraints>,
    /// Whose cross-mesh gateways this mesh's proxies may reach.
    #[serde(default, rename = "crossMesh", skip_serializing_if = "Option::is_none")]
    pub cross_mesh: Option<super::gateway::CrossMesh>,
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

/// Where spans go (`{}`, the reference's, means nowhere). A TrafficTrace
/// picks a backend by name, or the default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tracing {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<TracingBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
}

/// One tracing backend, as Kuma writes it:
/// `{name, type: zipkin, sampling: 100.0, conf: {url}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingBackend {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: TracingBackendType,
    /// The percentage of requests traced, 0 to 100; 100 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<f64>,
    pub conf: ZipkinConf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TracingBackendType {
    Zipkin,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ZipkinConf {
    /// The collector's span endpoint, e.g. `http://zipkin:9411/api/v2/spans`.
    pub url: String,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        rename = "traceId128bit"
    )]
    pub trace_id_128bit: bool,
}

impl ZipkinConf {
    /// (host, port, path) of the url; `None` when it is not `http://host[:port]/path`.
    pub fn endpoint(&self) -> Option<(String, u16, String)> {
        let url = url::Url::parse(&self.url).ok()?;
        if url.scheme() != "http" {
            return None;
        }
        let host = url.host_str()?.to_string();
        Some((host, url.port_or_known_default()?, url.path().to_string()))
    }
}

impl TracingBackend {
    pub fn sampling(&self) -> f64 {
        self.sampling.unwrap_or(100.0)
    }
}

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

    /// Whether `dataplane` may join this mesh (named `mesh`); see
    /// [`super::membership`].
    pub fn admits(&self, mesh: &str, dataplane: &super::DataplaneSpec) -> Result<(), String> {
        match &self.constraints {
            Some(c) => c.admits(mesh, dataplane),
            None => Ok(()),
        }
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
        if let Some(tracing) = &self.tracing {
            causes.extend(tracing.validate());
        }
        if let Some(constraints) = &self.constraints {
            causes.extend(constraints.validate());
        }
        if let Some(cross_mesh) = &self.cross_mesh {
            causes.extend(cross_mesh.validate());
        }
        let Some(logging) = &self.logging else {
            return causes;
        };
        let names = logging.backends.iter().map(|b| b.name.as_str());
        let default = logging.default_backend.as_deref();
        causes.extend(backend_names("logging", names, default));
        for (i, b) in logging.backends.iter().enumerate() {
            let field = format!("logging.backends[{i}]");
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
        causes
    }
}

fn valid_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0))
}

impl Tracing {
    fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        let names = self.backends.iter().map(|b| b.name.as_str());
        let default = self.default_backend.as_deref();
        causes.extend(backend_names("tracing", names, default));
        for (i, b) in self.backends.iter().enumerate() {
            let field = format!("tracing.backends[{i}]");
            if !(0.0..=100.0).contains(&b.sampling()) {
                causes.push(Cause::new(
                    format!("{field}.sampling"),
                    format!("{} must be a percentage from 0 to 100", b.sampling()),
                ));
            }
            if b.conf.endpoint().is_none() {
                causes.push(Cause::new(
                    format!("{field}.conf.url"),
                    format!(
                        "\"{}\" must be an http:// URL of the collector's span endpoint, e.g. http://zipkin:9411/api/v2/spans",
                        b.conf.url
                    ),
                ));
            }
        }
        causes
    }
}

/// The names of a section's backends (`logging`, `tracing`): each set and
/// unique, and the default one of them.
fn backend_names<'a>(
    section: &str,
    names: impl Iterator<Item = &'a str>,
    default: Option<&str>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut seen = Vec::new();
    for (i, name) in names.enumerate() {
        let field = format!("{section}.backends[{i}].name");
        if name.is_empty() {
            causes.push(Cause::new(field, "must be set"));
        } else if seen.contains(&name) {
            causes.push(Cause::new(
                field,
                format!("\"{name}\" is used by another backend"),
            ));
        }
        seen.push(name);
    }
    if let Some(default) = default
        && !seen.contains(&default)
    {
        causes.push(Cause::new(
            format!("{section}.defaultBackend"),
            format!("\"{default}\" is not the name of a backend in {section}.backends"),
        ));
    }
    causes
}
