//! `GET`, `PUT` and `DELETE` of meshes and of the resources inside them.

use super::error::mesh_not_found;
use super::overview;
use super::paging::{ListParams, page_response};
use super::{ApiError, SharedContext};
use crate::resources::{Identity, Resource, ResourceKey, ResourceType, ResourceVersion};
use crate::store::{ListQuery, StoreError, require_mesh, upsert};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// What a collection segment of a path names.
enum Collection {
    Kind(ResourceType),
    DataplaneOverviews,
    PodsWithoutSidecar,
}

fn collection(segment: &str) -> Result<Collection, ApiError> {
    match segment {
        // The reference writes both spellings.
        "dataplanes+insights" | "dataplane+insights" => Ok(Collection::DataplaneOverviews),
        "pods-without-sidecar" => Ok(Collection::PodsWithoutSidecar),
        _ => ResourceType::from_collection(segment)
            .map(Collection::Kind)
            .ok_or_else(|| {
                let known: Vec<&str> = ResourceType::ALL
                    .into_iter()
                    .filter(|k| k.is_mesh_scoped())
                    .filter_map(|k| k.collection())
                    .chain(["dataplanes+insights"])
                    .collect();
                ApiError::not_found(format!(
                    "unknown collection \"{segment}\"; expected one of {}",
                    known.join(", ")
                ))
            }),
    }
}

fn etag(version: &ResourceVersion) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

fn one(resource: &Resource) -> Response {
    let mut resp = Json(resource.to_json()).into_response();
    resp.headers_mut()
        .insert(header::ETAG, etag(&resource.version));
    resp
}

async fn list(
    ctx: &SharedContext,
    kind: ResourceType,
    mesh: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let params = ListParams::parse(uri, ctx.default_page_size, ctx.max_page_size)?;
    if !params.tags.is_empty() && kind != ResourceType::Dataplane {
        return Err(ApiError::bad_request(
            "Invalid list parameters",
            vec![crate::resources::Cause::new(
                "tag",
                "the tag filter applies to dataplanes only",
            )],
        ));
    }
    if let Some(mesh) = mesh {
        require_mesh(ctx.store.as_ref(), mesh)
            .await
            .map_err(mesh_not_found)?;
    }
    let query = ListQuery {
        tags: params.tags.clone(),
        offset: params.offset,
        limit: Some(params.size),
        ..ListQuery::of(kind, mesh)
    };
    let page = ctx.store.list(&query).await?;
    let next = params.next_link(uri, headers, page.total);
    Ok(page_response(
        page.items.iter().map(Resource::to_json).collect(),
        next,
    ))
}

/// Parses the `If-Match` header: the version a client last read.
fn if_match(headers: &HeaderMap) -> Result<Option<ResourceVersion>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .map(|s| Some(ResourceVersion::new(s)))
        .ok_or_else(|| {
            ApiError::bad_request(
                "Invalid If-Match header",
                vec![crate::resources::Cause::new(
                    "If-Match",
                    "must be the ETag of an earlier GET, e.g. \"3\"",
                )],
            )
        })
}

async fn put(
    ctx: &SharedContext,
    kind: ResourceType,
    mesh: &str,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if ctx.read_only {
        return Err(ApiError::read_only());
    }
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large",
                "the request body exceeds apiServer.maxRequestBodyBytes (KUMA_API_SERVER_MAX_REQUEST_BODY_BYTES)",
            )
        } else {
            ApiError::bad_request(rejection.body_text(), Vec::new())
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("the request body is not valid JSON: {e}"),
            Vec::new(),
        )
    })?;
    let mut resource = Resource::from_json(value, Identity::Expected { kind, mesh, name })
        .map_err(|e| {
            // One line per refusal, naming what was refused and why.
            tracing::info!(%mesh, %kind, %name, error = %e, "resource refused");
            ApiError::invalid(e)
        })?;
    let (stored, created) = match if_match(headers)? {
        Some(version) => {
            resource.version = version;
            (ctx.store.update(resource).await?, false)
        }
        None => upsert(ctx.store.as_ref(), resource).await?,
    };
    tracing::info!(resource = %stored.key, version = %stored.version, created, "resource stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, [(header::ETAG, etag(&stored.version))]).into_response())
}

