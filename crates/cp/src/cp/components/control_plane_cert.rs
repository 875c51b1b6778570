//! Keeps the certificate of the servers proxies talk to current: a
//! certificate file that changes (`general.tlsCertFile`) is read again,
//! a generated one is renewed before it expires.

use crate::cp::component::{Component, Task};
use crate::runtime::CancellationToken;
use crate::security::control_plane_tls::ControlPlaneCert;
use std::sync::Arc;

pub struct CertRenewal(pub Arc<ControlPlaneCert>);

impl Component for CertRenewal {
    fn name(&self) -> &'static str {
        "control_plane_cert"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        vec![Box::pin(self.0.keep_current(shutdown))]
    }
}
