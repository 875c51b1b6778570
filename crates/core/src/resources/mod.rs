//! The resource model: one Rust type per kind, shared by every store, the
//! HTTP API and `kumactl`.
//!
//! On the wire a resource is one flat object: `type`, `name`, `mesh` (for
//! mesh-scoped kinds) and the kind's own fields beside them, exactly as the
//! Kuma documentation shows. In memory it is a [`Resource`]: a [`ResourceKey`]
//! plus a typed [`Spec`]. [`Resource::from_json`] is the only way in from
//! user input and always validates, so a stored resource is a valid one.

mod access;
mod dataplane;
mod dataplane_insight;
mod dialect;
mod gateway;
mod kind;
mod membership;
mod mesh;
mod mesh_http_route;
mod mesh_tcp_route;
mod mesh_tls;
mod mesh_traffic_permission;
pub mod outside_mesh;
mod policy;
mod proxy_template;
mod secret;
pub mod tags;
mod target_ref;
mod traffic_route;
mod traffic_trace;
mod validation;

pub use access::{Access, AccessRoleBindingSpec, AccessRoleSpec, AccessRule, Subject, SubjectKind};
pub use dataplane::{
    DataplaneSpec, InboundEndpoint, InboundHealth, InboundInterface, Networking, OutboundEndpoint,
    OutboundInterface, TransparentProxying,
};
pub use dataplane_insight::{
    ComponentVersion, DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription,
    MtlsInsight, SubscriptionStatus, SubscriptionVersion,
};
pub use gateway::{
    CrossMesh, CrossMeshGateways, Gateway, GatewayListener, GatewayType, MESH_TAG,
    MeshGatewayRouteSpec, MeshGatewaySpec,
};
pub use kind::ResourceType;
pub use membership::{Constraints, DataplaneProxyConstraints, NAMESPACE_TAG, TagsRule};
pub use mesh::{
    BuiltinCa, CertificateAuthority, FileLoggingBackend, Logging, LoggingBackend, MeshSpec, Mtls,
    TcpLoggingBackend, Tracing, TracingBackend, TracingBackendType, ZipkinConf,
};
pub use mesh_http_route::{
    HeaderMatch, HeaderMatchType, HeaderModifier, HttpFilter, HttpFilterType, HttpMatch,
    HttpRouteConf, HttpRouteRule, HttpRouteTo, MeshHttpRouteSpec, Method, PathMatch, PathMatchType,
    PathRewrite, PathRewriteType, QueryMatchType, QueryParamsMatch, RequestMirror, RequestRedirect,
    UrlRewrite,
};
pub use mesh_tcp_route::{MeshTcpRouteSpec, TcpRouteConf, TcpRouteRule, TcpRouteTo};
pub use mesh_tls::{
    MeshTlsConf, MeshTlsFrom, MeshTlsRule, MeshTlsSpec, TlsCipher, TlsMode, TlsVersion,
    TlsVersionRange,
};
pub use mesh_traffic_permission::{
    Action as PermissionAction, IdentityConf, IdentityMatch, MeshTrafficPermissionSpec,
    PermissionConf, PermissionFrom, PermissionRule, SpiffeIdMatch, SpiffeIdMatchType,
};
pub use policy::{
    Selector, Specificity, TrafficLogConf, TrafficLogRule, TrafficLogSpec, TrafficPermissionRule,
    TrafficPermissionSpec, for_connection, for_dataplane, most_specific,
};
pub use proxy_template::{
    DEFAULT_PROFILE, ParsedProxyTemplate, ProxyTemplateRawResource, ProxyTemplateSpec, RAW_TYPES,
};
pub use secret::{CA_SECRET, SecretSpec};
pub use target_ref::{
    BackendRef, PolicyDocument, ProxyType, ServicePort, Subset, Tag, TargetRef, TargetRefKind,
    TargetRefPolicy,
};
pub use traffic_route::{TrafficRouteSpec, WeightedDestination};
pub use traffic_trace::{TrafficTraceConf, TrafficTraceSpec};
pub use validation::{Cause, ValidationError, describe_error_body};

