//! Dataplane insights: what each ADS stream did, counted in memory and
//! written to the store by one writer for the whole control plane.
//!
//! A stream's tracker is queued for writing when it changes; the writer
//! writes it no more often than once per flush interval, and at once when
//! its stream ended. One writer, not a task per stream: a connected proxy
//! costs a tracker, not a task and its timers, and at most
//! [`CONCURRENT_WRITES`] insight writes are in flight at once, so a burst
//! of new streams (thousands of first insights) never takes every
//! connection of the store's pool from the API and the change feed.

use super::cache::CertificateTimes;
use super::generator::TypeUrl;
use super::index::ProxyId;
use crate::resources::{
    DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription, MtlsInsight, ResourceKey,
    ResourceType, Spec, SubscriptionVersion,
};
use crate::runtime::{CancellationToken, TaskTracker};
use crate::store::{self, SharedStore, StoreError};
use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many subscriptions of a dataplane the insight keeps, newest last.
const KEPT_SUBSCRIPTIONS: usize = 5;

/// Insight writes in flight at once, whatever the number of streams.
const CONCURRENT_WRITES: usize = 4;

/// What a tracker holds behind its lock.
struct Tracked {
    subscription: DiscoverySubscription,
    /// The workload certificate last sent on this stream.
    certificate: Option<CertificateTimes>,
    /// When the writer last started writing it.
    written_at: Option<Instant>,
}

/// The counters of one stream.
pub struct SubscriptionTracker {
    id: ProxyId,
    state: Mutex<Tracked>,
    /// Whether the tracker waits in the writer's queue: set by the change
    /// that queued it, cleared when the writer takes it.
    queued: AtomicBool,
    writer: mpsc::UnboundedSender<Arc<SubscriptionTracker>>,
}

impl SubscriptionTracker {
    /// A certificate was sent.
    pub fn certificate(self: &Arc<Self>, times: CertificateTimes) {
        self.change(|t| t.certificate = Some(times));
    }

    /// Applies `f`, then queues the tracker unless it is queued already.
    fn change(self: &Arc<Self>, f: impl FnOnce(&mut Tracked)) {
        f(&mut self.lock());
        if !self.queued.swap(true, Ordering::AcqRel) {
            // The writer is gone only when the control plane stops.
            let _ = self.writer.send(self.clone());
        }
    }

