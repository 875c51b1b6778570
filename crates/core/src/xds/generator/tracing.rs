//! TrafficTrace: a proxy that the most specific TrafficTrace of its mesh
//! selects reports a span of every HTTP request it proxies, in and out, to
//! the policy's tracing backend (or the mesh's default). Envoy names the
//! span's service after its node cluster, which the bootstrap sets to the
//! dataplane's service. TCP listeners carry no requests and report nothing.

use super::encode::any;
use super::envoy::{XdsResource, dns_cluster};
use crate::resources::{DataplaneSpec, TracingBackend, TrafficTraceSpec, for_dataplane};
use crate::xds::index::MeshView;
use envoy_types::pb::envoy::config::trace::v3::{ZipkinConfig, tracing, zipkin_config};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::v3::Percent;

/// What a traced proxy adds: the collector's cluster and the tracing of
/// its HTTP connection managers.
#[derive(Debug, Clone)]
pub struct ProxyTracing {
    /// The TrafficTrace, by name.
    pub policy: String,
    pub collector: XdsResource,
    pub config: Tracing,
}

/// The TrafficTrace that selects `dataplane` (most specific first), its
/// name and the backend it names, when the mesh has that backend.
pub fn chosen<'m>(
    dataplane: &DataplaneSpec,
    mesh: &'m MeshView,
) -> Option<(&'m str, &'m TrafficTraceSpec, &'m TracingBackend)> {
    let tags = dataplane.inbound_tags();
    let (name, trace) = for_dataplane(
        &tags,
        mesh.traffic_traces()
            .for_services(&dataplane.services())
            .map(|(name, t)| (name.as_str(), &t.selectors[..], t.as_ref())),
    )?;
    let tracing = mesh.spec.tracing.as_ref()?;
    let wanted = trace.backend().or(tracing.default_backend.as_deref());
    let backend = tracing
        .backends
        .iter()
        .find(|b| wanted.is_none_or(|w| b.name == w))?;
    Some((name, trace, backend))
}

pub fn of_proxy(dataplane: &DataplaneSpec, mesh: &MeshView) -> Option<ProxyTracing> {
    let (policy, _, backend) = chosen(dataplane, mesh)?;
    // Validated on the way in; a backend without a usable URL traces nothing.
    let (host, port, path) = backend.conf.endpoint()?;
    let cluster = format!("tracing:{}", backend.name);
    let zipkin = ZipkinConfig {
        collector_cluster: cluster.clone(),
        collector_endpoint: path,
        trace_id_128bit: backend.conf.trace_id_128bit,
        collector_endpoint_version: zipkin_config::CollectorEndpointVersion::HttpJson as i32,
        ..Default::default()
    };
    let config = Tracing {
        random_sampling: Some(Percent {
            value: backend.sampling(),
        }),
        provider: Some(tracing::Http {
            name: "envoy.tracers.zipkin".into(),
            config_type: Some(tracing::http::ConfigType::TypedConfig(any(&zipkin))),
        }),
        ..Default::default()
    };
    Some(ProxyTracing {
        policy: policy.to_string(),
        collector: dns_cluster(&cluster, &host, port),
        config,
    })
}