use serde_json::{Map, Value};

/// Identifies one stored resource. `mesh` is empty for `Mesh` itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceType,
    pub mesh: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: ResourceType, mesh: &str, name: &str) -> Self {
        let mesh = if kind.is_mesh_scoped() { mesh } else { "" };
        ResourceKey {
            kind,
            mesh: mesh.to_string(),
            name: name.to_string(),
        }
    }

    pub fn mesh(name: &str) -> Self {
        Self::new(ResourceType::Mesh, "", name)
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.is_mesh_scoped() {
            write!(
                f,
                "{} \"{}\" in mesh \"{}\"",
                self.kind, self.name, self.mesh
            )
        } else {
            write!(f, "{} \"{}\"", self.kind, self.name)
        }
    }
}

/// The kind-specific part of a resource. Today's policies are boxed: a
/// `targetRef` is large, and every spec would be as large as the largest.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Mesh(MeshSpec),
    Dataplane(DataplaneSpec),
    TrafficPermission(TrafficPermissionSpec),
    TrafficLog(TrafficLogSpec),
    TrafficRoute(TrafficRouteSpec),
    TrafficTrace(TrafficTraceSpec),
    ProxyTemplate(ProxyTemplateSpec),
    MeshGateway(MeshGatewaySpec),
    MeshGatewayRoute(MeshGatewayRouteSpec),
    Secret(SecretSpec),
    DataplaneInsight(DataplaneInsightSpec),
    AccessRole(AccessRoleSpec),
    AccessRoleBinding(AccessRoleBindingSpec),
    MeshTrafficPermission(Box<PolicyDocument<MeshTrafficPermissionSpec>>),
    MeshTcpRoute(Box<PolicyDocument<MeshTcpRouteSpec>>),
    MeshHttpRoute(Box<PolicyDocument<MeshHttpRouteSpec>>),
    MeshTls(Box<PolicyDocument<MeshTlsSpec>>),
}

impl Spec {
    /// [`Spec::from_fields`] from JSON text, without building a
    /// [`Value`] first: stores read specs back this way, where the tree of
    /// maps would be built only to be thrown away.
    pub fn from_json_text(kind: ResourceType, text: &[u8]) -> Result<Spec, Cause> {
        let mut fields = serde_json::Deserializer::from_slice(text);
        let spec = Self::from_fields(kind, &mut fields)?;
        fields
            .end()
            .map_err(|e| Cause::new(String::new(), e.to_string()))?;
        Ok(spec)
    }

