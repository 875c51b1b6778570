//! The bootstrap server (`bootstrapServer.*`): `kuma-dp` asks it for
//! Envoy's bootstrap, which points Envoy at ADS.

use crate::bootstrap::{self, BootstrapContext, BootstrapServerConfig};
use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::cp::shared::Shared;
use crate::runtime::{self, Bound, CancellationToken, Transport};

pub struct Bootstrap {
    bound: Bound,
    transport: Transport,
    router: axum::Router,
}

impl Bootstrap {
    /// `xds_host` and `xds_port` are where this control plane's ADS
    /// answers, unless the settings name another address (a load balancer
    /// in front of several).
    pub async fn bind(
        settings: &BootstrapServerConfig,
        xds_host: String,
        xds_port: u16,
        shared: &Shared,
    ) -> Result<Bootstrap, CpError> {
        let bound = runtime::bind("bootstrap", "bootstrapServer.port", settings.port).await?;
        let router = bootstrap::router(BootstrapContext {
            index: shared.index.clone(),
            auth: shared.auth.clone(),
            xds_host,
            xds_tls: shared.control_plane_cert.is_some(),
            xds_port: match settings.params.xds_port {
                0 => xds_port,
                port => port,
            },
            api_type: settings.xds_api_type,
        });
        Ok(Bootstrap {
            bound,
            transport: shared.proxy_transport.clone(),
            router,
        })
    }
}

impl Component for Bootstrap {
    fn name(&self) -> &'static str {
        "bootstrap_server"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        vec![Box::pin(self.bound.serve_over(
            self.transport,
            self.router,
            shutdown,
        ))]
    }
}
