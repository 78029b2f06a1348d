//! The node's view of its cluster, built from what the chain crate's [`ClusterReader`] reads
//! (DESIGN §9.1): member views with mesh IPs and refusal marks, and the messages addressed to us.

use std::sync::Arc;

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_chain::cluster::{ClusterReader, ClusterState, MessageLog, ReadError};
use attestmesh_core::follower::BlockRef;
use attestmesh_core::ids::member_id;
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::message;

use crate::mesh::Refusal;
use crate::ports::{BoxFuture, HistoryError, MessageHistory};
use crate::state::{ClusterView, InboundMessage, MemberView, Metrics, Shared};

/// Domain of the synthetic sender id of cluster-owner commands (MessageFacet).
pub const OWNER_SENDER_DOMAIN: &[u8] = b"attestmesh.cluster-owner.v1";

/// `keccak256(abi.encodePacked("attestmesh.cluster-owner.v1", owner))`.
pub fn owner_sender_id(owner: Address) -> B256 {
    let mut pre = OWNER_SENDER_DOMAIN.to_vec();
    pre.extend_from_slice(owner.as_slice());
    keccak256(pre)
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

/// The node's view of `state`: members in registration order with ids, mesh IPs in `cidr` and
/// refusal marks, and the commitment.
pub fn cluster_view(cluster: Address, cidr: MeshCidr, state: ClusterState) -> ClusterView {
    let mut members: Vec<MemberView> = state
        .members
        .into_iter()
        .map(|r| {
            let id = member_id(cluster, r.memberContract, r.attestorId);
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
    ClusterView {
        cluster,
        cidr,
        members,
        commitment: state.commitment,
        block: state.block.number,
    }
}

/// The cluster's state at block `at` — the confirmed block (head − CONFIRMATIONS), so that
/// membership and the CSK commitment agree with the events the follower acts on and a reorg
/// above it cannot hand the agent a member or commitment that is then undone (DESIGN §9.1).
pub async fn read_view_at(
    reader: &ClusterReader,
    cidr: MeshCidr,
    at: &BlockRef,
) -> Result<ClusterView, ReadError> {
    let state = reader.state_at(at).await?;
    Ok(cluster_view(reader.cluster(), cidr, state))
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
    ) -> BoxFuture<'_, Result<Vec<InboundMessage>, HistoryError>> {
        Box::pin(async move {
            let head = self.reader.head().await?;
            let owner = self.reader.cluster_owner().await.ok().map(owner_sender_id);
            let logs = self.reader.message_logs(self.me, from_block, head).await?;
            Ok(logs
                .iter()
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
}
