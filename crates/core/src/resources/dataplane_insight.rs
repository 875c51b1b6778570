//! `DataplaneInsight`: what the control plane knows of a proxy's xDS
//! streams. Written by the control plane only; served with the dataplane by
//! `/meshes/{mesh}/dataplanes+insights`.
//!
//! Counters are strings on the wire, as protobuf's JSON mapping writes
//! 64-bit integers, so documents match Kuma's byte for byte.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataplaneInsightSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<DiscoverySubscription>,
    /// The proxy's workload certificate, in an mTLS mesh (Kuma's `mTLS`).
    #[serde(rename = "mTLS", default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsInsight>,
}

/// What the control plane issued to the proxy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MtlsInsight {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiration_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_certificate_regeneration: Option<DateTime<Utc>>,
    /// How many certificates the proxy has been sent.
    #[serde(default)]
    pub certificate_regenerations: u64,
}

/// The versions a stream's proxy reported (Kuma's `version`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kuma_dp: Option<ComponentVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy: Option<ComponentVersion>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentVersion {
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoverySubscription {
    pub id: String,
    pub control_plane_instance_id: String,
    pub connect_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub status: SubscriptionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<SubscriptionVersion>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub total: DiscoveryServiceStats,
    #[serde(default)]
    pub cds: DiscoveryServiceStats,
    #[serde(default)]
    pub eds: DiscoveryServiceStats,
    #[serde(default)]
    pub lds: DiscoveryServiceStats,
    #[serde(default)]
    pub rds: DiscoveryServiceStats,
    /// Secrets sent over ADS (Kuma's insight has no line for them, so its
    /// parts did not add up to the total); left out while there are none,
    /// so that Kuma's documents read back as they were written.
    #[serde(default, skip_serializing_if = "DiscoveryServiceStats::is_empty")]
    pub sds: DiscoveryServiceStats,
    /// Envoy's message for the last rejected (NACKed) response, after the
    /// type it rejected (`cds: ...`); cleared when Envoy accepts a later
    /// response of that type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nack_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoveryServiceStats {
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "as_string",
        deserialize_with = "from_string"
    )]
    #[schemars(with = "String")]
    pub responses_sent: u64,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "as_string",
        deserialize_with = "from_string"
    )]
    #[schemars(with = "String")]
    pub responses_acknowledged: u64,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        serialize_with = "as_string",
        deserialize_with = "from_string"
    )]
    #[schemars(with = "String")]
    pub responses_rejected: u64,
}

impl DiscoveryServiceStats {
    fn is_empty(&self) -> bool {
        *self == DiscoveryServiceStats::default()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn as_string<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

fn from_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        S(String),
        N(u64),
    }
    match Num::deserialize(d)? {
        Num::N(n) => Ok(n),
        Num::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

impl DataplaneInsightSpec {
    /// Online while any of its streams is open, as Kuma counts it: a
    /// second kuma-dp that comes and goes does not hide the first.
    pub fn is_online(&self) -> bool {
        self.connected_streams() > 0
    }

    /// Subscriptions that have not disconnected.
    pub fn connected_streams(&self) -> usize {
        self.subscriptions
            .iter()
            .filter(|s| s.disconnect_time.is_none())
            .count()
    }

    pub fn latest(&self) -> Option<&DiscoverySubscription> {
        self.subscriptions.iter().max_by_key(|s| s.connect_time)
    }
}
