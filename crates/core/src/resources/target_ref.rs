//! `targetRef`: how today's Kuma policies (MeshTrafficPermission and the
//! kinds after it) name what they apply to, as Kuma 2.x writes it
//! (`api/common/v1alpha1/targetref.go`).
//!
//! A reference names a kind and, by kind, a service (`name`), tags, or a
//! section. What each policy kind accepts where (its top-level `targetRef`,
//! the `targetRef` of its `from` items) differs; [`TargetRef::validate`]
//! checks one reference against the kinds its place accepts.
//!
//! The kinds that select proxies by tags become a [`Subset`]: the
//! conditions on tags that the rules engine (`xds::rules`) reasons with.
//!
//! A `MeshService` is named two ways. The older names a `kuma.io/service`
//! (`backend`, or on Kubernetes `backend_kuma-demo_svc_3001`). Kuma's
//! newer model names a Service object, `name` and `namespace` (on
//! Kubernetes, by default the policy's), and one of its ports by
//! `sectionName` (the port's name or number) or, in a backend, `port`;
//! `labels` may stand for the name (`kuma.io/display-name`) and the
//! namespace (`k8s.kuma.io/namespace`). There are no MeshService objects
//! here: a Kubernetes Service's port is the service
//! `{name}_{namespace}_svc_{port}`, and a port's name is the `name` of the
//! inbounds made from it ([`ServicePort`]).

use super::tags::{SERVICE_TAG, Tags, validate_tags};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

/// The kinds a reference may name, in Kuma's order of specificity: a
/// policy whose top-level reference comes later in this list is more
/// specific and wins over one that comes earlier.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum TargetRefKind {
    Mesh,
    Dataplane,
    MeshSubset,
    MeshGateway,
    MeshService,
    MeshExternalService,
    MeshMultiZoneService,
    MeshServiceSubset,
    #[serde(rename = "MeshHTTPRoute")]
    MeshHttpRoute,
}

impl TargetRefKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetRefKind::Mesh => "Mesh",
            TargetRefKind::Dataplane => "Dataplane",
            TargetRefKind::MeshSubset => "MeshSubset",
            TargetRefKind::MeshGateway => "MeshGateway",
            TargetRefKind::MeshService => "MeshService",
            TargetRefKind::MeshExternalService => "MeshExternalService",
            TargetRefKind::MeshMultiZoneService => "MeshMultiZoneService",
            TargetRefKind::MeshServiceSubset => "MeshServiceSubset",
            TargetRefKind::MeshHttpRoute => "MeshHTTPRoute",
        }
    }
}

/// Which proxies of a `Mesh` or `MeshSubset` reference: sidecars,
/// gateways, or (unset) both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ProxyType {
    Sidecar,
    Gateway,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    pub kind: TargetRefKind,
    /// The service of `MeshService` and `MeshServiceSubset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tags of `MeshSubset` and `MeshServiceSubset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Reserved by Kuma for references across meshes; refused here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_types: Option<Vec<ProxyType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

impl TargetRef {
    /// `kind: Mesh`, what an omitted top-level reference means.
    pub fn mesh() -> TargetRef {
        TargetRef {
            kind: TargetRefKind::Mesh,
            name: None,
            tags: None,
            mesh: None,
            proxy_types: None,
            namespace: None,
            labels: None,
            section_name: None,
        }
    }

