//! The HTTP API as an OpenAPI 3.0 document: served at `GET /openapi.json`
//! and committed as `docs/openapi.json` (a test fails when they differ).
//!
//! The paths are laid out from [`ResourceType`]'s collection names, the ones
//! the router's handlers resolve; every body's schema comes from the Rust
//! type the handler parses or answers with (schemars), so the document says
//! what the code does. schemathesis checks the running API against it.

use super::ControlPlaneIndex;
use super::error::ApiError;
use super::mesh_insights::MeshInsight;
use super::paging::{MAX_OFFSET, TOTAL_COUNT};
use super::token_server::{RevokeRequest, TokenRequestBody};
use super::tokens::UserTokenRequest;
use crate::resources::outside_mesh::PodWithoutSidecar;
use crate::resources::{DataplaneInsightSpec, DataplaneSpec, ResourceType, spec_schema};
use axum::http::StatusCode;
use schemars::SchemaGenerator;
use serde_json::{Map, Value, json};

/// Refusals any authenticated operation may answer: no valid credentials
/// (401), not permitted (403), the store or the API's limits (503).
const ANY_CALLER: [u16; 3] = [401, 403, 503];

/// The document, as served and committed.
pub fn document() -> Value {
    let mut doc = Document {
        generator: schemars::generate::SchemaSettings::openapi3().into_generator(),
        schemas: Map::new(),
        paths: Map::new(),
    };
    doc.schema_of::<ApiError>();
    doc.control_plane();
    doc.meshes();
    doc.mesh_insights();
    for kind in ResourceType::ALL {
        let Some(collection) = kind.collection() else {
            continue;
        };
        if kind == ResourceType::Mesh {
            continue;
        }
        doc.resource_schemas(kind);
        if kind.is_mesh_scoped() {
            doc.in_mesh(kind, collection);
        } else {
            doc.global(kind, collection);
        }
    }
    doc.overviews();
    doc.explain();
    doc.tokens();
    doc.finish()
}

/// The document as it is served and committed: pretty, one trailing newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

struct Document {
    generator: SchemaGenerator,
    schemas: Map<String, Value>,
    paths: Map<String, Value>,
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// Responses: the successes given, then each error code with the `Error`
/// body.
fn responses(ok: Vec<(u16, Value)>, errors: &[u16]) -> Value {
    let mut out = Map::new();
    for (code, response) in ok {
        out.insert(code.to_string(), response);
    }
    for code in errors {
        out.insert(
            code.to_string(),
            json!({ "description": reason(*code), "content": json_body(schema_ref("Error")) }),
        );
    }
    Value::Object(out)
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": description,
        "schema": { "type": "string" },
    })
}

/// With `default` as its example, the mesh every control plane has: the
/// examples schemathesis starts from find something.
fn mesh_param() -> Value {
    let mut param = path_param("mesh", "The mesh's name.");
    param["example"] = json!("default");
    param
}

fn name_param() -> Value {
    path_param("name", "The resource's name.")
}

/// `?size=&offset=`, and `?tag=key:value` where dataplanes are listed.
fn page_params(tags: bool) -> Vec<Value> {
    let mut params = vec![
        json!({
            "name": "size",
            "in": "query",
            "description": "Items per page, at most apiServer.maxPageSize (KUMA_API_SERVER_MAX_PAGE_SIZE); apiServer.defaultPageSize when not given.",
            "schema": { "type": "integer", "minimum": 1 },
        }),
        json!({
            "name": "offset",
            "in": "query",
            "description": "How many items to skip: the `next` link of the page before says.",
            "schema": { "type": "integer", "minimum": 0, "maximum": MAX_OFFSET },
        }),
    ];
    if tags {
        params.push(json!({
            "name": "tag",
            "in": "query",
            "description": "Only dataplanes with an inbound of this tag, as key:value (service:redis); repeat for more.",
            "style": "form",
            "explode": true,
            "schema": { "type": "array", "items": { "type": "string", "pattern": "^[^:]+:.+$" } },
        }));
    }
    params
}

