//! Reading the cluster's current state with views, and its message logs (DESIGN §9.1).
//!
//! State (members, keys, commitment) is always re-read with views, never reconstructed from
//! events, so a missed or reordered event cannot leave the agent with a wrong peer key. Logs are
//! used only for what exists nowhere else: `MessageSent` ciphertexts.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::{SolCall, SolEvent, sol};
use attestmesh_chain::bindings::{IAttestFacet, IAttestWrite, IClusterMember, IMessageFacet};
use attestmesh_chain::rpc::{RpcClient, RpcError};
use attestmesh_core::follower::BlockRef;
use attestmesh_core::ids::member_id;
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::message;
use serde_json::{Value, json};

use crate::mesh::Refusal;
use crate::ports::{BoxFuture, MessageHistory};
use crate::state::{ClusterView, InboundMessage, MemberView, Metrics, Shared};

sol! {
    /// Views the node needs that the shared bindings do not carry.
    interface IClusterOwnerView {
        function clusterOwner() external view returns (address);
    }
}

/// Domain of the synthetic sender id of cluster-owner commands (MessageFacet).
pub const OWNER_SENDER_DOMAIN: &[u8] = b"attestmesh.cluster-owner.v1";

/// `keccak256(abi.encodePacked("attestmesh.cluster-owner.v1", owner))`.
pub fn owner_sender_id(owner: Address) -> B256 {
    let mut pre = OWNER_SENDER_DOMAIN.to_vec();
    pre.extend_from_slice(owner.as_slice());
    keccak256(pre)
}

