//! `/meshes/{mesh}/dataplanes+insights`: each dataplane with what the
//! control plane knows of its xDS streams (`DataplaneOverview`).

use super::error::mesh_not_found;
use super::paging::{ListParams, page_response};
use super::{ApiError, SharedContext};
use crate::resources::{Resource, ResourceKey, ResourceType, Spec};
use crate::store::{ListQuery, StoreError, require_mesh};
use axum::Json;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

fn overview(dataplane: &Resource, insight: Option<&Resource>) -> Value {
    let insight = match insight.map(|i| &i.spec) {
        Some(Spec::DataplaneInsight(i)) => serde_json::to_value(i).unwrap_or_else(|_| json!({})),
        _ => json!({}),
    };
    json!({
        "type": "DataplaneOverview",
        "mesh": dataplane.key.mesh,
        "name": dataplane.key.name,
        "dataplane": dataplane.spec.to_fields(),
        "dataplaneInsight": insight,
    })
}

pub(super) async fn get(ctx: &SharedContext, mesh: &str, name: &str) -> Result<Response, ApiError> {
    let dataplane = ctx
        .store
        .get(&ResourceKey::new(ResourceType::Dataplane, mesh, name))
        .await?;
    let insight = match ctx
        .store
        .get(&ResourceKey::new(
            ResourceType::DataplaneInsight,
            mesh,
            name,
        ))
        .await
    {
        Ok(i) => Some(i),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Json(overview(&dataplane, insight.as_ref())).into_response())
}

pub(super) async fn list(
    ctx: &SharedContext,
    caller: &super::authn::Caller,
    mesh: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let params = ListParams::parse(uri, ctx.default_page_size, ctx.max_page_size)?;
    require_mesh(ctx.store.as_ref(), mesh)
        .await
        .map_err(mesh_not_found)?;
    let query = ListQuery {
        tags: params.tags.clone(),
        offset: params.offset,
        limit: Some(params.size),
        ..ListQuery::of(ResourceType::Dataplane, Some(mesh))
    };
    let page = super::resources::visible_page(ctx, caller, query).await?;
    // One list of the mesh's insights rather than a lookup per dataplane.
    let insights = ctx
        .store
        .list(&ListQuery::of(ResourceType::DataplaneInsight, Some(mesh)))
        .await?;
    let by_name: HashMap<&str, &Resource> = insights
        .items
        .iter()
        .map(|i| (i.key.name.as_str(), i))
        .collect();
    let items = page
        .items
        .iter()
        .map(|dp| overview(dp, by_name.get(dp.key.name.as_str()).copied()))
        .collect();
    Ok(page_response(
        items,
        params.next_link(uri, headers, page.total),
    ))
}
