//! Kubernetes mode (cargo feature `kubernetes`): Kuma's custom resources,
//! the kubernetes store that keeps them (its watchers feed the same change
//! feed, and so the same index, as the Universal stores), and the
//! controller that turns pods into `Dataplane`s.

pub mod crd;
pub mod events;
pub mod identity;
pub mod leader;
pub mod pods;
pub mod store;
