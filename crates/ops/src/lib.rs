//! Operator logic of `attestmesh cluster …` (issue 8): deploy the shared infrastructure, create
//! clusters, manage their admission policy, deploy and bind members, register the Indexer — and
//! read it all back.
//!
//! Every write is planned as a plain call (`to`, `value`, `data`) and handed to an
//! [`exec::Executor`], which either signs and sends it with a local key (hex file or encrypted
//! keystore) or collects it into a Safe Transaction Builder batch (`--print-calldata`), because
//! production clusters are owned by multisigs. Commands check the chain first and send nothing
//! when the desired state is already there, so re-running any command is safe.
//!
//! Typed errors ([`OpsError`]) name what to fix; the CLI in `attestmesh-cli` is a thin layer.

pub mod artifacts;
pub mod cluster;
pub mod config;
pub mod deployments;
pub mod error;
pub mod exec;
pub mod indexer;
pub mod infra;
pub mod keystore;
pub mod member;
pub mod read;

pub use error::OpsError;
