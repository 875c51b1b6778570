//! Security of the mesh: the control plane's own certificate, each mesh's builtin CA and the workload
//! certificates it signs, dataplane tokens with the server that issues
//! them, and who may use the HTTP API (users, their tokens, access roles).

pub mod ca;
pub mod control_plane_tls;
pub mod rbac;
pub mod settings;
pub mod tokens;
pub mod users;