    /// The problems of this reference at `path`, given the kinds its place
    /// accepts. Each field a kind does not have is named; so is each field
    /// it needs and lacks.
    pub fn validate(&self, path: &str, accepted: &[TargetRefKind]) -> Vec<Cause> {
        let at = |field: &str| format!("{path}.{field}");
        if !accepted.contains(&self.kind) {
            let names: Vec<&str> = accepted.iter().map(|k| k.name()).collect();
            return vec![Cause::new(
                at("kind"),
                format!(
                    "{} is not accepted here; expected one of {}",
                    self.kind.name(),
                    names.join(", ")
                ),
            )];
        }
        let kind = self.kind.name();
        let mut causes = Vec::new();
        let mut refuse = |field: &str, set: bool| {
            if set {
                causes.push(Cause::new(
                    at(field),
                    format!("must not be set with kind {kind}"),
                ));
            }
        };
        let tags_set = self.tags.as_ref().is_some_and(|t| !t.is_empty());
        let dataplane = self.kind == TargetRefKind::Dataplane;
        let service = self.is_mesh_service();
        let (uses_name, uses_tags) = match self.kind {
            TargetRefKind::Mesh | TargetRefKind::Dataplane => (false, false),
            TargetRefKind::MeshSubset => (false, true),
            _ => (true, self.kind == TargetRefKind::MeshServiceSubset),
        };
        refuse("tags", !uses_tags && tags_set);
        refuse("mesh", self.mesh.is_some());
        refuse("labels", !dataplane && !service && self.labels.is_some());
        refuse(
            "proxyTypes",
            self.proxy_types.is_some()
                && !matches!(self.kind, TargetRefKind::Mesh | TargetRefKind::MeshSubset),
        );
        if dataplane {
            // Real MeshService objects and namespaces come with Kuma's
            // newer model; here a Dataplane is chosen by labels (none:
            // every dataplane) and an inbound by `sectionName`.
            for (field, set) in [
                ("name", self.name.is_some()),
                ("namespace", self.namespace.is_some()),
            ] {
                if set {
                    causes.push(Cause::new(
                        at(field),
                        "is not supported yet with kind Dataplane: select the proxies by labels",
                    ));
                }
            }
        } else if service {
            causes.extend(self.validate_service_labels(path));
        } else {
            refuse("name", !uses_name && self.name.is_some());
            refuse("namespace", self.namespace.is_some());
            refuse("sectionName", self.section_name.is_some());
        }
        if uses_name && !(service && self.labelled_name().is_some()) {
            match self.name.as_deref() {
                None | Some("") => causes.push(Cause::new(
                    at("name"),
                    format!("must be set with kind {kind}: the service it selects"),
                )),
                Some(name) => {
                    causes.extend(super::tags::validate_tag_value(&at("name"), name, false))
                }
            }
        }
        if self.kind == TargetRefKind::MeshSubset && !tags_set {
            causes.push(Cause::new(
                at("tags"),
                "must hold at least one tag with kind MeshSubset (for every proxy, use kind Mesh)",
            ));
        }
        if let Some(tags) = &self.tags {
            causes.extend(validate_tags(&at("tags"), tags, false));
        }
        if let Some(labels) = self.labels.as_ref().filter(|_| !service) {
            causes.extend(validate_tags(&at("labels"), labels, false));
        }
        if self.proxy_types.as_ref().is_some_and(Vec::is_empty) {
            causes.push(Cause::new(
                at("proxyTypes"),
                "must be left out or name at least one of Sidecar, Gateway",
            ));
        }
        causes
    }

    /// The labels a `MeshService` reference may carry: those that stand
    /// for its name and namespace (there are no MeshService objects with
    /// other labels here).
    fn validate_service_labels(&self, path: &str) -> Vec<Cause> {
        self.labels
            .iter()
            .flatten()
            .filter(|(key, _)| ![DISPLAY_NAME_LABEL, NAMESPACE_LABEL].contains(&key.as_str()))
            .map(|(key, _)| {
                Cause::new(
                    format!("{path}.labels.{key}"),
                    format!(
                        "is not a label services have here; a MeshService is selected by {DISPLAY_NAME_LABEL} and {NAMESPACE_LABEL}"
                    ),
                )
            })
            .collect()
    }

    /// Refuses what names a service in Kuma's newer model (`namespace`,
    /// `sectionName`, `labels`) where only the older one is understood:
    /// the groups of clients a `from` item names by their certificates.
    pub fn validate_peers(&self, path: &str) -> Vec<Cause> {
        [
            ("namespace", self.namespace.is_some()),
            ("sectionName", self.section_name.is_some()),
            ("labels", self.labels.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set && self.is_mesh_service())
        .map(|(field, _)| {
            Cause::new(
                format!("{path}.{field}"),
                "cannot name clients: name their kuma.io/service (e.g. backend_kuma-demo_svc_3001)",
            )
        })
        .collect()
    }

    fn is_mesh_service(&self) -> bool {
        matches!(
            self.kind,
            TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset
        )
    }

    fn labelled_name(&self) -> Option<&str> {
        self.labels
            .as_ref()?
            .get(DISPLAY_NAME_LABEL)
            .map(String::as_str)
    }

    /// The Service object this `MeshService` reference names in Kuma's
    /// newer model, or `None` for the older (a `kuma.io/service`).
    fn service_object(&self) -> Option<ServiceObject<'_>> {
        if !self.is_mesh_service()
            || (self.namespace.is_none() && self.section_name.is_none() && self.labels.is_none())
        {
            return None;
        }
        let label = |key: &str| self.labels.as_ref()?.get(key).map(String::as_str);
        Some(ServiceObject {
            name: self.name.as_deref().or(self.labelled_name())?,
            namespace: self.namespace.as_deref().or(label(NAMESPACE_LABEL)),
            port: self.section_name.as_deref(),
        })
    }