    /// Parses the kind's own fields (everything but `type`, `name`, `mesh`)
    /// from a [`Value`] or any other deserializer. Unknown fields and wrong
    /// types are reported with their path.
    pub fn from_fields<'de, D>(kind: ResourceType, fields: D) -> Result<Spec, Cause>
    where
        D: serde::Deserializer<'de>,
    {
        fn parse<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
            fields: D,
        ) -> Result<T, Cause> {
            serde_path_to_error::deserialize(fields).map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." { String::new() } else { path };
                Cause::new(field, e.into_inner().to_string())
            })
        }
        Ok(match kind {
            ResourceType::Mesh => Spec::Mesh(parse(fields)?),
            ResourceType::Dataplane => Spec::Dataplane(parse(fields)?),
            ResourceType::TrafficPermission => Spec::TrafficPermission(parse(fields)?),
            ResourceType::TrafficLog => Spec::TrafficLog(parse(fields)?),
            ResourceType::TrafficRoute => Spec::TrafficRoute(parse(fields)?),
            ResourceType::TrafficTrace => Spec::TrafficTrace(parse(fields)?),
            ResourceType::ProxyTemplate => Spec::ProxyTemplate(parse(fields)?),
            ResourceType::MeshGateway => Spec::MeshGateway(parse(fields)?),
            ResourceType::MeshGatewayRoute => Spec::MeshGatewayRoute(parse(fields)?),
            ResourceType::Secret | ResourceType::GlobalSecret => Spec::Secret(parse(fields)?),
            ResourceType::DataplaneInsight => Spec::DataplaneInsight(parse(fields)?),
            ResourceType::AccessRole => Spec::AccessRole(parse(fields)?),
            ResourceType::AccessRoleBinding => Spec::AccessRoleBinding(parse(fields)?),
            ResourceType::MeshTrafficPermission => Spec::MeshTrafficPermission(parse(fields)?),
            ResourceType::MeshTcpRoute => Spec::MeshTcpRoute(parse(fields)?),
            ResourceType::MeshHttpRoute => Spec::MeshHttpRoute(parse(fields)?),
            ResourceType::MeshTls => Spec::MeshTls(parse(fields)?),
        })
    }

    /// The kind's own fields as a JSON object.
    pub fn to_fields(&self) -> Value {
        // Serializing plain structs of strings, maps and numbers cannot fail.
        serde_json::to_value(SpecFields(self)).unwrap_or(Value::Object(Map::new()))
    }

    /// Limits a `targetRef` policy to the proxies of `namespace` (one
    /// created in a Kubernetes application namespace); other kinds are
    /// left as they are.
    pub fn limit_to_namespace(&mut self, namespace: &str) {
        let slot = match self {
            Spec::MeshTrafficPermission(d) => &mut d.namespace,
            Spec::MeshTcpRoute(d) => &mut d.namespace,
            Spec::MeshHttpRoute(d) => &mut d.namespace,
            Spec::MeshTls(d) => &mut d.namespace,
            _ => return,
        };
        *slot = Some(namespace.to_string());
    }

    fn validate(&self) -> Vec<Cause> {
        match self {
            Spec::Mesh(s) => s.validate(),
            Spec::Dataplane(s) => s.validate(),
            Spec::TrafficPermission(s) => s.validate(),
            Spec::TrafficLog(s) => s.validate(),
            Spec::TrafficRoute(s) => s.validate(),
            Spec::TrafficTrace(s) => s.validate(),
            Spec::ProxyTemplate(s) => s.validate(),
            Spec::MeshGateway(s) => s.validate(),
            Spec::MeshGatewayRoute(s) => s.validate(),
            Spec::Secret(s) => s.validate(),
            Spec::DataplaneInsight(_) => Vec::new(),
            Spec::AccessRole(s) => s.validate(),
            Spec::AccessRoleBinding(s) => s.validate(),
            Spec::MeshTrafficPermission(s) => s.validate(),
            Spec::MeshTcpRoute(s) => s.validate(),
            Spec::MeshHttpRoute(s) => s.validate(),
            Spec::MeshTls(s) => s.validate(),
        }
    }
}

/// A stored resource's version, as its store spells it: a counter in memory
/// and Postgres, the `resourceVersion` string on Kubernetes. Opaque: only
/// compared for equality (an update must carry the version it read), and
/// empty for a resource that is not stored yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ResourceVersion(String);

