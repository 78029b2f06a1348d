//! The on-chain `IndexerRegistry` (DESIGN §3.8): the one owner-maintained record that says which
//! Indexer agents subscribe to and, above all, which Ed25519 key its pushes must verify against.
//!
//! Agents read it with a plain `eth_call` against their own RPC, never from the Indexer: the key
//! an Indexer announces about itself proves nothing (invariant 5).

use alloy_primitives::{Address, B256};
use attestmesh_chain::bindings::IIndexerRegistry;
use attestmesh_chain::read::{BlockTag, ViewError, view};
use attestmesh_chain::rpc::RpcClient;

/// The registry record in Rust types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexerInfo {
    /// gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// The Indexer's code identity as the cluster owner registered it.
    pub code_id: B256,
    /// The Ed25519 key every push must verify against.
    pub pubkey: B256,
    /// Block timestamp of the last `setIndexer` (set by the contract, not the caller).
    pub updated_at: u64,
}

impl IndexerInfo {
    /// An unset record (never written, or the zero state) means "no Indexer: poll only".
    pub fn is_set(&self) -> bool {
        !self.endpoint.is_empty() && self.pubkey != B256::ZERO
    }
}

/// The registry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the Indexer registry: {0}")]
pub struct RegistryError(#[from] pub ViewError);

/// Reads `current()` at the latest block.
pub async fn read_current(
    rpc: &RpcClient,
    registry: Address,
) -> Result<IndexerInfo, RegistryError> {
    let r = view(
        rpc,
        registry,
        IIndexerRegistry::currentCall {},
        BlockTag::Latest,
    )
    .await?;
    Ok(IndexerInfo {
        endpoint: r.endpoint,
        code_id: r.codeId,
        pubkey: r.pubKey,
        updated_at: r.updatedAt,
    })
}
