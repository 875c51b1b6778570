//! Security of the mesh: each mesh's builtin CA and the workload
//! certificates it signs, and dataplane tokens with the server that issues
//! them.

pub mod ca;
pub mod pem;
pub mod token_server;
pub mod tokens;