    /// Whether this reference names the service `port` is of: always for
    /// kinds that do not name services; for a `MeshService`, by its name
    /// (either model) and the port's name or number.
    pub fn names_service(&self, port: &ServicePort) -> bool {
        if !self.is_mesh_service() {
            return true;
        }
        let by_service_name = self.name.as_deref() == Some(port.service);
        match self.service_object() {
            None => by_service_name,
            // An older name with a namespace beside it names its service
            // still; with a section, the section must match as well.
            Some(object) => (by_service_name && self.section_name.is_none()) || object.names(port),
        }
    }

    /// Names the policy's `namespace` where a `MeshService` of the newer
    /// model leaves it out, as Kuma reads it on Kubernetes.
    pub fn default_namespace(&mut self, namespace: &str) {
        if self.service_object().is_some_and(|o| o.namespace.is_none()) {
            self.namespace = Some(namespace.to_string());
        }
    }

    /// Refuses a `sectionName` (an inbound, by its port) where the
    /// reference picks whole proxies, as for the routes' outbounds.
    pub fn validate_whole_proxies(&self, path: &str) -> Option<Cause> {
        self.section_name.as_ref().map(|_| {
            Cause::new(
                format!("{path}.sectionName"),
                "can only be used with inbound policies (MeshTrafficPermission, MeshTLS)",
            )
        })
    }

    /// The tag conditions this reference stands for. `Mesh` is the empty
    /// subset (every proxy); tags are taken by their reference names
    /// (`kuma.io/service` is `service`).
    /// A `MeshService` of the newer model is a service tag only when its
    /// port is a number; else [`TargetRef::names_service`] tells.
    pub fn subset(&self) -> Subset {
        let mut tags: Vec<Tag> = Vec::new();
        match self.service_object() {
            Some(object) => tags.extend(object.exact().map(|s| Tag::is(SERVICE_TAG, &s))),
            None => tags.extend(self.name.iter().map(|name| Tag::is(SERVICE_TAG, name))),
        }
        // A Dataplane's labels are its inbounds' tags here (on Kubernetes,
        // a pod's labels become them).
        let labels = self.labels.iter().filter(|_| !self.is_mesh_service());
        for (k, v) in self.tags.iter().chain(labels).flatten() {
            tags.push(Tag::is(super::dialect::reference_tag(k), v));
        }
        Subset::new(tags)
    }

    /// Whether a proxy with `tags` (one inbound's, or a gateway's) and of
    /// the given type is selected.
    pub fn selects(&self, tags: &Tags, gateway: bool) -> bool {
        self.selects_by(&self.subset(), tags, gateway)
    }

    /// [`TargetRef::selects`] with this reference's [`TargetRef::subset`]
    /// made beforehand, for a reference matched against many proxies.
    pub fn selects_by(&self, subset: &Subset, tags: &Tags, gateway: bool) -> bool {
        let wanted = if gateway {
            ProxyType::Gateway
        } else {
            ProxyType::Sidecar
        };
        let type_ok = self
            .proxy_types
            .as_ref()
            .is_none_or(|types| types.contains(&wanted));
        type_ok && subset.contains(tags)
    }
}

/// The label of a MeshService that holds its name.
pub const DISPLAY_NAME_LABEL: &str = "kuma.io/display-name";
/// The label of a MeshService that holds its Kubernetes namespace.
pub const NAMESPACE_LABEL: &str = "k8s.kuma.io/namespace";

