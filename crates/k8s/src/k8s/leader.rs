//! Leader election with a `coordination.k8s.io/v1` Lease in the system
//! namespace. Several `kuma-cp` replicas serve xDS; only the holder of the
//! lease writes (generated Dataplanes, insights, CA Secrets, the default
//! Mesh). A holder renews every third of the lease duration; when it stops
//! (killed, partitioned), another replica takes the lease once it has not
//! been renewed for a whole duration.

use crate::runtime::{CancellationToken, Leadership};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::sync::watch;

pub const LEASE_NAME: &str = "kuma-cp-leader";

/// Starts campaigning for the lease; the returned handle follows the outcome.
pub fn campaign(
    client: kube::Client,
    namespace: &str,
    identity: String,
    lease_duration: Duration,
    shutdown: CancellationToken,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let leases: Api<Lease> = Api::namespaced(client, namespace);
    let task = tokio::spawn(async move {
        let renew_every = (lease_duration / 3).max(Duration::from_millis(200));
        loop {
            let leading = match try_hold(&leases, &identity, lease_duration).await {
                Ok(leading) => leading,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read or renew the leader lease");
                    // A leader that cannot renew may have lost the lease
                    // already: stop writing to be safe.
                    false
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity, leading, "leadership changed");
                let _ = tx.send(leading);
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = tx.send(false);
                    return;
                }
                _ = tokio::time::sleep(renew_every) => {}
            }
        }
    });
    (Leadership::follow(rx), task)
}

/// One round: take the lease when it is free or expired, renew it when it
/// is ours. Answers whether this replica holds it now.
async fn try_hold(
    leases: &Api<Lease>,
    identity: &str,
    duration: Duration,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let spec = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: acquire.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = leases.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                ..Default::default()
            },
            spec: Some(spec(None, 0)),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            // Another replica created it first.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(identity);
    let expired = current.renew_time.as_ref().is_none_or(|renewed| {
        let held_for = current
            .lease_duration_seconds
            .map(i64::from)
            .unwrap_or(duration.as_secs() as i64);
        renewed.0.as_millisecond() + held_for * 1000 < now.as_millisecond()
    });
    if !ours && !expired {
        return Ok(false);
    }
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
    let acquired = if ours { current.acquire_time } else { None };
    lease.spec = Some(spec(acquired, transitions));
    // The resourceVersion read above makes this a compare-and-swap: of two
    // replicas taking an expired lease, one gets a conflict.
    match leases
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
