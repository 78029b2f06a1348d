//! Contract bindings, chain reader, log follower, UserOperation builder, bundler and paymaster clients, deployment helpers.
//!
//! So far: the workspace's JSON-RPC client over http and https ([`rpc`]); the one reading
//! interface every follower takes ([`read::ChainReader`], with the one log type and the one typed
//! view call) and the cluster reader over it ([`cluster`]); behind the `sim` feature a simulated
//! chain for follower tests ([`sim`]); signed transactions
//! from a local key ([`tx`]: EIP-1559/EIP-155, gas margin, receipt waiting), the contract
//! bindings ([`bindings`]), revert decoding into our contract errors ([`revert`]), the ERC-4337
//! v0.7 UserOperation client ([`userop`], over [`bundler`] and the ERC-7677 [`paymaster`]
//! client, retrying with `attestmesh_core::backoff`), deployment of the AttestMesh infrastructure from compiled
//! artifacts ([`deploy`]) and, behind the `devstack` feature, the local 4337 stack
//! ([`devstack`]).

pub mod bindings;
pub mod bundler;
pub mod cluster;
pub mod deploy;
#[cfg(feature = "devstack")]
pub mod devstack;
pub mod paymaster;
pub mod read;
pub mod revert;
pub mod rpc;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tx;
pub mod userop;
