//! `GET`, `PUT` and `DELETE` of meshes, of the resources inside them, and
//! of the global kinds (`/access-roles`, `/access-role-bindings`). Every
//! handler asks the [`Caller`]'s permissions first, before it looks
//! anything up, so an answer never tells whether something the caller may
//! not read exists.

use super::authn::Caller;
use super::error::mesh_not_found;
use super::overview;
use super::paging::{ListParams, page_response, visible_page};
use super::{ApiError, SharedContext};
use crate::resources::{Access, Identity, Resource, ResourceKey, ResourceType, ResourceVersion};
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
    let mut resp = Json(resource).into_response();
    resp.headers_mut()
        .insert(header::ETAG, etag(&resource.version));
    resp
}

/// 403 unless the caller may read some `kind` of `mesh`.
fn require_listing(caller: &Caller, kind: ResourceType, mesh: &str) -> Result<(), ApiError> {
    if caller.permissions.may_list(kind, mesh) {
        Ok(())
    } else {
        caller.require(Access::Read, kind, mesh, "")
    }
}

async fn list(
    ctx: &SharedContext,
    caller: &Caller,
    kind: ResourceType,
    mesh: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let params = ListParams::parse(uri, ctx.default_page_size, ctx.max_page_size)?;
    match mesh {
        Some(mesh) => require_listing(caller, kind, mesh)?,
        // Meshes and lists across meshes show what may be read.
        None if kind.is_mesh_scoped() || kind == ResourceType::Mesh => {}
        None => caller.require(Access::Read, kind, "", "")?,
    }
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
    let page = visible_page(ctx, caller, query).await?;
    let next = params.next_link(uri, headers, page.total);
    Ok(page_response(&page.items, page.total, next))
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

/// The mesh a permission of `kind` `name` in `mesh` is about: a `Mesh`
/// is its own.
fn ruled_mesh<'a>(kind: ResourceType, mesh: &'a str, name: &'a str) -> &'a str {
    if kind == ResourceType::Mesh {
        name
    } else {
        mesh
    }
}

#[allow(clippy::too_many_arguments)]
async fn put(
    ctx: &SharedContext,
    caller: &Caller,
    kind: ResourceType,
    mesh: &str,
    name: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if ctx.read_only {
        return Err(ApiError::read_only());
    }
    let ruled = ruled_mesh(kind, mesh, name);
    // Whether it exists is told only to who may read it.
    caller.require(Access::Read, kind, ruled, name)?;
    let key = ResourceKey::new(kind, mesh, name);
    let access = match ctx.store.get(&key).await {
        Ok(_) => Access::Update,
        Err(StoreError::NotFound(_) | StoreError::MeshNotFound(_)) => Access::Create,
        Err(e) => return Err(e.into()),
    };
    caller.require(access, kind, ruled, name)?;
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
    admitted(ctx, &resource).await?;
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

/// A Dataplane its mesh does not admit (`Mesh.constraints`) is refused
/// here, as it would be when its proxy connects.
async fn admitted(ctx: &SharedContext, resource: &Resource) -> Result<(), ApiError> {
    let crate::resources::Spec::Dataplane(dataplane) = &resource.spec else {
        return Ok(());
    };
    let mesh = match ctx.store.get(&ResourceKey::mesh(&resource.key.mesh)).await {
        Ok(mesh) => mesh,
        // The store says so when it is written.
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let crate::resources::Spec::Mesh(spec) = &mesh.spec else {
        return Ok(());
    };
    spec.admits(&resource.key.mesh, dataplane).map_err(|why| {
        tracing::info!(mesh = %resource.key.mesh, dataplane = %resource.key.name, "dataplane refused: {why}");
        ApiError::bad_request(
            "Dataplane not admitted to its mesh",
            vec![crate::resources::Cause::new("networking.inbound", why)],
        )
    })
}

async fn delete(
    ctx: &SharedContext,
    caller: &Caller,
    key: ResourceKey,
) -> Result<Response, ApiError> {
    if ctx.read_only {
        return Err(ApiError::read_only());
    }
    caller.require(
        Access::Delete,
        key.kind,
        ruled_mesh(key.kind, &key.mesh, &key.name),
        &key.name,
    )?;
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
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    list(&ctx, &caller, ResourceType::Mesh, None, &uri, &headers).await
}

pub(super) async fn get_mesh(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path(mesh): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Access::Read, ResourceType::Mesh, &mesh, &mesh)?;
    Ok(one(&ctx.store.get(&ResourceKey::mesh(&mesh)).await?))
}

pub(super) async fn put_mesh(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path(mesh): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    put(&ctx, &caller, ResourceType::Mesh, "", &mesh, &headers, body).await
}

pub(super) async fn delete_mesh(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path(mesh): Path<String>,
) -> Result<Response, ApiError> {
    delete(&ctx, &caller, ResourceKey::mesh(&mesh)).await
}

/// A kind outside meshes (`/access-roles`), or one inside them listed
/// across every mesh the caller may read (`/dataplanes`).
fn global_collection(segment: &str) -> Result<ResourceType, ApiError> {
    ResourceType::ALL
        .into_iter()
        .find(|k| k.collection() == Some(segment) && *k != ResourceType::Mesh)
        .ok_or_else(|| ApiError::not_found("no such endpoint; see GET / and /meshes"))
}

fn global_kind(segment: &str) -> Result<ResourceType, ApiError> {
    let kind = global_collection(segment)?;
    if kind.is_mesh_scoped() {
        return Err(ApiError::not_found(format!(
            "a {kind} belongs to a mesh: use /meshes/{{mesh}}/{segment}/{{name}}"
        )));
    }
    Ok(kind)
}

pub(super) async fn list_global(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path(segment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = global_collection(&segment)?;
    list(&ctx, &caller, kind, None, &uri, &headers).await
}

/// `/{collection}` answers GET only; a path that names no collection
/// (`POST /bootstrap` sent to the wrong port, say) is not found.
pub(super) async fn other_method_global(Path(segment): Path<String>) -> ApiError {
    match global_collection(&segment) {
        Ok(_) => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            format!("/{segment} answers GET only"),
        ),
        Err(e) => e,
    }
}

pub(super) async fn get_global(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((segment, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = global_kind(&segment)?;
    caller.require(Access::Read, kind, "", &name)?;
    Ok(one(&ctx
        .store
        .get(&ResourceKey::new(kind, "", &name))
        .await?))
}

pub(super) async fn put_global(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((segment, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = global_kind(&segment)?;
    put(&ctx, &caller, kind, "", &name, &headers, body).await
}

pub(super) async fn delete_global(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((segment, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = global_kind(&segment)?;
    delete(&ctx, &caller, ResourceKey::new(kind, "", &name)).await
}

pub(super) async fn list_in_mesh(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((mesh, segment)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match collection(&segment)? {
        Collection::Kind(kind) => list(&ctx, &caller, kind, Some(&mesh), &uri, &headers).await,
        Collection::DataplaneOverviews => {
            require_listing(&caller, ResourceType::Dataplane, &mesh)?;
            overview::list(&ctx, &caller, &mesh, &uri, &headers).await
        }
        Collection::PodsWithoutSidecar => {
            require_listing(&caller, ResourceType::Dataplane, &mesh)?;
            let items = ctx.outside_mesh.of_mesh(&mesh);
            Ok(page_response(&items, items.len(), None))
        }
    }
}

pub(super) async fn get_in_mesh(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((mesh, segment, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let collection = collection(&segment)?;
    let kind = match collection {
        Collection::Kind(kind) => kind,
        Collection::DataplaneOverviews | Collection::PodsWithoutSidecar => ResourceType::Dataplane,
    };
    caller.require(Access::Read, kind, &mesh, &name)?;
    match collection {
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
    caller: Caller,
    Path((mesh, segment, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = writable_kind(&segment)?;
    put(&ctx, &caller, kind, &mesh, &name, &headers, body).await
}

pub(super) async fn delete_in_mesh(
    State(ctx): State<SharedContext>,
    caller: Caller,
    Path((mesh, segment, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let kind = writable_kind(&segment)?;
    delete(&ctx, &caller, ResourceKey::new(kind, &mesh, &name)).await
}
