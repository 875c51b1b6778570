//! The HTTP API (`apiServer.*`): plain HTTP on `apiServer.port`, and the
//! same API over HTTPS when `apiServer.https.enabled`.

use super::token_server::TokenServers;
use crate::api::settings::ApiServerConfig;
use crate::api::{self, ApiContext};
use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::cp::shared::Shared;
use crate::runtime::{self, Bound, CancellationToken};
use std::sync::Arc;
use std::time::Duration;

/// What the API tells about the rest of the control plane.
pub struct Surroundings<'a> {
    /// Writes answer 405 (Kubernetes mode, or configured so).
    pub read_only: bool,
    /// The host name other machines reach this control plane by.
    pub hostname: &'a str,
    pub token_servers: &'a TokenServers,
    /// Validity of dataplane tokens that do not ask for less.
    pub dataplane_token_validity: Duration,
}

pub struct ApiServer {
    plain: Bound,
    https: Option<(Bound, rustls::ServerConfig)>,
    router: axum::Router,
}

impl ApiServer {
    pub async fn bind(
        settings: &ApiServerConfig,
        around: &Surroundings<'_>,
        shared: &Shared,
    ) -> Result<ApiServer, CpError> {
        let plain = runtime::bind("HTTP API", "apiServer.port", settings.port).await?;
        let https = if settings.https.enabled {
            let tls = api::https::tls_config(
                settings,
                shared.control_plane_cert.as_ref(),
                around.hostname,
            )?;
            let bound = runtime::bind_on(
                "HTTP API (HTTPS)",
                "apiServer.https.port",
                &settings.https.interface,
                settings.https.port,
            )
            .await?;
            Some((bound, tls))
        } else {
            None
        };
        let router = api::router(context(settings, around, shared), &limits(settings));
        Ok(ApiServer {
            plain,
            https,
            router,
        })
    }

    /// The plain API's port, where the GUI redirect points.
    pub fn port(&self) -> u16 {
        self.plain.address.port()
    }
}

fn limits(settings: &ApiServerConfig) -> api::Limits {
    api::Limits {
        max_body_bytes: settings.max_request_body_bytes,
        max_concurrent_requests: settings.max_concurrent_requests,
        request_timeout: Duration::from_millis(settings.request_timeout_ms),
    }
}

fn context(settings: &ApiServerConfig, around: &Surroundings<'_>, shared: &Shared) -> ApiContext {
    ApiContext {
        store: shared.store.clone(),
        read_only: around.read_only,
        default_page_size: settings.default_page_size,
        max_page_size: settings.max_page_size,
        instance_id: shared.instance_id.clone(),
        hostname: around.hostname.to_string(),
        token_server_local: around.token_servers.local_url(),
        token_server_public: around.token_servers.public_url(around.hostname),
        metrics: shared.metrics.clone(),
        outside_mesh: shared.outside_mesh.clone(),
        proxies: api::explain::Proxies {
            index: shared.index.clone(),
            cache: shared.cache.clone(),
        },
        authenticator: Arc::new(api::authn::Authenticator {
            store: shared.store.clone(),
            localhost_is_admin: settings.authn.localhost_is_admin,
            certificates_are_admin: false,
        }),
        dataplane_token_validity: around.dataplane_token_validity,
        control_plane_ca: match &shared.control_plane_cert {
            Some(cert) => cert.ca_pem().map(str::to_string).ok_or_else(|| {
                "this control plane serves the certificate of KUMA_GENERAL_TLS_CERT_FILE: give kuma-dp the CA that signed it".to_string()
            }),
            None => Err("this control plane serves proxies in plain text (KUMA_DP_SERVER_INSECURE_PLAINTEXT): there is no CA to verify it with".to_string()),
        },
    }
}

impl Component for ApiServer {
    fn name(&self) -> &'static str {
        "api_server"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        let mut tasks: Vec<Task> = Vec::new();
        if let Some((bound, tls)) = self.https {
            tasks.push(Box::pin(bound.serve_tls(
                tls,
                self.router.clone(),
                shutdown.clone(),
            )));
        }
        tasks.push(Box::pin(self.plain.serve(self.router, shutdown)));
        tasks
    }
}
