//! Test support shared by the workspace's integration tests (a dev-dependency only).
//!
//! - [`lab`]: the one decision of whether a test whose prerequisites are missing (root, network
//!   namespaces, a binary) skips or fails: CI sets `ATTESTMESH_REQUIRE_LAB=1`, so it cannot pass
//!   by skipping.
//! - [`fixtures`]: test keys and files more than one crate's tests need.
//! - [`stack`]: starting alto, which binds its own port, with a retry on a lost port race.
//! - [`tls`]: a TLS-terminating front for a plain service, like the dstack gateway's.
//! - [`wait`]: waiting for a condition with a deadline, the replacement for sleeping and hoping.

pub mod fixtures;
pub mod lab;
pub mod stack;
pub mod tls;
pub mod wait;