impl ResourceVersion {
    pub fn new(version: impl Into<String>) -> Self {
        ResourceVersion(version.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Not stored yet.
    pub fn is_unset(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resource: its identity, its version in the store (unset when not
/// stored yet) and its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub key: ResourceKey,
    pub version: ResourceVersion,
    pub spec: Spec,
}

/// Which identity fields must be present in a parsed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity<'a> {
    /// The document must carry its own `type`, `name` and `mesh` (a file
    /// given to `kumactl apply`).
    FromDocument,
    /// The identity comes from a URL; the body may repeat it but must not
    /// contradict it.
    Expected {
        kind: ResourceType,
        mesh: &'a str,
        name: &'a str,
    },
}

impl Resource {
    pub fn new(key: ResourceKey, spec: Spec) -> Self {
        Resource {
            key,
            version: ResourceVersion::default(),
            spec,
        }
    }

    /// Parses and validates one resource from its wire form. Every problem
    /// found is reported at once.
    pub fn from_json(value: Value, identity: Identity<'_>) -> Result<Resource, ValidationError> {
        let Value::Object(mut fields) = value else {
            return Err(ValidationError::single(
                "",
                "a resource must be a JSON/YAML object",
            ));
        };
        let mut causes = Vec::new();
        let mut take_str = |fields: &mut Map<String, Value>, key: &str| match fields.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                causes.push(Cause::new(key, format!("must be a string, got {other}")));
                None
            }
        };
        let type_field = take_str(&mut fields, "type");
        let name_field = take_str(&mut fields, "name");
        let mesh_field = take_str(&mut fields, "mesh");

        let kind = match (&identity, &type_field) {
            (Identity::Expected { kind, .. }, Some(t)) if t != kind.name() => {
                causes.push(Cause::new(
                    "type",
                    format!(
                        "\"{t}\" does not match the URL, which is for a {}",
                        kind.name()
                    ),
                ));
                Some(*kind)
            }
            (Identity::Expected { kind, .. }, _) => Some(*kind),
            (Identity::FromDocument, Some(t)) => match ResourceType::from_name(t) {
                Some(k) if k.is_user_managed() => Some(k),
                _ => {
                    let names = ResourceType::user_managed_names();
                    let suggestion = names
                        .iter()
                        .find(|n| n.eq_ignore_ascii_case(t))
                        .map(|n| format!("did you mean \"{n}\"? "))
                        .unwrap_or_default();
                    causes.push(Cause::new(
                        "type",
                        format!(
                            "unknown type \"{t}\"; {suggestion}expected one of {}",
                            names.join(", ")
                        ),
                    ));
                    None
                }
            },
            (Identity::FromDocument, None) => {
                causes.push(Cause::new("type", "must be set"));
                None
            }
        };

        let name = resolve_identity(&identity, "name", name_field, &mut causes);
        let mesh = match kind {
            Some(k) if k.is_mesh_scoped() => {
                resolve_identity(&identity, "mesh", mesh_field, &mut causes)
            }
            // An unknown type: whether it has a mesh cannot be told.
            None => String::new(),
            Some(_) => {
                if let Some(m) = mesh_field {
                    causes.push(Cause::new(
                        "mesh",
                        format!(
                            "a {} does not belong to a mesh; remove \"mesh: {m}\"",
                            kind.map(ResourceType::name).unwrap_or_default()
                        ),
                    ));
                }
                String::new()
            }
        };
        if !name.is_empty() {
            let is_mesh = kind == Some(ResourceType::Mesh);
            causes.extend(validate_name("name", &name, !is_mesh));
        }
        if !mesh.is_empty() {
            causes.extend(validate_name("mesh", &mesh, false));
        }

        let Some(kind) = kind else {
            return Err(ValidationError::new(causes));
        };
        dialect::translate(kind, &mut fields, &mut causes);
        let unknown: Vec<Cause> = unknown_fields(kind, &fields);
        if !unknown.is_empty() {
            causes.extend(unknown);
            return Err(ValidationError::new(causes));
        }
        match Spec::from_fields(kind, Value::Object(fields)) {
            Ok(spec) => {
                causes.extend(spec.validate());
                if causes.is_empty() {
                    Ok(Resource::new(ResourceKey::new(kind, &mesh, &name), spec))
                } else {
                    Err(ValidationError::new(causes))
                }
            }
            Err(cause) => {
                causes.push(cause);
                Err(ValidationError::new(causes))
            }
        }
    }
}

/// The schema of a kind's own fields, from its Rust type, as `generator`
/// makes it: the CRDs, the HTTP API's OpenAPI document and the check for
/// unknown fields all read this one, so none of them can drift from what
/// [`Resource::from_json`] parses. It is the schema alone, to sit inside
/// another document: no `$schema` or `title`, and the types it refers to
/// stay in `generator`'s definitions.
pub fn spec_schema(
    kind: ResourceType,
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    let mut schema = root_spec_schema(kind, generator);
    if let Some(root) = schema.as_object_mut() {
        for key in ["$schema", "title", "$defs", "definitions", "components"] {
            root.remove(key);
        }
    }
    schema
}

fn root_spec_schema(
    kind: ResourceType,
    generator: &mut schemars::SchemaGenerator,
) -> schemars::Schema {
    match kind {
        ResourceType::Mesh => generator.root_schema_for::<MeshSpec>(),
        ResourceType::Dataplane => generator.root_schema_for::<DataplaneSpec>(),
        ResourceType::TrafficPermission => generator.root_schema_for::<TrafficPermissionSpec>(),
        ResourceType::TrafficLog => generator.root_schema_for::<TrafficLogSpec>(),
        ResourceType::TrafficRoute => generator.root_schema_for::<TrafficRouteSpec>(),
        ResourceType::TrafficTrace => generator.root_schema_for::<TrafficTraceSpec>(),
        ResourceType::ProxyTemplate => generator.root_schema_for::<ProxyTemplateSpec>(),
        ResourceType::MeshGateway => generator.root_schema_for::<MeshGatewaySpec>(),
        ResourceType::MeshGatewayRoute => generator.root_schema_for::<MeshGatewayRouteSpec>(),
        ResourceType::Secret | ResourceType::GlobalSecret => {
            generator.root_schema_for::<SecretSpec>()
        }
        ResourceType::DataplaneInsight => generator.root_schema_for::<DataplaneInsightSpec>(),
        ResourceType::AccessRole => generator.root_schema_for::<AccessRoleSpec>(),
        ResourceType::AccessRoleBinding => generator.root_schema_for::<AccessRoleBindingSpec>(),
        ResourceType::MeshTrafficPermission => {
            generator.root_schema_for::<PolicyDocument<MeshTrafficPermissionSpec>>()
        }
        ResourceType::MeshTcpRoute => {
            generator.root_schema_for::<PolicyDocument<MeshTcpRouteSpec>>()
        }
        ResourceType::MeshHttpRoute => {
            generator.root_schema_for::<PolicyDocument<MeshHttpRouteSpec>>()
        }
        ResourceType::MeshTls => generator.root_schema_for::<PolicyDocument<MeshTlsSpec>>(),
    }
}

/// The top-level fields of each kind, from its schema: made once, as a
/// schema takes far longer to generate than a resource to parse.
fn known_fields(kind: ResourceType) -> &'static [String] {
    static KNOWN: std::sync::LazyLock<std::collections::BTreeMap<ResourceType, Vec<String>>> =
        std::sync::LazyLock::new(|| {
            ResourceType::ALL
                .into_iter()
                .map(|kind| {
                    let schema = spec_schema(kind, &mut schemars::SchemaGenerator::default());
                    let fields = schema
                        .as_value()
                        .get("properties")
                        .and_then(Value::as_object)
                        .map(|p| p.keys().cloned().collect())
                        .unwrap_or_default();
                    (kind, fields)
                })
                .collect()
        });
    KNOWN.get(&kind).map(Vec::as_slice).unwrap_or_default()
}