/// One port of a service as a reference may name it: the service (a
/// `kuma.io/service`) and the name of that port, when its inbounds have
/// one.
#[derive(Debug, Clone, Copy)]
pub struct ServicePort<'a> {
    pub service: &'a str,
    pub name: Option<&'a str>,
}

/// A Service object named in Kuma's newer model.
#[derive(Debug, Clone, Copy)]
struct ServiceObject<'a> {
    name: &'a str,
    namespace: Option<&'a str>,
    /// The port's name or number; any port when left out.
    port: Option<&'a str>,
}

impl ServiceObject<'_> {
    /// The one service it is, when that is known without looking at the
    /// mesh: on Kubernetes, a port by number.
    fn exact(&self) -> Option<String> {
        let port: u16 = self.port?.parse().ok()?;
        Some(format!("{}_{}_svc_{port}", self.name, self.namespace?))
    }

    fn names(&self, port: &ServicePort) -> bool {
        let port_is = |number: Option<&str>| {
            self.port
                .is_none_or(|wanted| Some(wanted) == port.name || Some(wanted) == number)
        };
        match kubernetes_service(port.service) {
            Some((name, namespace, number)) => {
                name == self.name
                    && self.namespace.is_none_or(|ns| ns == namespace)
                    && port_is(Some(number))
            }
            None => port.service == self.name && self.namespace.is_none() && port_is(None),
        }
    }
}

/// The Service name, namespace and port of a Kubernetes service tag
/// (`{name}_{namespace}_svc_{port}`; Kubernetes names hold no `_`).
fn kubernetes_service(service: &str) -> Option<(&str, &str, &str)> {
    let mut parts = service.split('_');
    let (name, namespace, svc, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (svc == "svc" && parts.next().is_none() && port.parse::<u16>().is_ok())
        .then_some((name, namespace, port))
}

/// Where a route sends traffic: a service (`MeshService`) or the part of
/// it with some tags (`MeshServiceSubset`), with a weight among the
/// others (1 when left out).
// The reference's fields are spelled out rather than a `TargetRef`
// flattened in: serde refuses unknown fields only in a struct without
// flattened parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    pub kind: TargetRefKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// A port of a real MeshService object: Kuma's newer model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Tags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// The kinds a backend may be.
pub const BACKEND_KINDS: [TargetRefKind; 2] =
    [TargetRefKind::MeshService, TargetRefKind::MeshServiceSubset];

impl BackendRef {
    /// The reference part, to be checked as one.
    fn reference(&self) -> TargetRef {
        TargetRef {
            kind: self.kind,
            name: self.name.clone(),
            tags: self.tags.clone(),
            mesh: None,
            proxy_types: None,
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            section_name: self.section_name.clone(),
        }
    }

    pub fn validate(&self, path: &str) -> Vec<Cause> {
        let mut causes = self.reference().validate(path, &BACKEND_KINDS);
        if self.section_name.is_some() {
            causes.push(Cause::new(
                format!("{path}.sectionName"),
                "is not taken in a backend: name the Service's port by number in port",
            ));
        }
        let object = self.namespace.is_some() || self.labels.is_some();
        if object && self.port.is_none() {
            causes.push(Cause::new(
                format!("{path}.port"),
                "must be set with namespace or labels: the port of the Service to send to",
            ));
        }
        causes
    }

    /// Names the policy's `namespace` where a backend of the newer model
    /// (one with a `port`) leaves it out.
    pub fn default_namespace(&mut self, namespace: &str) {
        let named = self.namespace.is_some()
            || self
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(NAMESPACE_LABEL));
        if self.port.is_some() && !named {
            self.namespace = Some(namespace.to_string());
        }
    }

    /// The weight, 1 when left out.
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// The service and the tags (under their reference names) its
    /// endpoints must have. A Kubernetes Service's port (namespace and
    /// port given) is the service `{name}_{namespace}_svc_{port}`; else
    /// the name is the service, the port being the only one it has.
    pub fn destination(&self) -> (String, Tags) {
        let tags = self
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| (super::dialect::reference_tag(k).to_string(), v.clone()))
            .collect();
        let reference = self.reference();
        let object = reference.service_object().and_then(|o| {
            let port = self.port?.to_string();
            ServiceObject {
                port: Some(&port),
                ..o
            }
            .exact()
        });
        let service = object.or_else(|| {
            reference
                .name
                .clone()
                .or(reference.labelled_name().map(str::to_string))
        });
        (service.unwrap_or_default(), tags)
    }
}

