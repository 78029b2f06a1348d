//! Reading one cluster's state with views, and its message logs (DESIGN §9.1).
//!
//! State (members, keys, commitment) is always re-read with views, never reconstructed from
//! events, so a missed or reordered event cannot leave a reader with a wrong peer key. Logs are
//! used only for what exists nowhere else: `MessageSent` ciphertexts.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::SolEvent;
use attestmesh_core::follower::BlockRef;
use attestmesh_core::mesh::{MeshCidr, MeshCidrError};

use crate::bindings::{IAttestFacet, IClusterMember, IMessageFacet, MemberRecord};
use crate::read::{BlockTag, ChainReader, Log, LogFilter, ViewError, logs_split, view};
use crate::rpc::RpcError;

/// A cluster read that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("{what}: {source}")]
    Rpc {
        what: &'static str,
        #[source]
        source: RpcError,
    },
    #[error("{what}: the node's answer is not a {what}")]
    Decode { what: &'static str },
    #[error("the chain's mesh CIDR is invalid: {0}")]
    Cidr(#[from] MeshCidrError),
}

impl ReadError {
    /// Whether a retry may succeed (the node was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        match self {
            ReadError::View(v) => v.is_transient(),
            ReadError::Rpc { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// The membership and commitment of a cluster at one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    /// Members in registration order.
    pub members: Vec<MemberRecord>,
    /// `keccak256(CSK)`, zero until set.
    pub commitment: B256,
    /// The block read.
    pub block: BlockRef,
}

/// One decoded `MessageSent` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLog {
    pub sender: B256,
    pub recipient: B256,
    pub envelope_id: B256,
    pub ciphertext: Bytes,
    pub block_number: u64,
    pub tx_hash: B256,
}

impl MessageLog {
    /// The `MessageSent` event in `log`; `None` for any other log.
    pub fn decode(log: &Log) -> Option<Self> {
        let ev = IMessageFacet::MessageSent::decode_raw_log(log.topics.iter().copied(), &log.data)
            .ok()?;
        Some(Self {
            sender: ev.senderMemberId,
            recipient: ev.recipientMemberId,
            envelope_id: ev.envelopeId,
            ciphertext: ev.ciphertext,
            block_number: log.block_number,
            tx_hash: log.transaction_hash,
        })
    }
}

/// Reads one cluster through any [`ChainReader`].
#[derive(Debug, Clone)]
pub struct ClusterReader {
    chain: Arc<dyn ChainReader>,
    cluster: Address,
}

impl ClusterReader {
    pub fn new(chain: Arc<dyn ChainReader>, cluster: Address) -> Self {
        Self { chain, cluster }
    }

    pub fn cluster(&self) -> Address {
        self.cluster
    }

    pub fn chain(&self) -> &dyn ChainReader {
        self.chain.as_ref()
    }

    /// The cluster's mesh CIDR (fixed at deployment).
    pub async fn mesh_cidr(&self) -> Result<MeshCidr, ReadError> {
        let r = view(
            self.chain(),
            self.cluster,
            IAttestFacet::meshCidrCall {},
            BlockTag::Latest,
        )
        .await?;
        Ok(MeshCidr::new(r.ip, r.prefix)?)
    }

    /// The cluster owner now.
    pub async fn cluster_owner(&self) -> Result<Address, ReadError> {
        Ok(view(
            self.chain(),
            self.cluster,
            IAttestFacet::clusterOwnerCall {},
            BlockTag::Latest,
        )
        .await?)
    }

    /// `member`'s record, if the chain has one, with the member contract's installed owner.
    pub async fn record_of(
        &self,
        member: Address,
    ) -> Result<Option<(MemberRecord, Address)>, ReadError> {
        let is = view(
            self.chain(),
            self.cluster,
            IAttestFacet::isClusterMemberCall {
                memberContract: member,
            },
            BlockTag::Latest,
        )
        .await?;
        if !is {
            return Ok(None);
        }
        let rec = view(
            self.chain(),
            self.cluster,
            IAttestFacet::memberOfCall {
                memberContract: member,
            },
            BlockTag::Latest,
        )
        .await?;
        let owner = view(
            self.chain(),
            member,
            IClusterMember::ownerCall {},
            BlockTag::Latest,
        )
        .await?;
        Ok(Some((rec, owner)))
    }

    /// Members and commitment at block `at`, both read at that very block hash.
    pub async fn state_at(&self, at: &BlockRef) -> Result<ClusterState, ReadError> {
        let members = view(
            self.chain(),
            self.cluster,
            IAttestFacet::listMembersCall {},
            at.into(),
        )
        .await?;
        let commitment = view(
            self.chain(),
            self.cluster,
            IAttestFacet::cskCommitmentCall {},
            at.into(),
        )
        .await?;
        Ok(ClusterState {
            members,
            commitment,
            block: *at,
        })
    }

    /// The chain head the node reports.
    pub async fn head(&self) -> Result<u64, ReadError> {
        self.chain.head().await.map_err(|source| ReadError::Rpc {
            what: "eth_blockNumber",
            source,
        })
    }

    /// The header of block `n`; `None` if the node does not have it (yet).
    pub async fn block(&self, n: u64) -> Result<Option<BlockRef>, ReadError> {
        self.chain.block(n).await.map_err(|source| ReadError::Rpc {
            what: "eth_getBlockByNumber",
            source,
        })
    }

    /// `MessageSent` logs to `recipient` in `[from, to]`, in chain order. A range the provider
    /// refuses as too large is split ([`logs_split`]), so a burst of messages cannot stall a
    /// follower.
    pub async fn message_logs(
        &self,
        recipient: B256,
        from: u64,
        to: u64,
    ) -> Result<Vec<MessageLog>, ReadError> {
        const WHAT: &str = "MessageSent log";
        let filter = LogFilter::new(&[self.cluster], from, to)
            .topic(0, &[IMessageFacet::MessageSent::SIGNATURE_HASH])
            .topic(2, &[recipient]);
        let logs = logs_split(self.chain(), &filter)
            .await
            .map_err(|source| ReadError::Rpc {
                what: "eth_getLogs(MessageSent)",
                source,
            })?;
        logs.iter()
            .map(|l| MessageLog::decode(l).ok_or(ReadError::Decode { what: WHAT }))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_message_log_and_refuses_others() {
        let ev = IMessageFacet::MessageSent {
            senderMemberId: B256::repeat_byte(1),
            recipientMemberId: B256::repeat_byte(2),
            envelopeId: B256::repeat_byte(3),
            ciphertext: Bytes::from(vec![9u8; 60]),
        };
        let data = ev.encode_log_data();
        let mut log = Log {
            address: Address::repeat_byte(5),
            topics: data.topics().to_vec(),
            data: data.data.clone(),
            block_number: 16,
            block_hash: B256::ZERO,
            transaction_hash: B256::repeat_byte(7),
            log_index: 0,
            removed: false,
        };
        let p = MessageLog::decode(&log).unwrap();
        assert_eq!(p.sender, B256::repeat_byte(1));
        assert_eq!(p.envelope_id, B256::repeat_byte(3));
        assert_eq!(p.block_number, 16);
        assert_eq!(p.tx_hash, B256::repeat_byte(7));
        assert_eq!(p.ciphertext.len(), 60);
        log.topics.truncate(1);
        assert!(MessageLog::decode(&log).is_none());
    }
}
