//! A component of the control plane: a server or a background job, built
//! from its own settings and the [`Shared`](super::shared::Shared) parts.
//! Building it takes its ports (so a taken port ends the start before
//! anything serves); starting it hands over its tasks, which run until
//! the shutdown signal.

use crate::runtime::CancellationToken;
use futures::future::BoxFuture;

/// One task of a component; `kuma-cp` spawns each.
pub type Task = BoxFuture<'static, ()>;

pub trait Component: Send {
    /// Its name in logs.
    fn name(&self) -> &'static str;
    /// Its tasks, serving until `shutdown` is cancelled.
    fn start(self: Box<Self>, shutdown: CancellationToken) -> Vec<Task>;
}

/// Background tasks with nothing to bind, started as they are (the
/// store's watchers and elections, memory release).
pub struct Tasks {
    pub name: &'static str,
    pub tasks: Vec<Task>,
}

impl Component for Tasks {
    fn name(&self) -> &'static str {
        self.name
    }

    fn start(self: Box<Self>, _shutdown: CancellationToken) -> Vec<Task> {
        self.tasks
    }
}