/// How today's policies are written in Universal: `type`, `name` and
/// `mesh`, then the policy itself under `spec` (on Kubernetes, the custom
/// resource's `spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument<T> {
    pub spec: T,
    /// On Kubernetes, the application namespace the policy was created
    /// in (none for the system namespace): it applies to the proxies of
    /// that namespace only. Not part of what is written or shown.
    #[serde(skip)]
    #[schemars(skip)]
    pub namespace: Option<String>,
}

/// What every `targetRef` policy kind has: the proxies it shapes, and its
/// own checks (field paths from inside `spec`).
pub trait TargetRefPolicy {
    fn target_ref(&self) -> Option<&TargetRef>;

    fn validate(&self) -> Vec<Cause>;

    /// Whether the policy shapes traffic to others (`to`), as routes do,
    /// rather than traffic to the proxy.
    fn is_route(&self) -> bool {
        false
    }

    /// Names `namespace` (the application namespace the policy was
    /// created in) where the policy's references to Services leave theirs
    /// out. The references to the proxies it shapes need none: the policy
    /// applies to its namespace only.
    fn default_namespace(&mut self, _namespace: &str) {}

    /// The top-level reference, `kind: Mesh` when left out.
    fn target(&self) -> TargetRef {
        self.target_ref().cloned().unwrap_or_else(TargetRef::mesh)
    }
}

impl<T: TargetRefPolicy> PolicyDocument<T> {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        super::validation::nested("spec", self.spec.validate()).collect()
    }
}

/// One condition on one tag: equal to a value, or (`not`) anything but it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub not: bool,
}

impl Tag {
    pub fn is(key: &str, value: &str) -> Tag {
        Tag {
            key: key.to_string(),
            value: value.to_string(),
            not: false,
        }
    }
}

/// A set of proxies told by conditions on their tags, all of which hold;
/// no condition at all is every proxy. Kept sorted, so that equal subsets
/// compare equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Subset(Vec<Tag>);

impl Subset {
    pub fn new(mut tags: Vec<Tag>) -> Subset {
        tags.sort();
        tags.dedup();
        Subset(tags)
    }

    pub fn tags(&self) -> &[Tag] {
        &self.0
    }

    pub fn positive(&self) -> usize {
        self.0.iter().filter(|t| !t.not).count()
    }

    /// Whether a proxy with exactly `tags` is in the subset: every
    /// positive condition names a tag it has with that value, and no
    /// negative one names a value it has.
    pub fn contains(&self, tags: &Tags) -> bool {
        self.0.iter().all(|t| {
            let has = tags.get(&t.key).is_some_and(|v| *v == t.value);
            has != t.not
        })
    }

    /// Whether every proxy of `other` is in this subset: each of this
    /// subset's conditions is implied by one of `other`'s.
    pub fn includes(&self, other: &Subset) -> bool {
        self.0.iter().all(|mine| {
            other.0.iter().any(|theirs| {
                mine.key == theirs.key
                    && match (mine.not, theirs.not) {
                        (false, false) | (true, true) => mine.value == theirs.value,
                        // key != a holds wherever key == b, b != a.
                        (true, false) => mine.value != theirs.value,
                        (false, true) => false,
                    }
            })
        })
    }

