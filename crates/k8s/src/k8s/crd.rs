//! Kuma's custom resources: group `kuma.io`, version `v1alpha1`, one kind
//! per [`ResourceType`] the API server keeps, with schemas generated from
//! the same Rust types the HTTP API parses (no second copy of the model).
//!
//! An object carries its mesh in a top-level `mesh` field beside `spec`, as
//! Kuma's objects do (or in the `kuma.io/mesh` label; `default` when
//! neither). On the HTTP API a namespaced object is named `{name}.{namespace}`.
//!
//! Kuma 1.x made its policies cluster-scoped; here they are namespaced, so
//! that Kubernetes RBAC can give each team the policies of its own
//! namespaces.

use crate::resources::{Identity, Resource, ResourceType, ResourceVersion, ValidationError};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceValidation,
    JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

pub const GROUP: &str = "kuma.io";
pub const VERSION: &str = "v1alpha1";
/// The label (and annotation) naming an object's or a pod's mesh.
pub const MESH_LABEL: &str = "kuma.io/mesh";
pub const DEFAULT_MESH: &str = "default";

/// A kind kept as a custom resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KumaCrd {
    pub kind: ResourceType,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// Every kind kept as a custom resource. Secrets are Kubernetes `Secret`s
/// of the system namespace instead.
pub const CRDS: [KumaCrd; 16] = [
    KumaCrd {
        kind: ResourceType::Mesh,
        plural: "meshes",
        namespaced: false,
    },
    KumaCrd {
        kind: ResourceType::Dataplane,
        plural: "dataplanes",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::DataplaneInsight,
        plural: "dataplaneinsights",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::TrafficPermission,
        plural: "trafficpermissions",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::TrafficLog,
        plural: "trafficlogs",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::TrafficRoute,
        plural: "trafficroutes",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::TrafficTrace,
        plural: "traffictraces",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::ProxyTemplate,
        plural: "proxytemplates",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::MeshGateway,
        plural: "meshgateways",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::MeshGatewayRoute,
        plural: "meshgatewayroutes",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::MeshTrafficPermission,
        plural: "meshtrafficpermissions",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::MeshTcpRoute,
        plural: "meshtcproutes",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::MeshHttpRoute,
        plural: "meshhttproutes",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::MeshTls,
        plural: "meshtlses",
        namespaced: true,
    },
    KumaCrd {
        kind: ResourceType::AccessRole,
        plural: "accessroles",
        namespaced: false,
    },
    KumaCrd {
        kind: ResourceType::AccessRoleBinding,
        plural: "accessrolebindings",
        namespaced: false,
    },
];

impl KumaCrd {
    pub fn of(kind: ResourceType) -> Option<KumaCrd> {
        CRDS.into_iter().find(|c| c.kind == kind)
    }

