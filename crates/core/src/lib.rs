//! Sans-IO protocol logic: ids, mesh IPs, encodings, sealed boxes, message binding, heartbeats, liveness, CSK, push format, the retry backoff, per-chain defaults. No sockets, no clock.
//!
//! Everything here is a pure function of its inputs so that the Rust and Solidity sides can be
//! pinned to the same vectors in `spec/vectors/`.

pub mod backoff;
pub mod binding;
pub mod chains;
pub mod csk;
pub mod follower;
pub mod heartbeat;
pub mod ids;
pub mod keys;
pub mod liveness;
pub mod mesh;
pub mod message;
pub mod push;
pub mod sealed;
pub mod secp;
pub mod userop;

pub use alloy_primitives::{Address, B256, keccak256};