    /// Whether some proxy may be in both: no tag is asked to have two
    /// different values.
    pub fn intersects(&self, other: &Subset) -> bool {
        self.0.iter().filter(|t| !t.not).all(|mine| {
            other
                .0
                .iter()
                .filter(|t| !t.not && t.key == mine.key)
                .all(|theirs| theirs.value == mine.value)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tags::of_pairs as tags;

    fn parse(doc: serde_json::Value) -> TargetRef {
        serde_json::from_value(doc).unwrap()
    }

    const FROM: [TargetRefKind; 4] = [
        TargetRefKind::Mesh,
        TargetRefKind::MeshSubset,
        TargetRefKind::MeshService,
        TargetRefKind::MeshServiceSubset,
    ];

    #[test]
    fn each_kind_takes_its_own_fields_and_names_the_others() {
        let ok = parse(serde_json::json!({"kind": "MeshService", "name": "backend"}));
        assert!(ok.validate("spec.targetRef", &FROM).is_empty());
        let bad = parse(serde_json::json!({"kind": "Mesh", "name": "backend", "tags": {"a": "b"}}));
        let fields: Vec<String> = bad
            .validate("spec.targetRef", &FROM)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["spec.targetRef.tags", "spec.targetRef.name"]);
        let unnamed = parse(serde_json::json!({"kind": "MeshServiceSubset", "tags": {"v": "1"}}));
        let causes = unnamed.validate("from[0].targetRef", &FROM);
        assert_eq!(causes[0].field, "from[0].targetRef.name");
        assert!(causes[0].message.contains("must be set"), "{causes:?}");
        let elsewhere = parse(serde_json::json!({"kind": "MeshGateway", "name": "edge"}));
        let causes = elsewhere.validate("spec.targetRef", &FROM);
        assert_eq!(
            causes[0].message,
            "MeshGateway is not accepted here; expected one of Mesh, MeshSubset, MeshService, MeshServiceSubset"
        );
    }

    #[test]
    fn a_reference_is_a_subset_of_tags_under_their_reference_names() {
        let r = parse(serde_json::json!({
            "kind": "MeshServiceSubset", "name": "backend",
            "tags": {"version": "v2", "kuma.io/protocol": "http"}
        }));
        assert!(r.selects(
            &tags(&[
                ("service", "backend"),
                ("version", "v2"),
                ("protocol", "http")
            ]),
            false
        ));
        assert!(!r.selects(&tags(&[("service", "backend"), ("version", "v1")]), false));
        let frontend =
            parse(serde_json::json!({"kind": "Dataplane", "labels": {"app": "frontend"}}));
        assert!(
            frontend
                .validate("spec.targetRef", &[TargetRefKind::Dataplane])
                .is_empty()
        );
        assert!(frontend.selects(&tags(&[("service", "web"), ("app", "frontend")]), false));
        assert!(!frontend.selects(&tags(&[("service", "web")]), false));
        let by_name = parse(serde_json::json!({"kind": "Dataplane", "name": "web-1"}));
        let fields: Vec<String> = by_name
            .validate("spec.targetRef", &[TargetRefKind::Dataplane])
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["spec.targetRef.name"]);
        let every = parse(serde_json::json!({"kind": "Dataplane", "sectionName": "8080"}));
        assert!(
            every
                .validate("spec.targetRef", &[TargetRefKind::Dataplane])
                .is_empty()
        );
        assert!(every.selects(&tags(&[("service", "web")]), false));
        assert!(every.validate_whole_proxies("spec.targetRef").is_some());
        let sidecars = parse(serde_json::json!({"kind": "Mesh", "proxyTypes": ["Sidecar"]}));
        assert!(sidecars.selects(&tags(&[("service", "a")]), false));
        assert!(!sidecars.selects(&tags(&[("service", "a")]), true));
    }

    #[test]
    fn a_mesh_service_of_the_newer_model_names_a_kubernetes_services_port() {
        let port = |service, name| ServicePort { service, name };
        let http = port("backend_kuma-demo_svc_3001", Some("http"));
        let admin = port("backend_kuma-demo_svc_9901", None);
        let elsewhere = port("backend_other_svc_3001", Some("http"));
        let by_name = parse(serde_json::json!({
            "kind": "MeshService", "name": "backend", "namespace": "kuma-demo", "sectionName": "http"
        }));
        assert!(by_name.validate("to[0].targetRef", &FROM).is_empty());
        assert!(by_name.names_service(&http));
        assert!(!by_name.names_service(&admin));
        assert!(!by_name.names_service(&elsewhere));
        // A port by number is the one service it is.
        let by_number = parse(serde_json::json!({
            "kind": "MeshService", "name": "backend", "namespace": "kuma-demo", "sectionName": "9901"
        }));
        assert_eq!(
            by_number.subset().tags(),
            [Tag::is("service", "backend_kuma-demo_svc_9901")]
        );
        assert!(by_number.names_service(&admin) && !by_number.names_service(&http));
        // No port: every port; labels stand for the name and namespace.
        let labelled = parse(serde_json::json!({
            "kind": "MeshService",
            "labels": {"kuma.io/display-name": "backend", "k8s.kuma.io/namespace": "kuma-demo"}
        }));
        assert!(labelled.validate("to[0].targetRef", &FROM).is_empty());
        assert!(labelled.names_service(&http) && labelled.names_service(&admin));
        assert!(!labelled.names_service(&elsewhere));
        // In Universal the name is the service, and a section its port's
        // name: another port's name names nothing.
        let universal = port("backend", Some("main"));
        let main = parse(
            serde_json::json!({"kind": "MeshService", "name": "backend", "sectionName": "main"}),
        );
        let admin_port = parse(
            serde_json::json!({"kind": "MeshService", "name": "backend", "sectionName": "admin"}),
        );
        assert!(main.names_service(&universal) && !admin_port.names_service(&universal));
        // The older model: the name is the service.
        let legacy =
            parse(serde_json::json!({"kind": "MeshService", "name": "backend_kuma-demo_svc_3001"}));
        assert!(legacy.names_service(&http) && !legacy.names_service(&admin));
        // The policy's namespace where the reference leaves it out.
        let mut relative = parse(serde_json::json!({
            "kind": "MeshService", "name": "backend", "sectionName": "http"
        }));
        relative.default_namespace("other");
        assert!(relative.names_service(&elsewhere) && !relative.names_service(&http));
        // Other labels are refused, and clients cannot be named this way.
        let other = parse(serde_json::json!({"kind": "MeshService", "labels": {"team": "a"}}));
        let fields: Vec<String> = other
            .validate("to[0].targetRef", &FROM)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["to[0].targetRef.labels.team", "to[0].targetRef.name"]
        );
        assert_eq!(
            by_name.validate_peers("from[0].targetRef")[0].field,
            "from[0].targetRef.namespace"
        );
    }