    /// What kube's dynamic client needs to reach this kind.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, VERSION, self.kind.name()),
            self.plural,
        )
    }

    fn spec_schema(&self) -> Value {
        match self.kind {
            // Secrets are Kubernetes Secrets; their CRD is never served.
            ResourceType::Secret | ResourceType::GlobalSecret => json!({"type": "object"}),
            // The object's `spec` is the policy's, which Universal writes
            // under `spec` of the resource.
            kind if kind.is_target_ref_policy() => structural_schema(kind)
                .pointer("/properties/spec")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
            kind => structural_schema(kind),
        }
    }

    /// Columns of `kubectl get`.
    fn printer_columns(&self) -> Vec<CustomResourceColumnDefinition> {
        let column = |name: &str, type_: &str, path: &str| CustomResourceColumnDefinition {
            name: name.into(),
            type_: type_.into(),
            json_path: path.into(),
            ..Default::default()
        };
        let mut columns = Vec::new();
        match self.kind {
            ResourceType::Mesh => {
                columns.push(column("mTLS", "boolean", ".spec.mtls.enabled"));
            }
            ResourceType::Dataplane => {
                columns.push(column("Mesh", "string", ".mesh"));
                columns.push(column(
                    "Service",
                    "string",
                    ".spec.networking.inbound[*].tags.service",
                ));
            }
            kind if kind.is_target_ref_policy() => {
                columns.push(column("Mesh", "string", ".mesh"));
                columns.push(column("TargetRef Kind", "string", ".spec.targetRef.kind"));
                columns.push(column("TargetRef Name", "string", ".spec.targetRef.name"));
            }
            _ => columns.push(column("Mesh", "string", ".mesh")),
        }
        columns.push(column("Age", "date", ".metadata.creationTimestamp"));
        columns
    }

    /// The CustomResourceDefinition: typed `spec`, the top-level `mesh`
    /// (so the API server does not prune it), printer columns.
    pub fn definition(&self) -> CustomResourceDefinition {
        let kind = self.kind.name();
        let mut properties = serde_json::Map::new();
        properties.insert("apiVersion".into(), json!({"type": "string"}));
        properties.insert("kind".into(), json!({"type": "string"}));
        properties.insert("metadata".into(), json!({"type": "object"}));
        if self.kind.is_mesh_scoped() {
            properties.insert(
                "mesh".into(),
                json!({"type": "string", "description": "The mesh the object belongs to (default: default)."}),
            );
        }
        properties.insert("spec".into(), self.spec_schema());
        let schema: JSONSchemaProps = serde_json::from_value(json!({
            "type": "object",
            "properties": properties,
        }))
        .unwrap_or_default();
        CustomResourceDefinition {
            metadata: ObjectMeta {
                name: Some(format!("{}.{GROUP}", self.plural)),
                ..Default::default()
            },
            spec: CustomResourceDefinitionSpec {
                group: GROUP.into(),
                names: CustomResourceDefinitionNames {
                    kind: kind.into(),
                    list_kind: Some(format!("{kind}List")),
                    plural: self.plural.into(),
                    singular: Some(kind.to_ascii_lowercase()),
                    categories: Some(vec!["kuma".into()]),
                    ..Default::default()
                },
                scope: if self.namespaced {
                    "Namespaced"
                } else {
                    "Cluster"
                }
                .into(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: VERSION.into(),
                    served: true,
                    storage: true,
                    schema: Some(CustomResourceValidation {
                        open_api_v3_schema: Some(schema),
                    }),
                    additional_printer_columns: Some(self.printer_columns()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            status: None,
        }
    }
}

/// The OpenAPI v3 schema of a kind's spec, inlined and structural, as the
/// API server wants it.
fn structural_schema(kind: ResourceType) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(kube::core::schema::OptionalEnum)
        .with_transform(kube::core::schema::OptionalIntOrString)
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .into_generator();
    crate::resources::spec_schema(kind, &mut generator).to_value()
}

/// Every CRD as (file name, YAML): the content of `crds/`.
pub fn definition_files() -> Vec<(String, String)> {
    CRDS.iter()
        .map(|c| {
            let definition = c.definition();
            (
                format!(
                    "{}.yaml",
                    definition.metadata.name.clone().unwrap_or_default()
                ),
                serde_yaml_ng::to_string(&definition).unwrap_or_default(),
            )
        })
        .collect()
}

/// Every CRD as one YAML stream.
pub fn definitions_yaml() -> String {
    definition_files()
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The name an object goes by on the HTTP API and in the index.
pub fn resource_name(crd: &KumaCrd, meta: &ObjectMeta) -> String {
    let name = meta.name.clone().unwrap_or_default();
    match (&meta.namespace, crd.namespaced) {
        (Some(ns), true) => format!("{name}.{ns}"),
        _ => name,
    }
}

/// The mesh of an object: its `mesh` field, else its `kuma.io/mesh` label,
/// else `default`.
pub fn mesh_of(object: &DynamicObject) -> String {
    object
        .data
        .get("mesh")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .or_else(|| {
            object
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MESH_LABEL).cloned())
        })
        .unwrap_or_else(|| DEFAULT_MESH.to_string())
}

/// An object of a Kuma kind as a resource, validated exactly as the HTTP
/// API validates a document: the same errors, with the same field paths.
pub fn to_resource(crd: &KumaCrd, object: &DynamicObject) -> Result<Resource, ValidationError> {
    let name = resource_name(crd, &object.metadata);
    let mesh = mesh_of(object);
    let spec = object
        .data
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let spec = if crd.kind.is_target_ref_policy() {
        json!({ "spec": spec })
    } else {
        spec
    };
    let mut resource = Resource::from_json(
        spec,
        Identity::Expected {
            kind: crd.kind,
            mesh: &mesh,
            name: &name,
        },
    )?;
    resource.version =
        ResourceVersion::new(object.metadata.resource_version.clone().unwrap_or_default());
    Ok(resource)
}

