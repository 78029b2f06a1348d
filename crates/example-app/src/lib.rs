//! An example application on the AttestMesh app API (DESIGN §11).
//!
//! It is the smallest program that uses everything an application next to the agent needs:
//!
//! - [`agent`]: connect to the agent's unix socket (gRPC), wait until the node is healthy, list
//!   peers, send a sealed message, subscribe to messages addressed to this node;
//! - [`appkey`]: derive an application key from the Cluster Shared Key (CSK) with HKDF — the
//!   pattern every app should follow instead of using the CSK directly;
//! - [`echo`]: talk to a peer over its mesh IP (plain TCP inside WireGuard) with a
//!   challenge–response that proves both ends derived the same application key;
//! - [`demo`]: all of the above against one peer.
//!
//! The binary `attestmesh-example` (src/main.rs) is a thin CLI over this library; the library
//! keeps errors typed ([`AppError`]) so tests can assert on them and the CLI only formats them.

pub mod agent;
pub mod appkey;
pub mod demo;
pub mod echo;
pub mod error;
pub mod ids;

pub use agent::{Agent, DEFAULT_SOCKET, PeerInfo};
pub use appkey::AppKey;
pub use error::AppError;
pub use ids::{MemberId, PeerSpec};
