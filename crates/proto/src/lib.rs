//! Generated gRPC code for the AttestMesh protocols (`/proto`).
//!
//! One crate for every `.proto` so the agent, its test clients, and future app SDKs share one
//! set of types: the app API ([`agent`]), agent-to-agent PeerControl ([`peer`]) and the Indexer
//! push stream ([`indexer`]).

#![allow(clippy::all, missing_docs)]

/// The app API on the agent's unix socket (DESIGN §11).
pub mod agent {
    tonic::include_proto!("attestmesh.agent.v1");
}

/// Agent-to-agent control on `<mesh IP>:50051`, inside WireGuard only (DESIGN §8).
pub mod peer {
    tonic::include_proto!("attestmesh.peer.v1");
}

/// Indexer pushes: signed wake-ups, never data (DESIGN §9.2).
pub mod indexer {
    tonic::include_proto!("attestmesh.indexer.v1");
}
