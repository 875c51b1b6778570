//! `~/.kumactl/config`: the control planes `kumactl` knows and which one is
//! current, in Kuma's file format.

use super::KumactlError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KumactlConfig {
    #[serde(default)]
    pub contexts: Vec<Context>,
    #[serde(default)]
    pub control_planes: Vec<ControlPlane>,
    #[serde(default)]
    pub current_context: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub name: String,
    pub control_plane: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPlane {
    pub name: String,
    pub coordinates: Coordinates,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coordinates {
    pub api_server: ApiServer,
    /// Client certificate for the public (HTTPS) dataplane token server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_token_server: Option<TokenServerClient>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenServerClient {
    pub client_cert: String,
    pub client_key: String,
}

/// How to reach a control plane's API and prove who kumactl is, with
/// Kuma's field names.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    pub url: String,
    /// `tokens`: send `authConf.token` as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_type: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub auth_conf: std::collections::BTreeMap<String, String>,
    /// CA (PEM) that signs the API's HTTPS certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert_file: String,
    /// Client certificate (PEM) for the HTTPS API, and its key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_cert_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_key_file: String,
    /// Do not verify the API's HTTPS certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_verify: bool,
}

/// The control plane a fresh installation talks to.
const LOCAL: &str = "local";
const LOCAL_URL: &str = "http://localhost:5681";

impl Default for KumactlConfig {
    fn default() -> Self {
        let mut config = KumactlConfig {
            contexts: Vec::new(),
            control_planes: Vec::new(),
            current_context: String::new(),
        };
        config.add(
            LOCAL,
            ApiServer {
                url: LOCAL_URL.into(),
                ..Default::default()
            },
            None,
        );
        config
    }
}

/// `$HOME/.kumactl/config`.
pub fn default_path() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".kumactl").join("config")
}

impl KumactlConfig {
    /// Reads the file; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<Self, KumactlError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_yaml_ng::from_str(&text).map_err(|source| KumactlError::Yaml {
                context: format!("{}: not a kumactl configuration", path.display()),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(KumactlError::file(path)(e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), KumactlError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(KumactlError::file(dir))?;
        }
        std::fs::write(path, self.to_yaml()?).map_err(KumactlError::file(path))
    }

    /// The configuration as its file holds it.
    pub fn to_yaml(&self) -> Result<String, KumactlError> {
        serde_yaml_ng::to_string(self).map_err(|source| KumactlError::Yaml {
            context: "cannot write the configuration".into(),
            source,
        })
    }

    /// The API of the current control plane.
    pub fn current_api(&self) -> Result<&ApiServer, KumactlError> {
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| {
                KumactlError::from(
                    "no current control plane; add one with `kumactl config control-planes add`",
                )
            })?;
        self.control_planes
            .iter()
            .find(|cp| cp.name == context.control_plane)
            .map(|cp| &cp.coordinates.api_server)
            .ok_or_else(|| {
                KumactlError::Invalid(format!(
                    "control plane \"{}\" is not configured",
                    context.control_plane
                ))
            })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.control_planes.iter().any(|cp| cp.name == name)
    }

    /// The current control plane.
    pub fn current(&self) -> Result<&ControlPlane, KumactlError> {
        let api = self.current_api()?;
        self.control_planes
            .iter()
            .find(|cp| &cp.coordinates.api_server == api)
            .ok_or_else(|| KumactlError::from("no current control plane"))
    }

    /// Adds (or replaces) a control plane and makes it current.
    pub fn add(&mut self, name: &str, api: ApiServer, token_client: Option<TokenServerClient>) {
        self.remove(name);
        self.control_planes.push(ControlPlane {
            name: name.to_string(),
            coordinates: Coordinates {
                api_server: ApiServer {
                    url: api.url.trim_end_matches('/').to_string(),
                    ..api
                },
                dataplane_token_server: token_client,
            },
        });
        self.contexts.push(Context {
            name: name.to_string(),
            control_plane: name.to_string(),
        });
        self.current_context = name.to_string();
    }

    pub fn switch(&mut self, name: &str) -> Result<(), KumactlError> {
        if !self.contains(name) {
            return Err(KumactlError::Invalid(format!(
                "there is no control plane named \"{name}\"; see `kumactl config control-planes list`"
            )));
        }
        self.current_context = name.to_string();
        Ok(())
    }

    /// Removes a control plane; true when it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.control_planes.len();
        self.control_planes.retain(|cp| cp.name != name);
        self.contexts.retain(|c| c.name != name);
        if self.current_context == name {
            self.current_context = self
                .contexts
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default();
        }
        before != self.control_planes.len()
    }
}
