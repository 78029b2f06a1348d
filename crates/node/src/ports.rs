//! The agent's outbound seams: submitting state changes and reading message history.
//!
//! The interfaces (app API, CSK commit) depend on these traits, not on the UserOperation client,
//! so they can be tested with fakes and so the submission path (sponsored UserOperations in
//! production) is one swappable piece.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use attestmesh_chain::cluster::ReadError;
use attestmesh_chain::revert::ContractError;
use attestmesh_chain::userop::{NodeAccount, UserOpClient, UserOpError};
use attestmesh_core::keys::OwnerKey;

use crate::state::InboundMessage;

/// A boxed future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A landed state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    pub tx_hash: B256,
    pub block_number: u64,
}

/// Why a submission failed, split by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A definite answer (policy denial, validation or execution revert): retrying the same
    /// call will not help. `contract_error` is the decoded revert name when there is one.
    #[error("submission rejected: {detail}")]
    Rejected {
        contract_error: Option<ContractError>,
        detail: String,
    },
    /// The bundler, paymaster or chain could not be reached or did not include the operation in
    /// time; retrying later may work.
    #[error("submission path unavailable: {0}")]
    Unavailable(String),
}

/// Submits `inner` — calldata for the cluster — as `execute(cluster, 0, inner)` from this node's
/// member account, and waits for inclusion.
pub trait Submitter: Send + Sync {
    fn submit(&self, inner: Vec<u8>) -> BoxFuture<'_, Result<Submitted, SubmitError>>;
}

/// Why message history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The chain could not be read (retry later).
    #[error(transparent)]
    Chain(#[from] ReadError),
    /// The node is still booting: there is no cluster to read yet.
    #[error("message history is not available before the agent has joined its cluster")]
    NotReady,
}

/// Messages addressed to this node from `from_block` on, opened and attributed, in chain order.
pub trait MessageHistory: Send + Sync {
    fn messages_since(
        &self,
        from_block: u64,
    ) -> BoxFuture<'_, Result<Vec<InboundMessage>, HistoryError>>;
}

/// The production [`Submitter`]: sponsored UserOperations through `attestmesh-chain`.
pub struct UserOpSubmitter {
    client: Arc<UserOpClient>,
    sender: Address,
    cluster: Address,
    owner: OwnerKey,
}

impl UserOpSubmitter {
    pub fn new(
        client: Arc<UserOpClient>,
        sender: Address,
        cluster: Address,
        owner: OwnerKey,
    ) -> Self {
        Self {
            client,
            sender,
            cluster,
            owner,
        }
    }
}

/// Classifies the UserOperation client's errors: only "could not reach / not included in time"
/// is worth a retry.
pub fn classify(e: &UserOpError) -> SubmitError {
    match e {
        UserOpError::Unavailable { .. }
        | UserOpError::Timeout { .. }
        | UserOpError::Chain { .. }
        | UserOpError::Protocol { .. } => SubmitError::Unavailable(e.to_string()),
        _ => SubmitError::Rejected {
            contract_error: e.contract_error().cloned(),
            detail: e.to_string(),
        },
    }
}

impl Submitter for UserOpSubmitter {
    fn submit(&self, inner: Vec<u8>) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            let account = NodeAccount {
                sender: self.sender,
                cluster: self.cluster,
                owner: &self.owner,
            };
            match self.client.submit(account, &inner).await {
                Ok(s) if s.receipt.success => Ok(Submitted {
                    tx_hash: s.receipt.tx_hash,
                    block_number: s.receipt.block_number,
                }),
                Ok(s) => Err(SubmitError::Rejected {
                    contract_error: None,
                    detail: format!(
                        "operation {} included in tx {} but its call failed",
                        s.user_op_hash, s.receipt.tx_hash
                    ),
                }),
                Err(e) => Err(classify(&e)),
            }
        })
    }
}
