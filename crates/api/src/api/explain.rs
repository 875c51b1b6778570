//! `GET /meshes/{mesh}/dataplanes/{name}/policies` and `.../xds`: why a
//! proxy got what it got, and what it got (see `xds::explain`).

use super::authn::Caller;
use super::{ApiError, SharedContext};
use crate::resources::{Access, ResourceType};
use crate::xds::cache::SnapshotCache;
use crate::xds::explain::{self, Source};
use crate::xds::generator::{self, MtlsPhase, ProxyTls, tls};
use crate::xds::index::{IndexHandle, ProxyId};
use axum::Json;
use axum::extract::{Path, State};
use serde_json::Value;
use std::sync::Arc;

/// The index the generator reads and the snapshots the proxies were sent.
pub struct Proxies {
    pub index: IndexHandle,
    pub cache: Arc<SnapshotCache>,
}

pub async fn dataplane_view(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((mesh, name, view)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    // The configuration holds every endpoint and certificate the proxy
    // was sent: more than reading the Dataplane shows.
    let access = if view == "xds" {
        Access::ViewConfigDump
    } else {
        Access::Read
    };
    caller.require(access, ResourceType::Dataplane, &mesh, &name)?;
    let id = ProxyId::new(&mesh, &name);
    let index = ctx.proxies.index.read();
    let (Some(mesh_view), Some(dataplane)) = (index.mesh(&mesh), index.dataplane(&id)) else {
        return Err(ApiError::not_found(format!(
            "Dataplane \"{name}\" is not in mesh \"{mesh}\""
        )));
    };
    let answer = match view.as_str() {
        "policies" => explain::policies(&name, dataplane, mesh_view),
        "xds" => match ctx.proxies.cache.snapshot(&id) {
            Some(snapshot) => explain::configuration(Source::Sent(&snapshot)),
            None => {
                // Certificates are issued when the proxy connects; the
                // rest is what it would be sent now.
                let (identity, mesh_ca) = (
                    tls::identity_secret("", ""),
                    tls::validation_secret(tls::MESH_CA_SECRET, ""),
                );
                let tls = mesh_view.spec.mtls_enabled().then_some(ProxyTls {
                    phase: MtlsPhase::Strict,
                    identity: &identity,
                    mesh_ca: &mesh_ca,
                    peer_cas: &[],
                });
                let config = generator::generate(dataplane, mesh_view, tls);
                explain::configuration(Source::GeneratedNow(&config))
            }
        },
        other => {
            return Err(ApiError::not_found(format!(
                "a dataplane has no \"{other}\"; expected policies or xds"
            )));
        }
    };
    Ok(Json(answer))
}