/// Every top-level field the kind does not have, each its own cause (the
/// parser would name only the first).
fn unknown_fields(kind: ResourceType, fields: &Map<String, Value>) -> Vec<Cause> {
    let known = known_fields(kind);
    fields
        .keys()
        .filter(|k| !known.contains(k))
        .map(|k| {
            Cause::new(
                k.as_str(),
                format!(
                    "unknown field for a {kind}; expected {}",
                    if known.is_empty() {
                        "no other fields".to_string()
                    } else {
                        format!("one of {}", known.join(", "))
                    }
                ),
            )
        })
        .collect()
}

impl Resource {
    /// The wire form: `type`, `name`, `mesh` and the spec's fields.
    pub fn to_json(&self) -> Value {
        // Serializing plain structs of strings, maps and numbers cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Object(Map::new()))
    }
}

/// The wire form: `type`, `name`, `mesh` (of mesh-scoped kinds), then the
/// spec's fields, written straight from the model: a page of 100
/// dataplanes is serialized without building a JSON value for each.
impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            mesh: Option<&'a str>,
            #[serde(flatten)]
            spec: SpecFields<'a>,
        }
        Wire {
            kind: self.key.kind.name(),
            name: &self.key.name,
            mesh: self
                .key
                .kind
                .is_mesh_scoped()
                .then_some(self.key.mesh.as_str()),
            spec: SpecFields(&self.spec),
        }
        .serialize(serializer)
    }
}