/// Chain read failures.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{what}: {source}")]
    Rpc {
        what: &'static str,
        #[source]
        source: RpcError,
    },
    #[error("{what}: undecodable answer")]
    Decode { what: &'static str },
    #[error("the chain's mesh CIDR is invalid: {0}")]
    Cidr(#[from] attestmesh_core::mesh::MeshCidrError),
}

impl ChainError {
    /// Whether a retry may succeed (the node was unreachable or slow).
    pub fn is_transient(&self) -> bool {
        match self {
            ChainError::Rpc { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// A typed `eth_call` at the latest block.
pub async fn view<C: SolCall>(
    rpc: &RpcClient,
    to: Address,
    call: C,
    what: &'static str,
) -> Result<C::Return, ChainError> {
    let out = rpc
        .eth_call(to, &call.abi_encode())
        .await
        .map_err(|source| ChainError::Rpc { what, source })?;
    C::abi_decode_returns(&out).map_err(|_| ChainError::Decode { what })
}

/// A typed `eth_call` at the block `at` (EIP-1898 block hash: every read names the one block,
/// so reads of one view cannot straddle a reorg that replaces a block of the same number).
pub async fn view_at<C: SolCall>(
    rpc: &RpcClient,
    to: Address,
    call: C,
    at: &BlockRef,
    what: &'static str,
) -> Result<C::Return, ChainError> {
    let out: Bytes = rpc
        .call(
            "eth_call",
            json!([
                {"to": to, "input": Bytes::from(call.abi_encode())},
                {"blockHash": at.hash},
            ]),
        )
        .await
        .map_err(|source| ChainError::Rpc { what, source })?;
    C::abi_decode_returns(&out).map_err(|_| ChainError::Decode { what })
}

/// Marks every member [`crate::mesh::refusals`] refuses (a weak WireGuard key, or a mesh IP or
/// WireGuard key an earlier member already holds) as unroutable, and returns the refusals.
/// Registration order decides so that every node resolves a conflict the same way (DESIGN §3.2).
pub fn mark_collisions(members: &mut [MemberView]) -> Vec<Refusal> {
    let refused = crate::mesh::refusals(members);
    for m in members.iter_mut() {
        m.routable = refused.iter().all(|r| r.refused() != m.id);
    }
    refused
}

/// Reads one cluster.
#[derive(Debug, Clone)]
pub struct ClusterReader {
    rpc: Arc<RpcClient>,
    cluster: Address,
}

impl ClusterReader {
    pub fn new(rpc: Arc<RpcClient>, cluster: Address) -> Self {
        Self { rpc, cluster }
    }

    pub fn cluster(&self) -> Address {
        self.cluster
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    pub async fn mesh_cidr(&self) -> Result<MeshCidr, ChainError> {
        let r = view(
            &self.rpc,
            self.cluster,
            IAttestFacet::meshCidrCall {},
            "meshCidr",
        )
        .await?;
        Ok(MeshCidr::new(r.ip, r.prefix)?)
    }

    pub async fn cluster_owner(&self) -> Result<Address, ChainError> {
        view(
            &self.rpc,
            self.cluster,
            IClusterOwnerView::clusterOwnerCall {},
            "clusterOwner",
        )
        .await
    }

    /// Our record, if the chain has one, with the member contract's installed owner.
    pub async fn record_of(
        &self,
        member: Address,
    ) -> Result<Option<(attestmesh_chain::bindings::MemberRecord, Address)>, ChainError> {
        let is = view(
            &self.rpc,
            self.cluster,
            IAttestFacet::isClusterMemberCall {
                memberContract: member,
            },
            "isClusterMember",
        )
        .await?;
        if !is {
            return Ok(None);
        }
        let rec = view(
            &self.rpc,
            self.cluster,
            IAttestFacet::memberOfCall {
                memberContract: member,
            },
            "memberOf",
        )
        .await?;
        let owner = view(&self.rpc, member, IClusterMember::ownerCall {}, "owner").await?;
        Ok(Some((rec, owner)))
    }

    /// The chain state at block `at` — the confirmed block (head − CONFIRMATIONS), so that
    /// membership and the CSK commitment agree with the events the follower acts on and a
    /// reorg above it cannot hand the agent a member or commitment that is then undone
    /// (DESIGN §9.1): members in registration order (with ids, mesh IPs and refusal marks) and
    /// the commitment.
    pub async fn read_view_at(
        &self,
        cidr: MeshCidr,
        at: &BlockRef,
    ) -> Result<ClusterView, ChainError> {
        let records = view_at(
            &self.rpc,
            self.cluster,
            IAttestWrite::listMembersCall {},
            at,
            "listMembers",
        )
        .await?;
        let commitment = view_at(
            &self.rpc,
            self.cluster,
            IAttestWrite::cskCommitmentCall {},
            at,
            "cskCommitment",
        )
        .await?;
        let mut members: Vec<MemberView> = records
            .into_iter()
            .map(|r| {
                let id = member_id(self.cluster, r.memberContract, r.attestorId);
                MemberView {
                    id,
                    contract: r.memberContract,
                    attestor_id: r.attestorId,
                    x_pub: r.xPubKey,
                    wg_pub: r.wgPubKey,
                    ed_pub: r.edPubKey,
                    mesh_ip: cidr.mesh_ip(&id),
                    registered_at: r.registeredAt,
                    routable: true,
                }
            })
            .collect();
        mark_collisions(&mut members);
        Ok(ClusterView {
            cluster: self.cluster,
            cidr,
            members,
            commitment,
            block: at.number,
        })
    }

    /// The chain head the RPC node reports.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.rpc
            .block_number()
            .await
            .map_err(|source| ChainError::Rpc {
                what: "eth_blockNumber",
                source,
            })
    }

    /// Raw `MessageSent` logs to `recipient` in `[from, to]`.
    pub async fn message_logs(
        &self,
        recipient: B256,
        from: u64,
        to: u64,
    ) -> Result<Vec<MessageLog>, ChainError> {
        const WHAT: &str = "eth_getLogs(MessageSent)";
        let filter = json!([{
            "address": self.cluster,
            "fromBlock": format!("{from:#x}"),
            "toBlock": format!("{to:#x}"),
            "topics": [IMessageFacet::MessageSent::SIGNATURE_HASH, Value::Null, recipient],
        }]);
        let logs: Vec<Value> = self
            .rpc
            .call("eth_getLogs", filter)
            .await
            .map_err(|source| ChainError::Rpc { what: WHAT, source })?;
        let mut out = Vec::with_capacity(logs.len());
        for l in logs {
            out.push(parse_message_log(&l).ok_or(ChainError::Decode { what: WHAT })?);
        }
        Ok(out)
    }

    /// The header of block `n` (number, hash, parent hash) for the follower's reorg check;
    /// `None` if the node does not have the block (yet).
    pub async fn block_ref(&self, n: u64) -> Result<Option<BlockRef>, ChainError> {
        const WHAT: &str = "eth_getBlockByNumber";
        let b: Value = self
            .rpc
            .call(WHAT, json!([format!("{n:#x}"), false]))
            .await
            .map_err(|source| ChainError::Rpc { what: WHAT, source })?;
        if b.is_null() {
            return Ok(None);
        }
        parse_block_ref(&b)
            .filter(|r| r.number == n)
            .map(Some)
            .ok_or(ChainError::Decode { what: WHAT })
    }
}

fn parse_block_ref(b: &Value) -> Option<BlockRef> {
    let field = |k: &str| -> Option<B256> { b.get(k)?.as_str()?.parse().ok() };
    let number: U256 = serde_json::from_value(b.get("number")?.clone()).ok()?;
    Some(BlockRef {
        number: u64::try_from(number).ok()?,
        hash: field("hash")?,
        parent_hash: field("parentHash")?,
    })
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
    pub removed: bool,
}

fn parse_message_log(l: &Value) -> Option<MessageLog> {
    let topics: Vec<B256> = serde_json::from_value(l.get("topics")?.clone()).ok()?;
    let data: Bytes = serde_json::from_value(l.get("data")?.clone()).ok()?;
    let ev = IMessageFacet::MessageSent::decode_raw_log(topics.iter().copied(), &data).ok()?;
    let block: U256 = serde_json::from_value(l.get("blockNumber")?.clone()).ok()?;
    let tx_hash: B256 = serde_json::from_value(l.get("transactionHash")?.clone()).ok()?;
    Some(MessageLog {
        sender: ev.senderMemberId,
        recipient: ev.recipientMemberId,
        envelope_id: ev.envelopeId,
        ciphertext: ev.ciphertext,
        block_number: block.saturating_to(),
        tx_hash,
        removed: l.get("removed").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// Opens a message log addressed to us in `cluster`; `None` (counted and logged) if it does not
/// open, or opens but is not bound to this very event (a copied ciphertext re-sent by another
/// member or the owner, another cluster's message, or an unversioned pre-binding plaintext).
pub fn open_message(
    shared: &Shared,
    x25519: &X25519Secret,
    cluster: Address,
    owner_id: Option<B256>,
    log: &MessageLog,
) -> Option<InboundMessage> {
    let event = message::Envelope {
        cluster,
        sender: log.sender,
        recipient: log.recipient,
        envelope_id: log.envelope_id,
    };
    match message::open(x25519, &event, &log.ciphertext) {
        Ok(plaintext) => Some(InboundMessage {
            sender: log.sender,
            envelope_id: log.envelope_id,
            plaintext,
            block_number: log.block_number,
            tx_hash: log.tx_hash,
            from_cluster_owner: Some(log.sender) == owner_id,
        }),
        Err(e) if e.is_misbound() => {
            Metrics::inc(&shared.metrics.messages_misbound);
            tracing::warn!(sender = %log.sender, envelope = %log.envelope_id, tx = %log.tx_hash, error = %e, "message to us refused: not bound to the event that carried it");
            None
        }
        Err(e) => {
            Metrics::inc(&shared.metrics.messages_undecryptable);
            tracing::warn!(sender = %log.sender, envelope = %log.envelope_id, error = %e, "message to us does not open");
            None
        }
    }
}

/// [`MessageHistory`] from chain logs.
pub struct ChainHistory {
    pub reader: ClusterReader,
    pub shared: Arc<Shared>,
    pub me: B256,
    pub x25519: X25519Secret,
}

impl MessageHistory for ChainHistory {
    fn messages_since(
        &self,
        from_block: u64,
    ) -> BoxFuture<'_, Result<Vec<InboundMessage>, String>> {
        Box::pin(async move {
            let head = self
                .reader
                .rpc()
                .block_number()
                .await
                .map_err(|e| e.to_string())?;
            let owner = self.reader.cluster_owner().await.ok().map(owner_sender_id);
            let logs = self
                .reader
                .message_logs(self.me, from_block, head)
                .await
                .map_err(|e| e.to_string())?;
            Ok(logs
                .iter()
                .filter(|l| !l.removed)
                .filter_map(|l| {
                    open_message(&self.shared, &self.x25519, self.reader.cluster(), owner, l)
                })
                .collect())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn m(n: u8, ip: [u8; 4]) -> MemberView {
        MemberView {
            id: B256::repeat_byte(n),
            contract: Address::repeat_byte(n),
            attestor_id: B256::ZERO,
            x_pub: B256::ZERO,
            wg_pub: B256::repeat_byte(n + 100),
            ed_pub: B256::ZERO,
            mesh_ip: Ipv4Addr::from(ip),
            registered_at: 0,
            routable: true,
        }
    }

    #[test]
    fn later_member_loses_a_mesh_ip_collision() {
        let mut v = vec![
            m(1, [10, 0, 0, 1]),
            m(2, [10, 0, 0, 2]),
            m(3, [10, 0, 0, 1]),
        ];
        let c = mark_collisions(&mut v);
        assert_eq!(
            c,
            vec![Refusal::MeshIpCollision {
                earlier: B256::repeat_byte(1),
                later: B256::repeat_byte(3),
                ip: Ipv4Addr::new(10, 0, 0, 1)
            }]
        );
        assert!(v[0].routable && v[1].routable && !v[2].routable);
    }

    #[test]
    fn owner_sender_id_matches_encode_packed() {
        let owner = Address::repeat_byte(0x11);
        let mut pre = b"attestmesh.cluster-owner.v1".to_vec();
        pre.extend_from_slice(&[0x11; 20]);
        assert_eq!(owner_sender_id(owner), keccak256(pre));
    }

    #[test]
    fn parses_a_message_log() {
        let ev = IMessageFacet::MessageSent {
            senderMemberId: B256::repeat_byte(1),
            recipientMemberId: B256::repeat_byte(2),
            envelopeId: B256::repeat_byte(3),
            ciphertext: Bytes::from(vec![9u8; 60]),
        };
        let log = ev.encode_log_data();
        let v = json!({
            "topics": log.topics(),
            "data": log.data,
            "blockNumber": "0x10",
            "transactionHash": B256::repeat_byte(7),
        });
        let p = parse_message_log(&v).unwrap();
        assert_eq!(p.sender, B256::repeat_byte(1));
        assert_eq!(p.envelope_id, B256::repeat_byte(3));
        assert_eq!(p.block_number, 16);
        assert_eq!(p.ciphertext.len(), 60);
        assert!(!p.removed);
        assert!(parse_message_log(&json!({"topics": []})).is_none());
    }

    #[test]
    fn block_headers_parse_or_are_refused() {
        let h = B256::repeat_byte(2);
        let p = B256::repeat_byte(1);
        let b = json!({"number": "0x2a", "hash": h, "parentHash": p, "miner": "0x00"});
        assert_eq!(
            parse_block_ref(&b),
            Some(BlockRef {
                number: 42,
                hash: h,
                parent_hash: p
            })
        );
        assert_eq!(parse_block_ref(&json!({"number": "0x2a", "hash": h})), None);
        assert_eq!(
            parse_block_ref(&json!({"number": "zz", "hash": h, "parentHash": p})),
            None
        );
    }
}
