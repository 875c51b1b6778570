//! `kumactl install control-plane`: the Helm chart `charts/kuma`, embedded
//! in the binary, rendered as `helm template --include-crds` renders it, so
//! that `kumactl install control-plane | kubectl apply -f -` and `helm
//! install` install the same objects (a test compares them). Each run
//! generates a fresh webhook CA and certificate, as the chart's `genCA` does
//! under Helm.
//!
//! One object is added: the release's Namespace, first, which is what
//! `helm install --create-namespace` does outside the chart.

mod chart;
mod sprig;
mod values;

use chart::{Manifest, Release};

/// The flags of `kumactl install control-plane`, each a shorthand for a
/// chart value, then `--values` files and `--set` (Helm's order).
#[derive(clap::Args, Debug)]
pub struct ControlPlaneOptions {
    /// Namespace to install the control plane to
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Registry of Kuma's images (value global.image.registry)
    #[arg(long = "image-registry")]
    pub image_registry: Option<String>,
    /// Tag of Kuma's images (value global.image.tag) [default: the chart's appVersion]
    #[arg(long = "control-plane-version")]
    pub control_plane_version: Option<String>,
    /// What the API server does with a pod when the injector cannot be
    /// reached: create it without a sidecar (Ignore) or refuse it (Fail)
    #[arg(long = "injector-failure-policy", value_enum)]
    pub injector_failure_policy: Option<FailurePolicy>,
    /// A values file, as `helm install --values` (repeatable; later wins)
    #[arg(long = "values", short = 'f')]
    pub values: Vec<std::path::PathBuf>,
    /// A chart value, as `helm install --set` (repeatable; applied last)
    #[arg(long = "set")]
    pub set: Vec<String>,
}

/// Where Kuma installs itself unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "kuma-system";

/// What `kumactl install control-plane` with no flags renders.
impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            namespace: DEFAULT_NAMESPACE.to_string(),
            image_registry: None,
            control_plane_version: None,
            injector_failure_policy: None,
            values: Vec::new(),
            set: Vec::new(),
        }
    }
}

/// The admission webhook's `failurePolicy`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum FailurePolicy {
    #[value(name = "Ignore")]
    Ignore,
    #[value(name = "Fail")]
    Fail,
}

/// What can stop a rendering; each names the file, flag or template.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{origin}: {message}")]
    Values { origin: String, message: String },
    #[error("--set {argument}: {message}")]
    Set { argument: String, message: String },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    #[error("{0}")]
    Chart(String),
}

