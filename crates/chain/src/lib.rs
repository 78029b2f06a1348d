//! Contract bindings, chain reader, log follower, UserOperation builder, bundler and paymaster clients, deployment helpers.
//!
//! So far: a minimal JSON-RPC client ([`rpc`]), the bindings the registration flow reads
//! ([`bindings`]) and deployment of the AttestMesh infrastructure from compiled artifacts
//! ([`deploy`]).

pub mod bindings;
pub mod deploy;
pub mod rpc;
