//! The HTTP API client `kumactl` is built on. Every failure becomes one line
//! that says what went wrong and where.

use super::KumactlError;
use super::config::ApiServer;
use crate::resources::ResourceType;
use crate::resources::describe_error_body;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of `api`, with its credentials: a user token, a client
    /// certificate, the CA of its HTTPS certificate.
    pub fn new(api: &ApiServer) -> Result<Self, KumactlError> {
        let http = authenticated(api, reqwest::Client::builder())?
            .timeout(std::time::Duration::from_secs(30))
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(KumactlError::http("cannot build an HTTP client"))?;
        Ok(ApiClient {
            base: api.url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// POSTs `body`; the answer's text.
    pub async fn post(&self, path: &str, body: &Value) -> Result<String, KumactlError> {
        let url = format!("{}{path}", self.base);
        let (_, answer) = self.send(Method::POST, &url, Some(body)).await?;
        Ok(match answer {
            Value::String(text) => text,
            other => other.to_string(),
        })
    }

    /// The path of one resource (or, with `name` empty, its collection).
    pub fn path(kind: ResourceType, mesh: &str, name: &str) -> String {
        let mut path = if !kind.is_mesh_scoped() {
            format!("/{}", kind.collection().unwrap_or("unknown"))
        } else {
            format!("/meshes/{mesh}/{}", kind.collection().unwrap_or("unknown"))
        };
        if !name.is_empty() {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), KumactlError> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| KumactlError::Unreachable {
                what: "the control plane",
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(KumactlError::http(format!("reading the answer of {url}")))?;
        if !status.is_success() {
            return Err(KumactlError::Refused(describe_error_body(
                status,
                &String::from_utf8_lossy(&bytes),
            )));
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&bytes).trim().to_string())
            })
        };
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> Result<Value, KumactlError> {
        let url = format!("{}{path}", self.base);
        self.send(Method::GET, &url, None).await.map(|(_, v)| v)
    }

    /// Every item of a list, following `next` links page by page.
    pub async fn get_all(&self, path: &str) -> Result<Vec<Value>, KumactlError> {
        let mut items = Vec::new();
        let mut url = format!("{}{path}?size=1000", self.base);
        loop {
            let (_, page) = self.send(Method::GET, &url, None).await?;
            if let Some(Value::Array(batch)) = page.get("items") {
                items.extend(batch.iter().cloned());
            }
            match page.get("next").and_then(Value::as_str) {
                // The link names the host as this client called it; keep
                // the configured base so proxies and port-forwards work.
                Some(next) => {
                    url = match next.find("/meshes") {
                        Some(i) => format!("{}{}", self.base, &next[i..]),
                        None => next.to_string(),
                    }
                }
                None => return Ok(items),
            }
        }
    }

    /// `PUT`; true when the resource was created.
    pub async fn put(&self, path: &str, body: &Value) -> Result<bool, KumactlError> {
        let url = format!("{}{path}", self.base);
        self.send(Method::PUT, &url, Some(body))
            .await
            .map(|(status, _)| status == StatusCode::CREATED)
    }

    pub async fn delete(&self, path: &str) -> Result<(), KumactlError> {
        let url = format!("{}{path}", self.base);
        self.send(Method::DELETE, &url, None).await.map(|_| ())
    }
}

/// Adds `api`'s credentials to a client being built.
pub fn authenticated(
    api: &ApiServer,
    mut builder: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, KumactlError> {
    match api.auth_type.as_str() {
        "" => {}
        "tokens" => {
            let token = api.auth_conf.get("token").ok_or_else(|| {
                KumactlError::Invalid("authType tokens needs --auth-conf token=TOKEN".to_string())
            })?;
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|_| {
                        KumactlError::Invalid(
                            "the user token holds characters a header cannot".into(),
                        )
                    })?;
            value.set_sensitive(true);
            builder = builder.default_headers(
                [(reqwest::header::AUTHORIZATION, value)]
                    .into_iter()
                    .collect(),
            );
        }
        other => {
            return Err(KumactlError::Invalid(format!(
                "unknown authType \"{other}\"; expected tokens"
            )));
        }
    }
    if !api.ca_cert_file.is_empty() {
        let pem =
            std::fs::read(&api.ca_cert_file).map_err(KumactlError::file(&api.ca_cert_file))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(KumactlError::http(format!(
            "CA certificate {}",
            api.ca_cert_file
        )))?;
        builder = builder.add_root_certificate(ca);
    }
    if !api.client_cert_file.is_empty() {
        let mut pem = std::fs::read(&api.client_cert_file)
            .map_err(KumactlError::file(&api.client_cert_file))?;
        pem.extend(
            std::fs::read(&api.client_key_file)
                .map_err(KumactlError::file(&api.client_key_file))?,
        );
        let identity = reqwest::Identity::from_pem(&pem).map_err(KumactlError::http(format!(
            "client certificate {} and key {}",
            api.client_cert_file, api.client_key_file
        )))?;
        builder = builder.identity(identity);
    }
    if api.skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    Ok(builder)
}
