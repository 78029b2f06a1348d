//! The IndexerRegistry record (DESIGN §3.8, §9.2): the endpoint, code identity and Ed25519 key
//! agents use to verify Indexer pushes. A wrong key makes every agent tear its subscription
//! down (pushes fail verification), so inputs are checked before anything is sent.

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;

use crate::error::OpsError;
use crate::exec::{Executor, PlannedTx};
use crate::read::view;
use attestmesh_chain::bindings::{IIndexerRegistry, IndexerRecord};

/// What `indexer register` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexerOutcome {
    Applied,
    /// The registry already holds this endpoint, code id and key.
    AlreadyCurrent,
}

/// Sets the record unless it is already current.
pub async fn register(
    exec: &mut Executor,
    registry: Address,
    endpoint: &str,
    code_id: B256,
    pub_key: B256,
) -> Result<IndexerOutcome, OpsError> {
    let endpoint = endpoint.trim();
    if endpoint.is_empty() {
        return Err(OpsError::setting("--endpoint", "must not be empty"));
    }
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(OpsError::setting(
            "--endpoint",
            format!("{endpoint:?} is not an http(s):// URL"),
        ));
    }
    if pub_key == B256::ZERO {
        return Err(OpsError::setting(
            "--pubkey",
            "the zero key would make every agent drop its subscription",
        ));
    }
    let p = exec.provider().clone();
    if !p
        .has_code(registry)
        .await
        .map_err(OpsError::chain(format!("reading code at {registry}")))?
    {
        return Err(OpsError::NoCode {
            what: "IndexerRegistry".into(),
            address: registry,
            chain_id: exec.chain_id(),
            hint: "run deploy-infra first",
        });
    }
    let owner = view(
        &p,
        registry,
        attestmesh_chain::bindings::impls::IndexerRegistry::ownerCall {},
        "IndexerRegistry.owner()",
    )
    .await?;
    if let Some(sender) = exec.sender()
        && sender != owner
    {
        return Err(OpsError::NotOwner {
            what: "IndexerRegistry.setIndexer".into(),
            owner,
            sender,
        });
    }
    let current = view(
        &p,
        registry,
        IIndexerRegistry::currentCall {},
        "IndexerRegistry.current()",
    )
    .await?;
    if current.endpoint == endpoint && current.codeId == code_id && current.pubKey == pub_key {
        return Ok(IndexerOutcome::AlreadyCurrent);
    }
    exec.submit(PlannedTx {
        to: registry,
        value: U256::ZERO,
        data: Bytes::from(set_indexer_calldata(endpoint, code_id, pub_key)),
        what: format!("setIndexer({endpoint}, code {code_id}, key {pub_key}) on {registry}"),
    })
    .await?;
    Ok(IndexerOutcome::Applied)
}

/// Calldata of `IndexerRegistry.setIndexer(record)`. `updatedAt` is sent as 0: the registry
/// stamps the block time itself.
pub fn set_indexer_calldata(endpoint: &str, code_id: B256, pub_key: B256) -> Vec<u8> {
    IIndexerRegistry::setIndexerCall {
        record: IndexerRecord {
            endpoint: endpoint.to_string(),
            codeId: code_id,
            pubKey: pub_key,
            updatedAt: 0,
        },
    }
    .abi_encode()
}
