//! The Attestor trait, the dstack guest-agent client, and devtee (a local emulator of the dstack
//! guest agent and KMS).
//!
//! Only [`dstack`] (and devtee, which emulates it) knows what dstack is (DESIGN §3.6, §4.4); the
//! agent sees the [`Attestor`] trait, [`NodeKeys`] and public keys.

pub mod attestor;
pub mod client;
pub mod compose;
pub mod dcap;
pub mod devtee;
pub mod dstack;
pub mod eventlog;
pub mod hexfmt;
pub mod kms;
pub mod pccs;
pub mod quote;
pub mod tdx;
pub mod wire;

pub use attestor::{Attestor, KeyKind, LostStateError, NodeKeys, OnChainRecord, check_lost_state};
pub use client::{AgentError, GuestAgentClient};
pub use dstack::DstackAttestor;
