//! Generated gRPC code for the AttestMesh protocols (`/proto`).
//!
//! One crate for every `.proto` so the agent, its test clients, and future app SDKs share one
//! set of types: the app API ([`agent`]), agent-to-agent PeerControl ([`peer`]) and the Indexer
//! push stream ([`indexer`]); and the app API's unix-socket transport ([`socket`]).

#![allow(clippy::all, missing_docs)]

/// The app API on the agent's unix socket (DESIGN §11).
pub mod agent {
    tonic::include_proto!("attestmesh.agent.v1");
}

pub mod socket;

/// Agent-to-agent control on `<mesh IP>:50051`, inside WireGuard only (DESIGN §8).
pub mod peer {
    tonic::include_proto!("attestmesh.peer.v1");
}

/// Indexer pushes: signed wake-ups, never data (DESIGN §9.2).
pub mod indexer {
    tonic::include_proto!("attestmesh.indexer.v1");

    /// gRPC metadata key an Indexer sets on a RESOURCE_EXHAUSTED refusal to say which cap was
    /// hit, so a client can tell "resubscribe live" from "back off" without parsing messages.
    pub const CAP_METADATA_KEY: &str = "attestmesh-cap";
    /// [`CAP_METADATA_KEY`] value: `Hello.from_block` reaches further back than the Indexer
    /// replays; subscribe live (`from_block` 0) and rely on the chain for older events.
    pub const CAP_REPLAY_DEPTH: &str = "max_replay_blocks";
}
