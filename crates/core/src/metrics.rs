//! Prometheus metrics of the control plane, served on `GET /metrics` of
//! the API port in the OpenMetrics text format (with its content type, so
//! a scraper reads `# TYPE x counter` with samples `x_total` right).
//! Every family and label set is there from the start, at zero, so that a
//! dashboard tells "none yet" from "missing".

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// `sotw` or `delta`.
    pub kind: &'static str,
}

/// `type="lds"`, `"cds"` or `"eds"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdsType {
    pub r#type: &'static str,
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    pub streams: Family<StreamLabels, Gauge>,
    pub pushes: Family<XdsType, Counter>,
    pub nacks: Family<XdsType, Counter>,
    pub generation_seconds: Histogram,
    pub push_to_ack_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let streams = Family::<StreamLabels, Gauge>::default();
        let pushes = Family::<XdsType, Counter>::default();
        let nacks = Family::<XdsType, Counter>::default();
        // 10 µs .. ~20 s
        for kind in ["sotw", "delta"] {
            let _ = streams.get_or_create(&StreamLabels { kind });
        }
        for type_url in crate::envoy_api::TypeUrl::ALL {
            let labels = XdsType {
                r#type: type_url.short(),
            };
            let _ = pushes.get_or_create(&labels);
            let _ = nacks.get_or_create(&labels);
        }
        let generation_seconds = Histogram::new(exponential_buckets(0.00001, 2.0, 22));
        let push_to_ack_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "xds_streams",
            "Open ADS streams by kind (sotw, delta)",
            streams.clone(),
        );
        registry.register(
            "xds_responses_sent",
            "xDS responses sent, by type",
            pushes.clone(),
        );
        registry.register(
            "xds_nacks",
            "xDS responses rejected (NACKed) by Envoy, by type",
            nacks.clone(),
        );
        registry.register(
            "xds_generation_seconds",
            "Time to generate one proxy's configuration",
            generation_seconds.clone(),
        );
        registry.register(
            "xds_push_to_ack_seconds",
            "Time from sending a response to Envoy's ACK",
            push_to_ack_seconds.clone(),
        );
        Metrics {
            registry,
            streams,
            pushes,
            nacks,
            generation_seconds,
            push_to_ack_seconds,
        }
    }

    /// The OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
