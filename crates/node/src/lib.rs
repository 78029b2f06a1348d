//! The node agent: phases, reconcile loop, heartbeats, CSK, app API, peer API, health and metrics.
//!
//! Layout: pure decisions live in `attestmesh-core`; this crate is the I/O shell around them.
//! [`state::Shared`] is the single place the runtime writes and every interface reads;
//! [`runtime::run`] is the whole agent.

pub mod api;
pub mod chainview;
pub mod config;
pub mod cskflow;
pub mod follower;
pub mod health;
pub mod heartbeats;
pub mod indexer_registry;
pub mod intake;
pub mod mesh;
pub mod peer;
pub mod ports;
mod retry;
pub mod runtime;
pub mod state;
pub mod statedir;