fn etag_header() -> Value {
    json!({
        "ETag": {
            "description": "The resource's version: send it back in If-Match to update only that version.",
            "schema": { "type": "string" },
        }
    })
}

fn json_ok(description: &str, schema: Value) -> (u16, Value) {
    (
        200,
        json!({ "description": description, "content": json_body(schema) }),
    )
}

/// A page of a list, with how many match in all in `X-Total-Count` (the
/// body keeps the reference's shape, `items` and `next`).
fn page_ok(description: &str, schema: Value) -> (u16, Value) {
    let (status, mut response) = json_ok(description, schema);
    response["headers"] = json!({
        TOTAL_COUNT: {
            "description": "How many match in all, across pages.",
            "schema": { "type": "integer", "minimum": 0 },
        }
    });
    (status, response)
}

fn text_ok(description: &str, content_type: &str) -> (u16, Value) {
    (
        200,
        json!({
            "description": description,
            "content": { content_type: { "schema": { "type": "string" } } },
        }),
    )
}

/// One operation. Every one but the open ones (`open`: no credentials)
/// may also answer the refusals of [`ANY_CALLER`].
#[derive(Default)]
struct Op {
    id: String,
    summary: String,
    tag: &'static str,
    parameters: Vec<Value>,
    /// The JSON request body's schema.
    body: Option<Value>,
    ok: Vec<(u16, Value)>,
    errors: &'static [u16],
    open: bool,
}

impl Op {
    fn into_json(self) -> Value {
        let mut errors: Vec<u16> = if self.open {
            vec![503]
        } else {
            self.errors
                .iter()
                .chain(ANY_CALLER.iter())
                .copied()
                .collect()
        };
        errors.sort_unstable();
        errors.dedup();
        let mut op = json!({
            "operationId": self.id,
            "summary": self.summary,
            "tags": [self.tag],
        });
        if self.open {
            op["security"] = json!([]);
        }
        if !self.parameters.is_empty() {
            op["parameters"] = Value::Array(self.parameters);
        }
        if let Some(body) = self.body {
            op["requestBody"] = json!({ "required": true, "content": json_body(body) });
        }
        op["responses"] = responses(self.ok, &errors);
        op
    }
}

