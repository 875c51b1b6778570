//! What the replica that leads does once: create the `default` mesh and
//! keep the bootstrap admin token. A replica that is not the leader yet
//! does it once it is.

use super::CpError;
use super::component::{Component, Task};
use crate::resources::{MeshSpec, Resource, ResourceKey, Spec};
use crate::runtime::{CancellationToken, Leadership};
use crate::security::users::{self, UserTokenError};
use crate::store::{SharedStore, StoreError};
use futures::future::BoxFuture;
use std::time::Duration;

/// Creates the `default` mesh unless it exists or `skip` (the setting
/// `defaults.skipMeshCreation`) says not to. Answers whether that is
/// settled: false when the store refused because this replica no longer
/// leads.
pub async fn ensure_default_mesh(skip: bool, store: &SharedStore) -> Result<bool, CpError> {
    if skip {
        return Ok(true);
    }
    let mesh = Resource::new(
        ResourceKey::mesh("default"),
        Spec::Mesh(MeshSpec::default()),
    );
    match store.create(mesh).await {
        Ok(_) => {
            tracing::info!("created the default mesh");
            Ok(true)
        }
        Err(StoreError::AlreadyExists(_)) => Ok(true),
        Err(StoreError::NotLeader(_)) => Ok(false),
        Err(e) => Err(CpError::DefaultMesh(e)),
    }
}

/// The bootstrap admin token ([`users::ensure_admin_token`]); false when
/// this replica no longer leads.
async fn ensure_admin_token(store: &SharedStore) -> Result<bool, UserTokenError> {
    match users::ensure_admin_token(store.as_ref()).await {
        Ok(()) => Ok(true),
        Err(UserTokenError::Store(StoreError::NotLeader(_))) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs `job` whenever this replica leads, until it reports done (`true`);
/// `false` (leadership lost meanwhile) or an error try again.
async fn when_leading<F, Fut, E>(
    mut leadership: Leadership,
    shutdown: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leadership.acquired() => {}
        }
        match job().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Something the leader does once, until it reports done: answers
/// `Ok(false)` when leadership was lost meanwhile.
type Job = Box<dyn FnMut() -> BoxFuture<'static, Result<bool, String>> + Send>;

/// A job of the replica that leads, as a component.
pub struct LeaderJob {
    name: &'static str,
    leadership: Leadership,
    job: Job,
}

impl LeaderJob {
    /// The `default` mesh, when it was not settled at start.
    pub fn default_mesh(store: SharedStore, leadership: Leadership) -> LeaderJob {
        LeaderJob {
            name: "default_mesh",
            leadership,
            job: Box::new(move || {
                let store = store.clone();
                Box::pin(async move {
                    ensure_default_mesh(false, &store)
                        .await
                        .map_err(|e| e.to_string())
                })
            }),
        }
    }

    /// The bootstrap admin token
    /// (`apiServer.authn.tokens.bootstrapAdminToken`).
    pub fn admin_token(store: SharedStore, leadership: Leadership) -> LeaderJob {
        LeaderJob {
            name: "admin_token",
            leadership,
            job: Box::new(move || {
                let store = store.clone();
                Box::pin(async move { ensure_admin_token(&store).await.map_err(|e| e.to_string()) })
            }),
        }
    }
}

impl Component for LeaderJob {
    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task> {
        vec![Box::pin(when_leading(self.leadership, shutdown, self.job))]
    }
}
