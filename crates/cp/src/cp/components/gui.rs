//! The GUI redirect (`guiServer.port`): where Kuma 0.3 served the GUI,
//! browsers are sent to the HTTP API's `/gui/`.

use crate::api::settings::{ApiHttpsConfig, GuiServerConfig};
use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::runtime::{self, Bound, CancellationToken};

pub struct GuiRedirect {
    bound: Bound,
    api_port: u16,
}

impl GuiRedirect {
    /// None when the HTTPS API has the same port: it serves `/gui/` there
    /// itself.
    pub async fn bind(
        settings: &GuiServerConfig,
        https: &ApiHttpsConfig,
        api_port: u16,
    ) -> Result<Option<GuiRedirect>, CpError> {
        if https.enabled && https.port == settings.port && settings.port != 0 {
            tracing::info!(
                port = settings.port,
                "the HTTPS API has guiServer.port and serves /gui/ there"
            );
            return Ok(None);
        }
        let bound = runtime::bind("GUI redirect", "guiServer.port", settings.port).await?;
        Ok(Some(GuiRedirect { bound, api_port }))
    }
}

impl Component for GuiRedirect {
    fn name(&self) -> &'static str {
        "gui_redirect"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        let to = crate::api::gui::redirect_router(self.api_port);
        vec![Box::pin(self.bound.serve(to, shutdown))]
    }
}
