//! The sidecar injector, when `kuma-cp` serves it too
//! (`injector.enabled`).

use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::cp::shared::Shared;
use crate::injector::{self, Injector, InjectorConfig};
use crate::runtime::{Bound, CancellationToken};

pub struct InjectorServer {
    injector: Injector,
    bound: (Bound, rustls::ServerConfig),
}

impl InjectorServer {
    /// None unless enabled.
    pub async fn bind(
        settings: &InjectorConfig,
        system_namespace: &str,
        shared: &Shared,
    ) -> Result<Option<InjectorServer>, CpError> {
        if !settings.enabled {
            return Ok(None);
        }
        let bound = injector::bind(settings).await?;
        let mut settings = settings.clone();
        // Sidecars verify this control plane with its own CA unless told
        // another.
        if settings.control_plane.ca_cert_file.is_empty()
            && let Some(file) = shared.control_plane_cert.as_ref().and_then(|c| c.ca_file())
        {
            settings.control_plane.ca_cert_file = file.display().to_string();
        }
        let injector = Injector {
            config: settings,
            client: shared.kube_client().await?,
            system_namespace: system_namespace.to_string(),
        };
        Ok(Some(InjectorServer { injector, bound }))
    }
}

impl Component for InjectorServer {
    fn name(&self) -> &'static str {
        "injector"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        vec![Box::pin(injector::serve(
            self.injector,
            self.bound,
            shutdown,
        ))]
    }
}