/// A spec's own fields, as its kind's struct serializes them.
struct SpecFields<'a>(&'a Spec);

impl serde::Serialize for SpecFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Spec::Mesh(s) => s.serialize(serializer),
            Spec::Dataplane(s) => s.serialize(serializer),
            Spec::TrafficPermission(s) => s.serialize(serializer),
            Spec::TrafficLog(s) => s.serialize(serializer),
            Spec::TrafficRoute(s) => s.serialize(serializer),
            Spec::TrafficTrace(s) => s.serialize(serializer),
            Spec::ProxyTemplate(s) => s.serialize(serializer),
            Spec::MeshGateway(s) => s.serialize(serializer),
            Spec::MeshGatewayRoute(s) => s.serialize(serializer),
            Spec::Secret(s) => s.serialize(serializer),
            Spec::DataplaneInsight(s) => s.serialize(serializer),
            Spec::AccessRole(s) => s.serialize(serializer),
            Spec::AccessRoleBinding(s) => s.serialize(serializer),
            Spec::MeshTrafficPermission(s) => s.serialize(serializer),
            Spec::MeshTcpRoute(s) => s.serialize(serializer),
            Spec::MeshHttpRoute(s) => s.serialize(serializer),
            Spec::MeshTls(s) => s.serialize(serializer),
        }
    }
}

fn resolve_identity(
    identity: &Identity<'_>,
    field: &str,
    from_body: Option<String>,
    causes: &mut Vec<Cause>,
) -> String {
    match identity {
        Identity::Expected { mesh, name, .. } => {
            let expected = if field == "name" { name } else { mesh };
            if let Some(body) = from_body
                && body != *expected
            {
                causes.push(Cause::new(
                    field,
                    format!("\"{body}\" does not match \"{expected}\" from the URL"),
                ));
            }
            expected.to_string()
        }
        Identity::FromDocument => match from_body {
            Some(v) if !v.is_empty() => v,
            _ => {
                causes.push(Cause::new(field, "must be set"));
                String::new()
            }
        },
    }
}

