//! `/mesh-insights`: what a mesh holds at a glance, for the GUI's overview
//! and `kumactl`-less dashboards: its dataplanes online and offline, its
//! policies of each kind, and when its CA expires. Computed on request
//! from the store (as Kuma's `MeshInsight` is, by a periodic job there).

use super::authn::Caller;
use super::paging::{ListParams, page_response};
use super::{ApiError, SharedContext};
use crate::resources::{Access, Resource, ResourceKey, ResourceType, Spec};
use crate::security::ca::{CA_SECRET, MeshCa};
use crate::store::{ListQuery, StoreError};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MeshInsight {
    /// Always `MeshInsight`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The mesh's name.
    pub name: String,
    pub dataplanes: DataplaneCounts,
    /// Policies of each kind, by kind (every kind, none left out at 0).
    pub policies: BTreeMap<String, PolicyCount>,
    #[serde(rename = "mTLS")]
    pub mtls: MtlsState,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DataplaneCounts {
    pub total: usize,
    /// With at least one xDS stream open.
    pub online: usize,
    pub offline: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PolicyCount {
    pub total: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MtlsState {
    pub enabled: bool,
    /// The builtin CA's root, once the mesh has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaValidity>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaValidity {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// The kinds a mesh's insight counts as policies.
fn policy_kinds() -> impl Iterator<Item = ResourceType> {
    ResourceType::ALL
        .into_iter()
        .filter(|k| k.is_mesh_scoped() && k.is_user_managed() && *k != ResourceType::Dataplane)
}

async fn count(ctx: &SharedContext, kind: ResourceType, mesh: &str) -> Result<usize, StoreError> {
    let query = ListQuery {
        limit: Some(1),
        ..ListQuery::of(kind, Some(mesh))
    };
    Ok(ctx.store.list(&query).await?.total)
}

async fn insight(ctx: &SharedContext, mesh: &Resource) -> Result<MeshInsight, ApiError> {
    let name = mesh.key.name.as_str();
    let total = count(ctx, ResourceType::Dataplane, name).await?;
    let insights = ctx
        .store
        .list(&ListQuery::of(ResourceType::DataplaneInsight, Some(name)))
        .await?;
    let online = insights
        .items
        .iter()
        .filter(|i| super::overview::is_online(Some(i)))
        .count()
        .min(total);
    let mut policies = BTreeMap::new();
    for kind in policy_kinds() {
        let total = count(ctx, kind, name).await?;
        policies.insert(kind.name().to_string(), PolicyCount { total });
    }
    let enabled = matches!(&mesh.spec, Spec::Mesh(m) if m.mtls_enabled());
    let ca = match ctx
        .store
        .get(&ResourceKey::new(ResourceType::Secret, name, CA_SECRET))
        .await
    {
        Ok(Resource {
            spec: Spec::Secret(secret),
            ..
        }) => {
            let (not_before, not_after) =
                MeshCa::validity_of_secret(name, &secret).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal error",
                        e.to_string(),
                    )
                })?;
            Some(CaValidity {
                not_before,
                not_after,
            })
        }
        Ok(_) | Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(MeshInsight {
        kind: "MeshInsight".into(),
        name: name.to_string(),
        dataplanes: DataplaneCounts {
            total,
            online,
            offline: total - online,
        },
        policies,
        mtls: MtlsState { enabled, ca },
    })
}

/// `GET /mesh-insights`: a page of the meshes the caller may read.
pub(super) async fn list(
    State(ctx): State<SharedContext>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = ListParams::parse(&uri, ctx.default_page_size, ctx.max_page_size)?;
    let query = ListQuery {
        offset: params.offset,
        limit: Some(params.size),
        ..ListQuery::of(ResourceType::Mesh, None)
    };
    let page = super::paging::visible_page(&ctx, &caller, query).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for mesh in &page.items {
        items.push(insight(&ctx, mesh).await?);
    }
    let next = params.next_link(&uri, &headers, page.total);
    Ok(page_response(&items, page.total, next))
}

/// `GET /mesh-insights/{mesh}`.
pub(super) async fn get(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path(mesh): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Access::Read, ResourceType::Mesh, &mesh, &mesh)?;
    let resource = ctx.store.get(&ResourceKey::mesh(&mesh)).await?;
    Ok(Json(insight(&ctx, &resource).await?).into_response())
}