/// A resource as an object of its kind, for the control plane's own writes.
/// `name` and `namespace` are the object's (see [`resource_name`]).
pub fn to_object(
    crd: &KumaCrd,
    resource: &Resource,
    name: &str,
    namespace: Option<&str>,
) -> DynamicObject {
    let mut object = DynamicObject::new(name, &crd.api_resource());
    object.metadata.namespace = namespace.filter(|_| crd.namespaced).map(str::to_string);
    if !resource.version.is_unset() {
        object.metadata.resource_version = Some(resource.version.to_string());
    }
    let mut data = serde_json::Map::new();
    if crd.kind.is_mesh_scoped() {
        data.insert("mesh".into(), Value::String(resource.key.mesh.clone()));
    }
    let mut spec = resource.spec.to_fields();
    if crd.kind.is_target_ref_policy() {
        spec = spec.get_mut("spec").map(Value::take).unwrap_or_default();
    }
    data.insert("spec".into(), spec);
    object.data = Value::Object(data);
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &KumaCrd, doc: Value) -> DynamicObject {
        serde_json::from_value(doc)
            .map(|mut o: DynamicObject| {
                o.types = Some(kube::api::TypeMeta {
                    api_version: format!("{GROUP}/{VERSION}"),
                    kind: kind.kind.name().into(),
                });
                o
            })
            .unwrap()
    }

    #[test]
    fn an_object_becomes_the_resource_the_api_would_parse() {
        let crd = KumaCrd::of(ResourceType::Dataplane).unwrap();
        let o = object(
            &crd,
            json!({
                "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
                "metadata": {"name": "web-1", "namespace": "demo", "resourceVersion": "42"},
                "mesh": "team-a",
                "spec": {"networking": {"inbound": [{"interface": "10.0.0.1:8080:8080", "tags": {"service": "web"}}]}}
            }),
        );
        let r = to_resource(&crd, &o).unwrap();
        assert_eq!(
            (r.key.mesh.as_str(), r.key.name.as_str()),
            ("team-a", "web-1.demo")
        );
        assert_eq!(r.version.as_str(), "42");
        let back = to_object(&crd, &r, "web-1", Some("demo"));
        assert_eq!(back.data["mesh"], "team-a");
        assert_eq!(back.data["spec"], o.data["spec"]);
    }

    #[test]
    fn a_bad_object_gets_the_api_s_errors() {
        let crd = KumaCrd::of(ResourceType::Dataplane).unwrap();
        let o = object(
            &crd,
            json!({
                "metadata": {"name": "web-1", "namespace": "demo", "labels": {"kuma.io/mesh": "m"}},
                "spec": {"networking": {"inbound": [{"interface": "10.0.0.1:abc", "tags": {}}]}}
            }),
        );
        let err = to_resource(&crd, &o).unwrap_err();
        let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
        assert!(
            fields.contains(&"networking.inbound[0].interface")
                && fields.contains(&"networking.inbound[0].tags.service"),
            "{fields:?}"
        );
    }

    /// `crds/` holds what the code generates; `UPDATE_GOLDEN=1` rewrites
    /// it, and the Helm chart's copy (or run `kumactl install crds
    /// --output-dir crds`).
    #[test]
    fn crds_directory_is_current() {
        // The workspace's root, where `crds/` and the chart are.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join("crds");
        let files = definition_files();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            for target in [dir.clone(), root.join("charts/kuma/crds")] {
                std::fs::create_dir_all(&target).unwrap();
                for (name, text) in &files {
                    std::fs::write(target.join(name), text).unwrap();
                }
            }
        }
        for (name, text) in &files {
            let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            assert!(
                on_disk == *text,
                "crds/{name} is stale: run `kumactl install crds --output-dir crds` (or UPDATE_GOLDEN=1 cargo test)"
            );
        }
        let present = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(present, files.len(), "crds/ holds a file no kind generates");
    }

    #[test]
    fn the_schema_is_typed_and_keeps_the_mesh_field() {
        let crd = KumaCrd::of(ResourceType::Dataplane).unwrap().definition();
        let schema = serde_json::to_value(
            &crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema,
        )
        .unwrap();
        assert_eq!(schema["properties"]["mesh"]["type"], "string");
        let inbound =
            &schema["properties"]["spec"]["properties"]["networking"]["properties"]["inbound"];
        assert_eq!(inbound["type"], "array", "{schema:#}");
        assert!(
            !schema.to_string().contains("$ref"),
            "a CRD schema must be inlined"
        );
    }
}
