//! The configuration of the proxies: the feed that turns store changes
//! into index events, the reconciler that rebuilds the proxies a change
//! touches, the mesh CA provisioner, and the ADS and SDS servers
//! (`xdsServer.*`, `sdsServer.*`) that stream the snapshots.

use crate::cp::CpError;
use crate::cp::component::{Component, Task};
use crate::cp::shared::Shared;
use crate::runtime::{self, Bound, CancellationToken, Leadership, Transport};
use crate::store::SharedStore;
use crate::xds::ads::AdsServer;
use crate::xds::index::{IndexHandle, ProxyId};
use crate::xds::insights::InsightWriter;
use crate::xds::reconciler::Reconciler;
use crate::xds::settings::{SdsServerConfig, XdsServerConfig};
use crate::xds::{ca_provisioner, feed};
use futures::FutureExt;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Instrument;

pub struct Xds {
    ads_bound: Bound,
    sds_bound: Bound,
    transport: Transport,
    ads: AdsServer,
    reconciler: Reconciler,
    /// The streams' connections, which the reconciler follows.
    connected: UnboundedReceiver<ProxyId>,
    /// What the feed and the CA provisioner read and write.
    store: SharedStore,
    index: IndexHandle,
    leadership: Leadership,
}

impl Xds {
    pub async fn bind(
        xds: &XdsServerConfig,
        sds: &SdsServerConfig,
        connected: UnboundedReceiver<ProxyId>,
        shared: &Shared,
    ) -> Result<Xds, CpError> {
        let ads_bound = runtime::bind("xDS", "xdsServer.grpcPort", xds.grpc_port).await?;
        let sds_bound = runtime::bind("SDS", "sdsServer.grpcPort", sds.grpc_port).await?;
        let ads = AdsServer {
            cache: shared.cache.clone(),
            index: shared.index.clone(),
            insights: InsightWriter::start(
                shared.store.clone(),
                Duration::from_millis(xds.insight_flush_interval_ms),
                shared.shutdown.clone(),
                &shared.insight_writers,
            ),
            metrics: shared.metrics.clone(),
            instance_id: shared.instance_id.clone(),
            shutdown: shared.shutdown.clone(),
            auth: shared.auth.clone(),
        };
        let reconciler = Reconciler {
            index: shared.index.clone(),
            cache: shared.cache.clone(),
            metrics: shared.metrics.clone(),
            debounce: Duration::from_millis(xds.debounce_ms),
            cert_validity: Duration::from_secs(sds.cert_validity_seconds),
            cert_renewal_margin: Duration::from_secs(sds.cert_renewal_margin_seconds),
        };
        Ok(Xds {
            ads_bound,
            sds_bound,
            transport: shared.proxy_transport.clone(),
            ads,
            reconciler,
            connected,
            store: shared.store.clone(),
            index: shared.index.clone(),
            leadership: shared.leadership.clone(),
        })
    }

    /// The ADS port, which the bootstraps name.
    pub fn ads_port(&self) -> u16 {
        self.ads_bound.address.port()
    }
}

impl Component for Xds {
    fn name(&self) -> &'static str {
        "xds"
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        let (ads_service, sds_service) = self.ads.into_services();
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        vec![
            Box::pin(self.ads_bound.serve_grpc(
                ads_service,
                self.transport.clone(),
                shutdown.clone(),
            )),
            Box::pin(
                self.sds_bound
                    .serve_grpc(sds_service, self.transport, shutdown.clone()),
            ),
            feed::universal(self.store.clone(), events_tx, shutdown.clone())
                .instrument(tracing::info_span!("feed"))
                .boxed(),
            self.reconciler
                .run(events, self.connected, shutdown.clone())
                .instrument(tracing::info_span!("reconciler"))
                .boxed(),
            ca_provisioner::run(self.store, self.index, self.leadership, shutdown)
                .instrument(tracing::info_span!("ca_provisioner"))
                .boxed(),
        ]
    }
}
