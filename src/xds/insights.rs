//! Dataplane insights: what each ADS stream did, counted in memory and
//! written to the store at a bounded rate (at most once per flush interval
//! per stream, and once more when the stream ends).

use super::cache::CertificateTimes;
use super::generator::TypeUrl;
use super::index::ProxyId;
use crate::resources::{
    DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription, MtlsInsight, ResourceKey,
    ResourceType, Spec, SubscriptionVersion,
};
use crate::store::{self, SharedStore, StoreError};
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How many subscriptions of a dataplane the insight keeps, newest last.
const KEPT_SUBSCRIPTIONS: usize = 5;

/// The counters of one stream.
pub struct SubscriptionTracker {
    id: ProxyId,
    state: Mutex<DiscoverySubscription>,
    /// The workload certificate last sent on this stream.
    certificate: Mutex<Option<CertificateTimes>>,
    changed: Notify,
}

impl SubscriptionTracker {
    pub fn new(
        id: ProxyId,
        control_plane_instance_id: &str,
        version: Option<SubscriptionVersion>,
    ) -> Arc<Self> {
        Arc::new(SubscriptionTracker {
            id,
            state: Mutex::new(DiscoverySubscription {
                id: uuid::Uuid::new_v4().to_string(),
                control_plane_instance_id: control_plane_instance_id.to_string(),
                connect_time: Utc::now(),
                version,
                ..Default::default()
            }),
            certificate: Mutex::new(None),
            changed: Notify::new(),
        })
    }

    /// A workload certificate was sent.
    pub fn certificate(&self, times: CertificateTimes) {
        *self.certificate.lock().unwrap_or_else(|e| e.into_inner()) = Some(times);
        self.changed.notify_one();
    }

    fn update(&self, f: impl FnOnce(&mut DiscoverySubscription)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        s.status.last_update_time = Some(Utc::now());
        drop(s);
        self.changed.notify_one();
    }

    fn stats(
        s: &mut DiscoverySubscription,
        type_url: TypeUrl,
        f: impl Fn(&mut DiscoveryServiceStats),
    ) {
        f(&mut s.status.total);
        match type_url {
            TypeUrl::Listener => f(&mut s.status.lds),
            TypeUrl::Cluster => f(&mut s.status.cds),
            TypeUrl::ClusterLoadAssignment => f(&mut s.status.eds),
            TypeUrl::Secret => f(&mut s.status.sds),
        }
    }

    pub fn sent(&self, type_url: TypeUrl) {
        self.update(|s| Self::stats(s, type_url, |st| st.responses_sent += 1));
    }

    /// An ACK of a type whose last response was rejected means Envoy took
    /// a later one: the rejection is over and its message goes.
    pub fn acked(&self, type_url: TypeUrl) {
        self.update(|s| {
            Self::stats(s, type_url, |st| st.responses_acknowledged += 1);
            let prefix = format!("{}: ", type_url.short());
            if s.status
                .last_nack_message
                .as_ref()
                .is_some_and(|m| m.starts_with(&prefix))
            {
                s.status.last_nack_message = None;
            }
        });
    }

    /// The message says which type Envoy rejected: `cds: <Envoy's reason>`.
    pub fn nacked(&self, type_url: TypeUrl, message: &str) {
        self.update(|s| {
            Self::stats(s, type_url, |st| st.responses_rejected += 1);
            s.status.last_nack_message = Some(format!("{}: {message}", type_url.short()));
        });
    }

    pub fn disconnected(&self) {
        self.update(|s| s.disconnect_time = Some(Utc::now()));
    }

    fn current(&self) -> DiscoverySubscription {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Writes a stream's subscription into its dataplane's insight when it
/// connects and whenever it changed, no more often than `interval`, until
/// `done` fires; then writes the final state once.
pub async fn flush_loop(
    store: SharedStore,
    tracker: Arc<SubscriptionTracker>,
    interval: Duration,
    done: Arc<Notify>,
) {
    // A reconnecting proxy that is already up to date gets no response,
    // yet its new subscription must show at once.
    write(&store, &tracker).await;
    loop {
        tokio::select! {
            _ = tracker.changed.notified() => {}
            _ = done.notified() => break,
        }
        write(&store, &tracker).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = done.notified() => break,
        }
    }
    tracker.disconnected();
    write(&store, &tracker).await;
}

async fn write(store: &SharedStore, tracker: &SubscriptionTracker) {
    let key = ResourceKey::new(
        ResourceType::DataplaneInsight,
        &tracker.id.mesh,
        &tracker.id.name,
    );
    // A concurrent writer (another stream of the same proxy) can win the
    // race: `modify` reads again and retries.
    let written = store::modify(store.as_ref(), &key, |existing| {
        let mut insight = match existing.map(|r| &r.spec) {
            Some(Spec::DataplaneInsight(insight)) => insight.clone(),
            _ => DataplaneInsightSpec::default(),
        };
        merge(&mut insight, tracker.current());
        if let Some(times) = *tracker
            .certificate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            record_certificate(&mut insight, times);
        }
        Ok::<_, StoreError>(Some(Spec::DataplaneInsight(insight)))
    })
    .await;
    match written {
        // The mesh is gone, and the dataplane with it; or another replica
        // is the one that writes.
        Ok(_) | Err(StoreError::MeshNotFound(_) | StoreError::NotLeader(_)) => {}
        Err(e) => tracing::warn!(error = %e, "cannot write the dataplane insight"),
    }
}

/// A certificate the insight has not seen counts as a regeneration.
fn record_certificate(insight: &mut DataplaneInsightSpec, times: CertificateTimes) {
    let issued = chrono::DateTime::<Utc>::from(times.issued_at);
    let mtls = insight.mtls.get_or_insert_with(MtlsInsight::default);
    if mtls.last_certificate_regeneration != Some(issued) {
        mtls.last_certificate_regeneration = Some(issued);
        mtls.certificate_expiration_time = Some(times.not_after.into());
        mtls.certificate_regenerations += 1;
    }
}

fn merge(insight: &mut DataplaneInsightSpec, subscription: DiscoverySubscription) {
    match insight
        .subscriptions
        .iter_mut()
        .find(|s| s.id == subscription.id)
    {
        Some(existing) => *existing = subscription,
        None => insight.subscriptions.push(subscription),
    }
    let excess = insight
        .subscriptions
        .len()
        .saturating_sub(KEPT_SUBSCRIPTIONS);
    insight.subscriptions.drain(..excess);
}
