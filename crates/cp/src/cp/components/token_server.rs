//! The dataplane token server (`dataplaneTokenServer.*`): on loopback
//! (`local.port`), and over HTTPS to other machines when `public.enabled`,
//! where client certificates are the admin's, as in Kuma.

use crate::api::authn::Authenticator;
use crate::api::token_server::{self, DataplaneTokenServerConfig, TokenContext};
use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::cp::shared::Shared;
use crate::runtime::{self, Bound, CancellationToken, Transport};
use crate::store::SharedStore;
use std::sync::Arc;
use std::time::Duration;

pub struct TokenServers {
    local: Bound,
    local_transport: Transport,
    /// Its socket and TLS, when enabled; its port defaults to the local
    /// server's.
    public: Option<(Bound, rustls::ServerConfig)>,
    store: SharedStore,
    token_validity: Duration,
    /// Whether a request from loopback without credentials is the admin.
    localhost_is_admin: bool,
}

impl TokenServers {
    pub async fn bind(
        settings: &DataplaneTokenServerConfig,
        localhost_is_admin: bool,
        shared: &Shared,
    ) -> Result<TokenServers, CpError> {
        let local = runtime::bind_on(
            "dataplane token",
            "dataplaneTokenServer.local.port",
            "127.0.0.1",
            settings.local.port,
        )
        .await?;
        let public = if settings.public.enabled {
            let tls = token_server::public_tls(&settings.public)?;
            let port = match settings.public.port {
                0 => local.address.port(),
                port => port,
            };
            let bound = runtime::bind_on(
                "dataplane token (public HTTPS)",
                "dataplaneTokenServer.public.port",
                &settings.public.interface,
                port,
            )
            .await?;
            Some((bound, tls))
        } else {
            None
        };
        Ok(TokenServers {
            local,
            local_transport: shared.token_transport.clone(),
            public,
            store: shared.store.clone(),
            token_validity: Duration::from_secs(settings.token_validity_seconds),
            localhost_is_admin,
        })
    }

    /// Where the local server answers, as `GET /` of the API says.
    pub fn local_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.local.address.port())
    }

    /// Where the public server answers, when it is enabled.
    pub fn public_url(&self, hostname: &str) -> Option<String> {
        self.public
            .as_ref()
            .map(|(bound, _)| format!("https://{hostname}:{}", bound.address.port()))
    }

    fn router(&self, certificates_are_admin: bool) -> axum::Router {
        token_server::router(
            TokenContext {
                store: self.store.clone(),
                default_validity: self.token_validity,
            },
            Arc::new(Authenticator {
                store: self.store.clone(),
                localhost_is_admin: self.localhost_is_admin,
                certificates_are_admin,
            }),
        )
    }
}

impl Component for TokenServers {
    fn name(&self) -> &'static str {
        "token_server"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        let mut tasks: Vec<Task> = Vec::new();
        let local_router = self.router(false);
        let public_router = self.router(true);
        let TokenServers {
            local,
            local_transport,
            public,
            ..
        } = *self;
        if let Some((bound, tls)) = public {
            tasks.push(Box::pin(bound.serve_tls(
                tls,
                public_router,
                shutdown.clone(),
            )));
        }
        tasks.push(Box::pin(local.serve_over(
            local_transport,
            local_router,
            shutdown,
        )));
        tasks
    }
}