/// Names of meshes and resources: what fits a URL path segment, a Postgres
/// key and a Kubernetes object name alike. Mesh names hold no dot, because
/// Envoy's node id `{mesh}.{name}` is split at the first one.
pub fn validate_name(field: &str, name: &str, allow_dot: bool) -> Option<Cause> {
    let ok_chars = name.chars().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '-' | '_')
            || (allow_dot && c == '.')
    });
    let allowed = if allow_dot {
        "'-', '.' or '_'"
    } else {
        "'-' or '_'"
    };
    let ok_ends = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 253 || !ok_chars || !ok_ends {
        Some(Cause::new(
            field,
            format!(
                "\"{name}\" is not a valid name: use 1 to 253 lowercase letters, digits, {allowed}, starting and ending with a letter or digit"
            ),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_the_documented_dataplane() {
        let doc = json!({
            "type": "Dataplane", "name": "backend-1", "mesh": "mesh-1",
            "networking": {
                "inbound": [{"interface": "127.0.0.1:11011:11012",
                             "tags": {"service": "backend", "version": "2.0", "env": "production"}}],
                "outbound": [{"interface": ":33033", "service": "database"}]
            }
        });
        let r = Resource::from_json(doc.clone(), Identity::FromDocument).unwrap();
        assert_eq!(
            r.key,
            ResourceKey::new(ResourceType::Dataplane, "mesh-1", "backend-1")
        );
        assert_eq!(r.to_json(), doc);
    }

    #[test]
    fn reports_every_problem_with_its_field() {
        let doc = json!({
            "type": "Dataplane", "name": "Bad Name",
            "networking": {"inbound": [{"interface": "127.0.0.1:abc", "tags": {}}]}
        });
        let err = Resource::from_json(doc, Identity::FromDocument).unwrap_err();
        let fields: Vec<_> = err.causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"mesh"), "{fields:?}");
        assert!(fields.contains(&"name"), "{fields:?}");
        assert!(
            fields.contains(&"networking.inbound[0].interface"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"networking.inbound[0].tags.service"),
            "{fields:?}"
        );
        let msg = &err
            .causes
            .iter()
            .find(|c| c.field == "networking.inbound[0].interface")
            .unwrap()
            .message;
        assert!(
            msg.contains("\"127.0.0.1:abc\" must be {address}:{dataplane-port}:{service-port}"),
            "{msg}"
        );
    }

    /// The policy kinds and the mesh's tracing: each wrong field named.
    #[test]
    fn routes_traces_and_tracing_backends_name_their_wrong_fields() {
        let cases = [
            (
                json!({"type": "TrafficRoute", "mesh": "m", "name": "r",
                       "sources": [{"match": {"service": "web"}}],
                       "destinations": [],
                       "conf": [{"weight": 0, "destination": {"version": "2"}}]}),
                vec!["destinations", "conf[0].destination", "conf"],
            ),
            (
                json!({"type": "TrafficTrace", "mesh": "m", "name": "t",
                       "selectors": [{"match": {"service": "bad value"}}], "conf": {"backend": ""}}),
                vec!["selectors[0].match.service", "conf.backend"],
            ),
            (
                json!({"type": "Mesh", "name": "m", "tracing": {"defaultBackend": "nope", "backends": [
                    {"name": "z", "type": "zipkin", "sampling": 120.0, "conf": {"url": "zipkin:9411"}}]}}),
                vec![
                    "tracing.defaultBackend",
                    "tracing.backends[0].sampling",
                    "tracing.backends[0].conf.url",
                ],
            ),
            (
                json!({"type": "Mesh", "name": "m", "tracing": {"backends": [
                    {"name": "j", "type": "jaeger", "conf": {"url": "http://j/"}}]}}),
                vec!["tracing.backends[0].type"],
            ),
        ];
        for (doc, expected) in cases {
            let err = Resource::from_json(doc.clone(), Identity::FromDocument).unwrap_err();
            let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
            assert_eq!(fields, expected, "{doc}: {err:?}");
        }
    }

    #[test]
    fn url_identity_wins_and_mismatch_is_reported() {
        let doc = json!({"type": "Mesh", "name": "other"});
        let err = Resource::from_json(
            doc,
            Identity::Expected {
                kind: ResourceType::Mesh,
                mesh: "",
                name: "mesh-1",
            },
        )
        .unwrap_err();
        assert_eq!(err.causes[0].field, "name");
        assert!(err.causes[0].message.contains("does not match \"mesh-1\""));
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_their_path() {
        let doc = json!({"type": "Mesh", "name": "m", "mtls": {"enabled": "yes"}});
        let err = Resource::from_json(doc, Identity::FromDocument).unwrap_err();
        assert_eq!(err.causes[0].field, "mtls.enabled");
        // Every unknown field at once, each with what was expected.
        let doc = json!({"type": "Mesh", "name": "m", "mtsl": {}, "loging": {}});
        let err = Resource::from_json(doc, Identity::FromDocument).unwrap_err();
        let mut fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["loging", "mtsl"], "{err}");
        assert!(
            err.causes[0]
                .message
                .contains("expected one of mtls, tracing, logging"),
            "{err}"
        );
    }
}