    fn update(self: &Arc<Self>, f: impl FnOnce(&mut DiscoverySubscription)) {
        self.change(|t| {
            f(&mut t.subscription);
            t.subscription.status.last_update_time = Some(Utc::now());
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    pub fn sent(self: &Arc<Self>, type_url: TypeUrl) {
        self.update(|s| Self::stats(s, type_url, |st| st.responses_sent += 1));
    }

    /// An ACK of a type whose last response was rejected means Envoy took
    /// a later one: the rejection is over and its message goes.
    pub fn acked(self: &Arc<Self>, type_url: TypeUrl) {
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
    pub fn nacked(self: &Arc<Self>, type_url: TypeUrl, message: &str) {
        self.update(|s| {
            Self::stats(s, type_url, |st| st.responses_rejected += 1);
            s.status.last_nack_message = Some(format!("{}: {message}", type_url.short()));
        });
    }

    /// The stream ended: its subscription is marked disconnected and
    /// written without waiting for the flush interval.
    pub fn disconnected(self: &Arc<Self>) {
        self.change(|t| t.subscription.disconnect_time = Some(Utc::now()));
    }
}

/// The control plane's insight writer: hands out trackers, and writes them.
#[derive(Clone)]
pub struct InsightWriter {
    queue: mpsc::UnboundedSender<Arc<SubscriptionTracker>>,
}

impl InsightWriter {
    /// Starts the writer on `tasks`. It writes every tracker at most once
    /// per `interval`; once `shutdown` fires it writes whatever is queued
    /// at once, and it ends when the last tracker and handle are gone.
    pub fn start(
        store: SharedStore,
        interval: Duration,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> InsightWriter {
        let (queue, queued) = mpsc::unbounded_channel();
        tasks.spawn(write_queued(store, interval, queued, shutdown));
        InsightWriter { queue }
    }

    /// The tracker of a new stream of `id`; its first write is queued at
    /// once, so a reconnecting proxy that is already up to date (and gets
    /// no response) shows its new subscription.
    pub fn track(
        &self,
        id: ProxyId,
        control_plane_instance_id: &str,
        version: Option<SubscriptionVersion>,
    ) -> Arc<SubscriptionTracker> {
        let tracker = Arc::new(SubscriptionTracker {
            id,
            state: Mutex::new(Tracked {
                subscription: DiscoverySubscription {
                    id: uuid::Uuid::new_v4().to_string(),
                    control_plane_instance_id: control_plane_instance_id.to_string(),
                    connect_time: Utc::now(),
                    version,
                    ..Default::default()
                },
                certificate: None,
                written_at: None,
            }),
            queued: AtomicBool::new(false),
            writer: self.queue.clone(),
        });
        tracker.change(|_| {});
        tracker
    }
}

/// The writer's loop: trackers wait in `due` until their time, then are
/// written, [`CONCURRENT_WRITES`] at a time.
async fn write_queued(
    store: SharedStore,
    interval: Duration,
    mut queued: mpsc::UnboundedReceiver<Arc<SubscriptionTracker>>,
    shutdown: CancellationToken,
) {
    // By due time; the sequence number keeps equal times apart.
    let mut due: BTreeMap<(Instant, u64), Arc<SubscriptionTracker>> = BTreeMap::new();
    let mut sequence = 0u64;
    let mut writing = FuturesUnordered::new();
    let mut open = true;
    let mut stopping = false;
    loop {
        let now = Instant::now();
        while writing.len() < CONCURRENT_WRITES {
            let Some(entry) = due.first_entry() else {
                break;
            };
            if entry.key().0 > now && !stopping {
                break;
            }
            writing.push(write(&store, entry.remove()));
        }
        if !open && due.is_empty() && writing.is_empty() {
            return;
        }
        let next = due
            .first_key_value()
            .filter(|_| writing.len() < CONCURRENT_WRITES)
            .map(|((at, _), _)| *at);
        tokio::select! {
            tracker = queued.recv(), if open => match tracker {
                Some(tracker) => {
                    // An ended stream's last write is not delayed.
                    let at = {
                        let t = tracker.lock();
                        match t.written_at {
                            Some(written) if t.subscription.disconnect_time.is_none() => {
                                written + interval
                            }
                            _ => Instant::now(),
                        }
                    };
                    sequence += 1;
                    due.insert((at, sequence), tracker);
                }
                None => open = false,
            },
            Some(()) = writing.next(), if !writing.is_empty() => {}
            () = tokio::time::sleep_until(next.unwrap_or(now)), if next.is_some() => {}
            () = shutdown.cancelled(), if !stopping => stopping = true,
        }
    }
}

/// Writes the tracker's current state into its dataplane's insight.
async fn write(store: &SharedStore, tracker: Arc<SubscriptionTracker>) {
    // Taken off the queue before its state is read: a change from now on
    // queues it again, for its next turn.
    tracker.queued.store(false, Ordering::Release);
    tracker.lock().written_at = Some(Instant::now());
    let key = ResourceKey::new(
        ResourceType::DataplaneInsight,
        &tracker.id.mesh,
        &tracker.id.name,
    );
    // A concurrent writer (another control plane, another stream of the
    // same proxy, or this tracker's own earlier write still in flight when
    // its stream ended) can win the race: `modify` reads again and
    // retries, and each attempt takes the tracker's state as it is then,
    // so an older state never lands after a newer one.
    let written = store::modify(store.as_ref(), &key, |existing| {
        let mut insight = match existing.map(|r| &r.spec) {
            Some(Spec::DataplaneInsight(insight)) => insight.clone(),
            _ => DataplaneInsightSpec::default(),
        };
        let (subscription, certificate) = {
            let t = tracker.lock();
            (t.subscription.clone(), t.certificate)
        };
        merge(&mut insight, subscription);
        if let Some(times) = certificate {
            record_certificate(&mut insight, times);
        }
        Ok::<_, StoreError>(Some(Spec::DataplaneInsight(insight)))
    })
    .await;
    match written {
        // The mesh is gone, and the dataplane with it; or another replica
        // is the one that writes.
        Ok(_) | Err(StoreError::MeshNotFound(_) | StoreError::NotLeader(_)) => {}
        Err(e) => {
            tracing::warn!(mesh = %tracker.id.mesh, dataplane = %tracker.id.name, error = %e, "cannot write the dataplane insight")
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{MeshSpec, Resource};
    use crate::store::memory::MemoryStore;

    const INTERVAL: Duration = Duration::from_secs(1);

    async fn store_with_mesh() -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let mesh = Resource::new(
            ResourceKey::mesh("default"),
            Spec::Mesh(MeshSpec::default()),
        );
        store.create(mesh).await.unwrap();
        store
    }

    /// A writer on a store with mesh `default`, and the tracker of a stream
    /// of `web` whose first write is done.
    async fn started(
        shutdown: CancellationToken,
    ) -> (
        SharedStore,
        TaskTracker,
        InsightWriter,
        Arc<SubscriptionTracker>,
    ) {
        let store = store_with_mesh().await;
        let tasks = TaskTracker::new();
        let writer = InsightWriter::start(store.clone(), INTERVAL, shutdown, &tasks);
        let tracker = writer.track(ProxyId::new("default", "web"), "cp-1", None);
        settle().await;
        (store, tasks, writer, tracker)
    }

    /// Lets the writer run until nothing is left to do at this instant.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// The stored insight of `web`: its version and its only subscription.
    async fn insight(store: &SharedStore) -> Option<(String, DiscoverySubscription)> {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, "default", "web");
        let stored = store.get(&key).await.ok()?;
        match stored.spec {
            Spec::DataplaneInsight(mut i) => {
                Some((stored.version.to_string(), i.subscriptions.pop()?))
            }
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_stream_shows_at_once_and_changes_within_the_interval_make_one_write() {
        let (store, _tasks, _writer, tracker) = started(CancellationToken::new()).await;
        let (first, subscription) = insight(&store).await.expect("written on connect");
        assert_eq!(subscription.control_plane_instance_id, "cp-1");
        for _ in 0..5 {
            tracker.sent(TypeUrl::Cluster);
        }
        tokio::time::advance(INTERVAL / 2).await;
        settle().await;
        assert_eq!(
            insight(&store).await.unwrap().0,
            first,
            "not again within the interval"
        );
        tokio::time::advance(INTERVAL / 2).await;
        settle().await;
        let (second, subscription) = insight(&store).await.unwrap();
        assert_ne!(second, first);
        assert_eq!(
            subscription.status.cds.responses_sent, 5,
            "five changes, one write"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_stream_is_written_at_once_and_the_writer_ends_after_the_last_tracker() {
        let (store, tasks, writer, tracker) = started(CancellationToken::new()).await;
        tracker.acked(TypeUrl::Listener);
        tracker.disconnected();
        settle().await;
        let (_, subscription) = insight(&store).await.unwrap();
        assert!(
            subscription.disconnect_time.is_some(),
            "written without waiting"
        );
        assert_eq!(subscription.status.lds.responses_acknowledged, 1);
        drop((writer, tracker));
        tasks.close();
        tokio::time::timeout(Duration::from_secs(1), tasks.wait())
            .await
            .expect("the writer ends once nobody can queue a write");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_control_plane_writes_what_is_queued_without_waiting() {
        let shutdown = CancellationToken::new();
        let (store, _tasks, _writer, tracker) = started(shutdown.clone()).await;
        tracker.nacked(TypeUrl::Cluster, "bad cluster");
        shutdown.cancel();
        settle().await;
        let (_, subscription) = insight(&store).await.unwrap();
        assert_eq!(
            subscription.status.last_nack_message.as_deref(),
            Some("cds: bad cluster"),
            "written before the interval is over"
        );
    }
}
