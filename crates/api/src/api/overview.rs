//! `/meshes/{mesh}/dataplanes+insights`: each dataplane with what the
//! control plane knows of its xDS streams (`DataplaneOverview`).

use super::error::mesh_not_found;
use super::paging::{ListParams, page_response};
use super::{ApiError, SharedContext};
use crate::resources::{Cause, Resource, ResourceKey, ResourceType, Spec};
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

/// `status=online|offline` of the dataplanes+insights list.
fn status_filter(uri: &Uri) -> Result<Option<bool>, ApiError> {
    let query = uri.query().unwrap_or("");
    let mut wanted = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "status" {
            wanted = Some(match value.as_ref() {
                "online" => true,
                "offline" => false,
                _ => {
                    return Err(ApiError::bad_request(
                        "Invalid list parameters",
                        vec![Cause::new(
                            "status",
                            format!("\"{value}\" must be online or offline"),
                        )],
                    ));
                }
            });
        }
    }
    Ok(wanted)
}

/// Whether a dataplane's insight (if it has one) says it is online.
pub(super) fn is_online(insight: Option<&Resource>) -> bool {
    matches!(insight.map(|i| &i.spec), Some(Spec::DataplaneInsight(i)) if i.is_online())
}

/// A page of the mesh's dataplanes with their insights; with `status`,
/// of those online (or offline) only, which takes the whole list: whether
/// a dataplane is online is in its insight, not in what the store pages.
pub(super) async fn list(
    ctx: &SharedContext,
    caller: &super::authn::Caller,
    mesh: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut params = ListParams::parse(uri, ctx.default_page_size, ctx.max_page_size)?;
    let status = status_filter(uri)?;
    require_mesh(ctx.store.as_ref(), mesh)
        .await
        .map_err(mesh_not_found)?;
    let (offset, limit) = match status {
        Some(_) => (0, None),
        None => (params.offset, Some(params.size)),
    };
    let query = ListQuery {
        tags: params.tags.clone(),
        offset,
        limit,
        ..ListQuery::of(ResourceType::Dataplane, Some(mesh))
    };
    let page = super::paging::visible_page(ctx, caller, query).await?;
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
    let with_insight = page
        .items
        .iter()
        .map(|dp| (dp, by_name.get(dp.key.name.as_str()).copied()));
    let (items, total): (Vec<Value>, usize) = match status {
        None => (
            with_insight.map(|(dp, i)| overview(dp, i)).collect(),
            page.total,
        ),
        Some(online) => {
            let matching: Vec<_> = with_insight
                .filter(|(_, i)| is_online(*i) == online)
                .collect();
            let total = matching.len();
            let items = matching
                .into_iter()
                .skip(params.offset)
                .take(params.size)
                .map(|(dp, i)| overview(dp, i))
                .collect();
            let word = if online { "online" } else { "offline" };
            params.carried.push(("status", word.to_string()));
            (items, total)
        }
    };
    let next = params.next_link(uri, headers, total);
    Ok(page_response(&items, total, next))
}