/// The chart's values with the options laid over them, as Helm computes
/// them for `helm install -f FILE --set K=V`: the chart's defaults, each
/// values file, the shorthand flags, each `--set`.
pub fn chart_values(options: &ControlPlaneOptions) -> Result<serde_json::Value, InstallError> {
    let mut user = serde_json::json!({});
    for path in &options.values {
        let text = std::fs::read_to_string(path).map_err(|source| InstallError::File {
            path: path.display().to_string(),
            source,
        })?;
        values::merge(
            &mut user,
            values::parse(&path.display().to_string(), &text)?,
        );
    }
    // The shorthand flags are `--set`s given before the others.
    let mut flags = serde_json::json!({});
    if let Some(registry) = &options.image_registry {
        flags["global"]["image"]["registry"] = registry.as_str().into();
    }
    if let Some(tag) = &options.control_plane_version {
        flags["global"]["image"]["tag"] = tag.as_str().into();
    }
    if let Some(policy) = options.injector_failure_policy {
        flags["injector"]["failurePolicy"] = match policy {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
        .into();
    }
    values::merge(&mut user, flags);
    for argument in &options.set {
        values::set(&mut user, argument)?;
    }
    Ok(values::coalesce(user, &chart::default_values()?))
}

/// The whole installation as one YAML stream: the Namespace, the CRDs,
/// then the chart's objects in Helm's install order, each under a `#
/// Source:` line as `helm template` prints them.
pub fn control_plane(options: &ControlPlaneOptions) -> Result<String, InstallError> {
    if !is_dns_label(&options.namespace) {
        return Err(InstallError::Chart(format!(
            "--namespace \"{}\" is not a namespace name: expected at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            options.namespace
        )));
    }
    let values = chart_values(options)?;
    let release = Release {
        name: "kuma".to_string(),
        namespace: options.namespace.clone(),
    };
    let mut manifests = chart::render(&values, &release)?;
    manifests.sort_by_key(|m| install_order(&m.object));
    let mut out = format!(
        "---\n# Created first, as `helm install --create-namespace` does\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
        options.namespace
    );
    for (path, text) in chart::crds() {
        out.push_str(&format!("---\n# Source: kuma/{path}\n{}\n", text.trim()));
    }
    for Manifest { source, text, .. } in &manifests {
        out.push_str(&format!("---\n# Source: {source}\n{text}\n"));
    }
    Ok(out)
}

/// What Kubernetes accepts as a namespace's name (RFC 1123 label).
fn is_dns_label(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&name.len())
        && name.chars().all(|c| alnum(c) || c == '-')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

/// Helm's install order by kind (`releaseutil.InstallOrder`): what others
/// refer to comes first; kinds it does not list go last.
fn install_order(object: &serde_json::Value) -> usize {
    const ORDER: &[&str] = &[
        "PriorityClass",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let kind = object["kind"].as_str().unwrap_or_default();
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(options: &ControlPlaneOptions) -> Vec<serde_json::Value> {
        let text = control_plane(options).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect()
    }

    fn find<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    #[test]
    fn flags_reach_the_objects() {
        let options = ControlPlaneOptions {
            namespace: "mesh-system".into(),
            image_registry: Some("registry.example/kuma".into()),
            control_plane_version: Some("9.9.9".into()),
            injector_failure_policy: Some(FailurePolicy::Fail),
            set: vec!["controlPlane.replicas=3".into()],
            ..Default::default()
        };
        let objects = objects(&options);
        assert_eq!(objects[0]["kind"], "Namespace");
        assert_eq!(objects[0]["metadata"]["name"], "mesh-system");
        let deployment = find(&objects, "Deployment", "kuma-control-plane");
        assert_eq!(deployment["metadata"]["namespace"], "mesh-system");
        assert_eq!(deployment["spec"]["replicas"], 3);
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/kuma/kuma-cp:9.9.9"
        );
        let webhook = find(&objects, "MutatingWebhookConfiguration", "kuma-injector");
        assert_eq!(webhook["webhooks"][0]["failurePolicy"], "Fail");
        assert_eq!(
            webhook["webhooks"][0]["clientConfig"]["service"]["namespace"],
            "mesh-system"
        );
    }

    #[test]
    fn objects_come_in_install_order() {
        let kinds: Vec<String> = objects(&ControlPlaneOptions::default())
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect();
        let position = |kind: &str| kinds.iter().position(|k| k == kind).unwrap();
        assert_eq!(position("Namespace"), 0);
        assert!(position("CustomResourceDefinition") < position("ServiceAccount"));
        assert!(position("Secret") < position("Deployment"));
        assert!(position("Deployment") < position("MutatingWebhookConfiguration"));
    }

    #[test]
    fn every_run_generates_a_fresh_webhook_certificate() {
        let options = ControlPlaneOptions::default();
        let secret = |objects: &[serde_json::Value]| {
            find(objects, "Secret", "kuma-injector-tls")["data"]["tls.crt"].clone()
        };
        assert_ne!(secret(&objects(&options)), secret(&objects(&options)));
    }

    fn refused(options: ControlPlaneOptions) -> String {
        control_plane(&options).unwrap_err().to_string()
    }

    #[test]
    fn bad_options_are_refused_with_their_origin() {
        let e = refused(ControlPlaneOptions {
            values: vec!["/nonexistent/values.yaml".into()],
            ..Default::default()
        });
        assert!(e.starts_with("/nonexistent/values.yaml: "), "{e}");
        let e = refused(ControlPlaneOptions {
            set: vec!["controlPlane.replicas".into()],
            ..Default::default()
        });
        assert!(e.starts_with("--set controlPlane.replicas: "), "{e}");
        let e = refused(ControlPlaneOptions {
            namespace: "Kuma_System".into(),
            ..Default::default()
        });
        assert!(e.contains("\"Kuma_System\" is not a namespace name"), "{e}");
    }
}
