//! List queries: `?size=&offset=` paging with a `next` link, and the
//! `?tag=key:value` filter of dataplanes.

use super::authn::Caller;
use super::{ApiError, SharedContext};
use crate::resources::{Access, Cause, Resource, ResourceType, tags::Tags};
use crate::store::{ListPage, ListQuery};
use axum::Json;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};

/// The largest `offset` accepted: far beyond any real list, and small
/// enough that `offset + size` cannot overflow.
pub const MAX_OFFSET: usize = i32::MAX as usize;

pub struct ListParams {
    pub size: usize,
    pub offset: usize,
    pub tags: Tags,
    /// Parameters of one list only (`status` of dataplanes+insights),
    /// which its `next` link carries on.
    pub carried: Vec<(&'static str, String)>,
}

impl ListParams {
    pub fn parse(uri: &Uri, default_size: usize, max_size: usize) -> Result<Self, ApiError> {
        let mut params = ListParams {
            size: default_size,
            offset: 0,
            tags: Tags::new(),
            carried: Vec::new(),
        };
        let mut causes = Vec::new();
        let query = uri.query().unwrap_or("");
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "size" => match value.parse::<usize>() {
                    Ok(n) if (1..=max_size).contains(&n) => params.size = n,
                    _ => causes.push(Cause::new(
                        "size",
                        format!("\"{value}\" must be a whole number from 1 to {max_size}"),
                    )),
                },
                "offset" => match value.parse::<usize>() {
                    Ok(n) if n <= MAX_OFFSET => params.offset = n,
                    _ => causes.push(Cause::new(
                        "offset",
                        format!("\"{value}\" must be a whole number from 0 to {MAX_OFFSET}"),
                    )),
                },
                "tag" => match value.split_once(':') {
                    Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                        params.tags.insert(k.to_string(), v.to_string());
                    }
                    _ => causes.push(Cause::new(
                        "tag",
                        format!("\"{value}\" must be key:value, e.g. service:redis"),
                    )),
                },
                _ => {}
            }
        }
        if causes.is_empty() {
            Ok(params)
        } else {
            Err(ApiError::bad_request("Invalid list parameters", causes))
        }
    }

    /// The link to the page after this one, when there is more.
    pub fn next_link(&self, uri: &Uri, headers: &HeaderMap, total: usize) -> Option<String> {
        let next_offset = self.offset.saturating_add(self.size);
        if next_offset >= total {
            return None;
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.tags {
            query.append_pair("tag", &format!("{k}:{v}"));
        }
        for (k, v) in &self.carried {
            query.append_pair(k, v);
        }
        query.append_pair("offset", &next_offset.to_string());
        query.append_pair("size", &self.size.to_string());
        Some(format!("http://{host}{}?{}", uri.path(), query.finish()))
    }
}

/// The header that says how many items a list has across its pages.
pub const TOTAL_COUNT: &str = "X-Total-Count";

/// A page of a list: `items`, and `next` when there is more, as the
/// reference writes them (its examples answer byte for byte); how many
/// match in all, which a page cannot show, is in [`TOTAL_COUNT`].
pub fn page_response<T: serde::Serialize>(
    items: &[T],
    total: usize,
    next: Option<String>,
) -> Response {
    /// `items`, then `next` when there is more.
    #[derive(serde::Serialize)]
    struct Page<'a, T> {
        items: &'a [T],
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    }
    let body = Page { items, next };
    ([(TOTAL_COUNT, total.to_string())], Json(body)).into_response()
}

/// One page of what `query` matches and the caller may read. A caller who
/// may read only some names gets the store's whole list filtered, then
/// paged; everyone else gets the store's own page.
pub(super) async fn visible_page(
    ctx: &SharedContext,
    caller: &Caller,
    query: ListQuery,
) -> Result<ListPage, ApiError> {
    let kind = query.kind;
    let reads_every = match &query.mesh {
        Some(mesh) => caller.permissions.reads_every(kind, mesh),
        None => caller.permissions.is_admin(),
    };
    if reads_every {
        return Ok(ctx.store.list(&query).await?);
    }
    let all = ctx
        .store
        .list(&ListQuery {
            offset: 0,
            limit: None,
            ..query.clone()
        })
        .await?;
    let readable: Vec<Resource> = all
        .items
        .into_iter()
        .filter(|r| {
            let mesh = if kind == ResourceType::Mesh {
                &r.key.name
            } else {
                &r.key.mesh
            };
            caller
                .permissions
                .may(Access::Read, kind, mesh, &r.key.name)
        })
        .collect();
    let total = readable.len();
    let items = readable
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .collect();
    Ok(ListPage { items, total })
}