impl Document {
    fn add(&mut self, path: &str, method: &str, op: Op) {
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}));
        entry[method] = op.into_json();
    }

    /// The schema of a Rust type, filed under components.
    fn schema_of<T: schemars::JsonSchema>(&mut self) -> Value {
        self.generator.subschema_for::<T>().to_value()
    }

    /// `{Kind}`: the resource's wire form, its own fields beside `type`,
    /// `name` and `mesh` (which a body sent to a URL may leave out);
    /// `{Kind}Stored`: as answered, identity always there; `{Kind}List`: a
    /// page of them.
    fn resource_schemas(&mut self, kind: ResourceType) {
        let mut schema = spec_schema(kind, &mut self.generator).to_value();
        let mut identity = vec!["type", "name"];
        let properties = schema
            .as_object_mut()
            .map(|o| o.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        if let Some(properties) = properties {
            properties.insert(
                "type".into(),
                json!({ "type": "string", "enum": [kind.name()] }),
            );
            properties.insert(
                "name".into(),
                json!({ "type": "string", "description": "The name; a body sent to a URL may leave it out or repeat the URL's." }),
            );
            if kind.is_mesh_scoped() {
                properties.insert(
                    "mesh".into(),
                    json!({ "type": "string", "description": "The mesh; a body sent to a URL may leave it out or repeat the URL's." }),
                );
                identity.push("mesh");
            }
        }
        let name = kind.name();
        self.schemas.insert(name.to_string(), schema);
        self.schemas.insert(
            format!("{name}Stored"),
            json!({ "allOf": [schema_ref(name), { "required": identity }] }),
        );
        self.schemas.insert(
            format!("{name}List"),
            page_schema(schema_ref(&format!("{name}Stored"))),
        );
    }

    fn control_plane(&mut self) {
        let index = self.schema_of::<ControlPlaneIndex>();
        let tag = "Control plane";
        self.add(
            "/",
            "get",
            Op {
                id: "getIndex".into(),
                summary: "What this control plane is; needs no credentials.".into(),
                tag,
                ok: vec![json_ok("The control plane.", index)],
                open: true,
                ..Op::default()
            },
        );
        self.add(
            "/openapi.json",
            "get",
            Op {
                id: "getOpenApi".into(),
                summary: "This document; needs no credentials.".into(),
                tag,
                ok: vec![json_ok(
                    "The OpenAPI document.",
                    json!({ "type": "object" }),
                )],
                open: true,
                ..Op::default()
            },
        );
        self.add(
            "/control-plane/ca",
            "get",
            Op {
                id: "getControlPlaneCa".into(),
                summary: "The CA (PEM) that signed the certificate of the servers proxies talk to, what kuma-dp --ca-cert-file takes; needs no credentials. 404 when the control plane serves the user's certificate or plain text.".into(),
                tag,
                ok: vec![json_ok(
                    "The CA.",
                    json!({"type": "object", "required": ["caCert"], "properties": {"caCert": {"type": "string"}}}),
                )],
                errors: &[404],
                open: true,
                ..Op::default()
            },
        );
        self.add(
            "/metrics",
            "get",
            Op {
                id: "getMetrics".into(),
                summary: "The control plane's metrics (OpenMetrics text); the admin's only.".into(),
                tag,
                ok: vec![text_ok("The metrics.", crate::metrics::CONTENT_TYPE)],
                ..Op::default()
            },
        );
    }

    fn meshes(&mut self) {
        self.resource_schemas(ResourceType::Mesh);
        self.list(
            "/meshes",
            ResourceType::Mesh,
            "listMeshes",
            page_params(false),
        );
        self.one("/meshes/{mesh}", ResourceType::Mesh, vec![mesh_param()]);
    }

    /// What each mesh holds at a glance.
    fn mesh_insights(&mut self) {
        let insight = self.schema_of::<MeshInsight>();
        self.schemas
            .insert("MeshInsightList".into(), page_schema(insight.clone()));
        let tag = "Mesh";
        self.add(
            "/mesh-insights",
            "get",
            Op {
                id: "listMeshInsights".into(),
                summary: "A page of meshes, each with its dataplanes online and offline, its policies of each kind and its CA's validity.".into(),
                tag,
                parameters: page_params(false),
                ok: vec![page_ok("One page.", schema_ref("MeshInsightList"))],
                errors: &[400],
                ..Op::default()
            },
        );
        self.add(
            "/mesh-insights/{mesh}",
            "get",
            Op {
                id: "getMeshInsight".into(),
                summary: "A mesh's dataplanes online and offline, its policies of each kind and its CA's validity.".into(),
                tag,
                parameters: vec![mesh_param()],
                ok: vec![json_ok("The mesh's insight.", insight)],
                errors: &[404],
                ..Op::default()
            },
        );
    }

    fn in_mesh(&mut self, kind: ResourceType, collection: &str) {
        let name = kind.name();
        let dataplanes = kind == ResourceType::Dataplane;
        let mut params = vec![mesh_param()];
        params.extend(page_params(dataplanes));
        self.list(
            &format!("/meshes/{{mesh}}/{collection}"),
            kind,
            &format!("list{name}s"),
            params,
        );
        self.one(
            &format!("/meshes/{{mesh}}/{collection}/{{name}}"),
            kind,
            vec![mesh_param(), name_param()],
        );
        // Across every mesh the caller may read.
        self.list(
            &format!("/{collection}"),
            kind,
            &format!("list{name}sOfEveryMesh"),
            page_params(dataplanes),
        );
    }

    fn global(&mut self, kind: ResourceType, collection: &str) {
        let name = kind.name();
        self.list(
            &format!("/{collection}"),
            kind,
            &format!("list{name}s"),
            page_params(false),
        );
        self.one(&format!("/{collection}/{{name}}"), kind, vec![name_param()]);
    }

    fn list(&mut self, path: &str, kind: ResourceType, id: &str, parameters: Vec<Value>) {
        let name = kind.name();
        self.add(
            path,
            "get",
            Op {
                id: id.into(),
                summary: format!("A page of {name}s."),
                tag: name,
                parameters,
                ok: vec![page_ok(
                    "One page; `next` links the page after it.",
                    schema_ref(&format!("{name}List")),
                )],
                errors: &[400, 404],
                ..Op::default()
            },
        );
    }

    /// GET, PUT and DELETE of one resource.
    fn one(&mut self, path: &str, kind: ResourceType, parameters: Vec<Value>) {
        let name = kind.name();
        let with_etag = |description: String, content: Option<Value>| {
            let mut response = json!({ "description": description, "headers": etag_header() });
            if let Some(content) = content {
                response["content"] = content;
            }
            response
        };
        self.add(
            path,
            "get",
            Op {
                id: format!("get{name}"),
                summary: format!("One {name}."),
                tag: name,
                parameters: parameters.clone(),
                ok: vec![(
                    200,
                    with_etag(
                        format!("The {name}."),
                        Some(json_body(schema_ref(&format!("{name}Stored")))),
                    ),
                )],
                errors: &[404],
                ..Op::default()
            },
        );
        let mut put_parameters = parameters.clone();
        put_parameters.push(json!({
            "name": "If-Match",
            "in": "header",
            "description": "Update only the version of this ETag; 409 when it changed since.",
            "schema": { "type": "string" },
        }));
        self.add(
            path,
            "put",
            Op {
                id: format!("put{name}"),
                summary: format!(
                    "Creates or replaces the {name}; 405 where the API is read-only (Kubernetes)."
                ),
                tag: name,
                parameters: put_parameters,
                body: Some(schema_ref(name)),
                ok: vec![
                    (200, with_etag("Replaced.".into(), None)),
                    (201, with_etag("Created.".into(), None)),
                ],
                errors: &[400, 404, 405, 409, 413],
                ..Op::default()
            },
        );
        self.add(
            path,
            "delete",
            Op {
                id: format!("delete{name}"),
                summary: format!(
                    "Deletes the {name}; 405 where the API is read-only (Kubernetes)."
                ),
                tag: name,
                parameters,
                ok: vec![(200, json!({ "description": "Deleted." }))],
                errors: &[404, 405],
                ..Op::default()
            },
        );
    }

    /// Dataplanes with their insights, and pods that should have a sidecar.
    fn overviews(&mut self) {
        let dataplane = self.schema_of::<DataplaneSpec>();
        let insight = self.schema_of::<DataplaneInsightSpec>();
        self.schemas.insert(
            "DataplaneOverview".into(),
            json!({
                "type": "object",
                "required": ["type", "mesh", "name", "dataplane", "dataplaneInsight"],
                "additionalProperties": false,
                "properties": {
                    "type": { "type": "string", "enum": ["DataplaneOverview"] },
                    "mesh": { "type": "string" },
                    "name": { "type": "string" },
                    "dataplane": dataplane,
                    "dataplaneInsight": insight,
                },
            }),
        );
        self.schemas.insert(
            "DataplaneOverviewList".into(),
            page_schema(schema_ref("DataplaneOverview")),
        );
        let mut parameters = vec![mesh_param()];
        parameters.extend(page_params(true));
        parameters.push(json!({
            "name": "status",
            "in": "query",
            "description": "Only dataplanes online (an xDS stream open) or offline.",
            "schema": { "type": "string", "enum": ["online", "offline"] },
        }));
        let tag = "Dataplane";
        self.add(
            "/meshes/{mesh}/dataplanes+insights",
            "get",
            Op {
                id: "listDataplaneOverviews".into(),
                summary: "A page of dataplanes, each with what the control plane knows of its xDS streams.".into(),
                tag,
                parameters,
                ok: vec![page_ok("One page.", schema_ref("DataplaneOverviewList"))],
                errors: &[400, 404],
                ..Op::default()
            },
        );
        self.add(
            "/meshes/{mesh}/dataplanes+insights/{name}",
            "get",
            Op {
                id: "getDataplaneOverview".into(),
                summary: "A dataplane with what the control plane knows of its xDS streams.".into(),
                tag,
                parameters: vec![mesh_param(), name_param()],
                ok: vec![json_ok(
                    "The dataplane and its insight.",
                    schema_ref("DataplaneOverview"),
                )],
                errors: &[404],
                ..Op::default()
            },
        );
        let pod = self.schema_of::<PodWithoutSidecar>();
        self.add(
            "/meshes/{mesh}/pods-without-sidecar",
            "get",
            Op {
                id: "listPodsWithoutSidecar".into(),
                summary: "Kubernetes: pods of a namespace labelled for the mesh that run without a sidecar.".into(),
                tag,
                parameters: vec![mesh_param()],
                ok: vec![page_ok("Every such pod.", page_schema(pod))],
                errors: &[404],
                ..Op::default()
            },
        );
    }

    /// Why a proxy got what it got, and what it got.
    fn explain(&mut self) {
        for (view, id, summary) in [
            (
                "policies",
                "explainDataplanePolicies",
                "Which policy of each kind applies to the dataplane, and which selector won.",
            ),
            (
                "xds",
                "explainDataplaneXds",
                "The Envoy resources the proxy was sent (or would be now), each with why.",
            ),
        ] {
            self.add(
                &format!("/meshes/{{mesh}}/dataplanes/{{name}}/{view}"),
                "get",
                Op {
                    id: id.into(),
                    summary: summary.into(),
                    tag: "Dataplane",
                    parameters: vec![mesh_param(), name_param()],
                    ok: vec![json_ok("The explanation.", json!({ "type": "object" }))],
                    errors: &[404],
                    ..Op::default()
                },
            );
        }
    }

    fn tokens(&mut self) {
        let user = self.schema_of::<UserTokenRequest>();
        let revocation = self.schema_of::<RevokeRequest>();
        let dataplane = self.schema_of::<TokenRequestBody>();
        for (path, id, summary, body) in [
            (
                "/tokens/user",
                "generateUserToken",
                "A user token (the admin only).",
                user,
            ),
            (
                "/tokens/user/revocations",
                "revokeUserToken",
                "Revokes a user token from the next request on (the admin only).",
                revocation,
            ),
            (
                "/tokens/dataplane",
                "generateDataplaneToken",
                "A dataplane token, for whoever may generate the mesh's tokens.",
                dataplane,
            ),
        ] {
            self.add(
                path,
                "post",
                Op {
                    id: id.into(),
                    summary: summary.into(),
                    tag: "Tokens",
                    body: Some(body),
                    ok: vec![text_ok("The token, or what was revoked.", "text/plain")],
                    errors: &[400, 404],
                    ..Op::default()
                },
            );
        }
    }

    fn finish(mut self) -> Value {
        let mut schemas = self.generator.take_definitions(true);
        schemas.extend(std::mem::take(&mut self.schemas));
        schemas.sort_keys();
        json!({
            "openapi": "3.0.3",
            "info": {
                "title": "kuma-cp HTTP API",
                "version": crate::version::VERSION,
                "description": "Meshes, the resources inside them and the global kinds, as Kuma documents them. Port 5681 (KUMA_API_SERVER_PORT), HTTPS 5683 with client certificates. From localhost every request is the admin's (KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN); elsewhere send a user token. Every error is an `Error`.",
            },
            "servers": [{ "url": "http://localhost:5681" }],
            "security": [{}, { "userToken": [] }],
            "paths": self.paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "userToken": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "A user token: kumactl generate user-token, or POST /tokens/user.",
                    },
                },
            },
        })
    }
}

/// `{"items": [...], "next": "..."}`.
fn page_schema(item: Value) -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "additionalProperties": false,
        "properties": {
            "items": { "type": "array", "items": item },
            "next": { "type": "string", "description": "The next page, when there is one." },
        },
    })
}