async fn delete(ctx: &SharedContext, key: ResourceKey) -> Result<Response, ApiError> {
    if ctx.read_only {
        return Err(ApiError::read_only());
    }
    if let Err(e) = ctx.store.delete(&key).await {
        return Err(missing(ctx, &key, e).await);
    }
    tracing::info!(resource = %key, "resource deleted");
    Ok(StatusCode::OK.into_response())
}

/// A resource that is not found because its mesh is not there says so,
/// rather than that the resource is missing.
async fn missing(ctx: &SharedContext, key: &ResourceKey, e: StoreError) -> ApiError {
    if matches!(e, StoreError::NotFound(_))
        && key.kind.is_mesh_scoped()
        && matches!(
            ctx.store.get(&ResourceKey::mesh(&key.mesh)).await,
            Err(StoreError::NotFound(_))
        )
    {
        return ApiError::not_found(format!(
            "mesh \"{}\" does not exist, so neither does its {} \"{}\" (kumactl get meshes lists them)",
            key.mesh, key.kind, key.name
        ));
    }
    e.into()
}

pub(super) async fn list_meshes(
    State(ctx): State<SharedContext>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    list(&ctx, ResourceType::Mesh, None, &uri, &headers).await
}

pub(super) async fn get_mesh(
    State(ctx): State<SharedContext>,
    Path(mesh): Path<String>,
) -> Result<Response, ApiError> {
    Ok(one(&ctx.store.get(&ResourceKey::mesh(&mesh)).await?))
}

pub(super) async fn put_mesh(
    State(ctx): State<SharedContext>,
    Path(mesh): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    put(&ctx, ResourceType::Mesh, "", &mesh, &headers, body).await
}

pub(super) async fn delete_mesh(
    State(ctx): State<SharedContext>,
    Path(mesh): Path<String>,
) -> Result<Response, ApiError> {
    delete(&ctx, ResourceKey::mesh(&mesh)).await
}

pub(super) async fn list_in_mesh(
    State(ctx): State<SharedContext>,
    Path((mesh, segment)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match collection(&segment)? {
        Collection::Kind(kind) => list(&ctx, kind, Some(&mesh), &uri, &headers).await,
        Collection::DataplaneOverviews => overview::list(&ctx, &mesh, &uri, &headers).await,
        Collection::PodsWithoutSidecar => {
            let items = ctx
                .outside_mesh
                .of_mesh(&mesh)
                .into_iter()
                .map(|p| serde_json::to_value(p).unwrap_or_default())
                .collect();
            Ok(page_response(items, None))
        }
    }
}

pub(super) async fn get_in_mesh(
    State(ctx): State<SharedContext>,
    Path((mesh, segment, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    match collection(&segment)? {
        Collection::Kind(kind) => {
            let key = ResourceKey::new(kind, &mesh, &name);
            match ctx.store.get(&key).await {
                Ok(resource) => Ok(one(&resource)),
                Err(e) => Err(missing(&ctx, &key, e).await),
            }
        }
        Collection::DataplaneOverviews => overview::get(&ctx, &mesh, &name).await,
        Collection::PodsWithoutSidecar => Err(ApiError::not_found(
            "list /meshes/{mesh}/pods-without-sidecar as a whole",
        )),
    }
}

fn writable_kind(segment: &str) -> Result<ResourceType, ApiError> {
    match collection(segment)? {
        Collection::Kind(kind) => Ok(kind),
        Collection::DataplaneOverviews | Collection::PodsWithoutSidecar => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            format!(
                "{segment} is read-only; write dataplanes at /meshes/{{mesh}}/dataplanes/{{name}}"
            ),
        )),
    }
}

pub(super) async fn put_in_mesh(
    State(ctx): State<SharedContext>,
    Path((mesh, segment, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = writable_kind(&segment)?;
    put(&ctx, kind, &mesh, &name, &headers, body).await
}

pub(super) async fn delete_in_mesh(
    State(ctx): State<SharedContext>,
    Path((mesh, segment, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = writable_kind(&segment)?;
    delete(&ctx, ResourceKey::new(kind, &mesh, &name)).await
}