    #[test]
    fn a_backend_of_the_newer_model_is_the_service_of_its_port() {
        let backend = |doc| serde_json::from_value::<BackendRef>(doc).unwrap();
        let mut relative =
            backend(serde_json::json!({"kind": "MeshService", "name": "backend-v2", "port": 3001}));
        assert!(relative.validate("backendRefs[0]").is_empty());
        relative.default_namespace("kuma-demo");
        assert_eq!(relative.destination().0, "backend-v2_kuma-demo_svc_3001");
        // In Universal (no namespace) the name is the service.
        let universal =
            backend(serde_json::json!({"kind": "MeshService", "name": "backend", "port": 3001}));
        assert_eq!(universal.destination().0, "backend");
        let portless =
            backend(serde_json::json!({"kind": "MeshService", "name": "b", "namespace": "n"}));
        assert_eq!(
            portless.validate("backendRefs[0]")[0].field,
            "backendRefs[0].port"
        );
    }

    #[test]
    fn subsets_include_and_intersect_as_sets_of_proxies() {
        let s = |t: &[(&str, &str, bool)]| {
            Subset::new(
                t.iter()
                    .map(|(k, v, not)| Tag {
                        key: k.to_string(),
                        value: v.to_string(),
                        not: *not,
                    })
                    .collect(),
            )
        };
        let everyone = s(&[]);
        let team_a = s(&[("team", "a", false)]);
        let not_team_b = s(&[("team", "b", true)]);
        let team_a_east = s(&[("team", "a", false), ("zone", "east", false)]);
        assert!(everyone.includes(&team_a));
        assert!(team_a.includes(&team_a_east));
        assert!(!team_a_east.includes(&team_a));
        assert!(not_team_b.includes(&team_a), "team a is never team b");
        assert!(!team_a.includes(&not_team_b));
        assert!(team_a.intersects(&s(&[("zone", "east", false)])));
        assert!(!team_a.intersects(&s(&[("team", "b", false)])));
        assert!(not_team_b.contains(&tags(&[("team", "c")])));
        assert!(not_team_b.contains(&tags(&[])));
        assert!(!not_team_b.contains(&tags(&[("team", "b")])));
    }
}
