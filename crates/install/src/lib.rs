//! `kuma-install`: the Helm chart `charts/kuma`, embedded, rendered as
//! `helm template` renders it. It imports no other crate of the workspace.

pub mod install;
