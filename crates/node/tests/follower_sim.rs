//! The agent's chain follower against a simulated chain (`attestmesh_chain::sim`): the real
//! `Follower` and `ClusterReader`, driven block by block, with reorgs and a provider's log caps
//! that anvil cannot produce on demand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes};
use attestmesh_chain::bindings::{IAttestFacet, IMessageFacet, MemberRecord};
use attestmesh_chain::cluster::ClusterReader;
use attestmesh_chain::sim::SimChain;
use attestmesh_core::ids::member_id;
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::message::{self, Envelope};
use attestmesh_node::follower::{Follower, FollowerConfig};
use attestmesh_node::state::{InboundMessage, Shared};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

const CLUSTER: Address = Address::repeat_byte(0xc1);
const CONFIRMATIONS: u64 = 2;

struct World {
    chain: Arc<SimChain>,
    shared: Arc<Shared>,
    follower: Follower,
    messages: Receiver<InboundMessage>,
    sender: B256,
    me: B256,
    my_x_pub: B256,
}

fn record(n: u8, x_pub: B256) -> MemberRecord {
    MemberRecord {
        attestorId: B256::repeat_byte(n),
        memberContract: Address::repeat_byte(n),
        xPubKey: x_pub,
        wgPubKey: B256::repeat_byte(0x40 + n),
        edPubKey: B256::repeat_byte(0x60 + n),
        registeredAt: u64::from(n),
    }
}

fn id_of(r: &MemberRecord) -> B256 {
    member_id(CLUSTER, r.memberContract, r.attestorId)
}

fn world() -> World {
    let chain = Arc::new(SimChain::new());
    let secret = X25519Secret::from_seed([7; 32]);
    let a = record(1, X25519Secret::from_seed([1; 32]).public());
    let b = record(2, secret.public());
    chain.set_view(
        CLUSTER,
        IAttestFacet::listMembersCall {},
        &vec![a.clone(), b.clone()],
    );
    chain.set_view(CLUSTER, IAttestFacet::cskCommitmentCall {}, &B256::ZERO);
    chain.set_view(
        CLUSTER,
        IAttestFacet::clusterOwnerCall {},
        &Address::repeat_byte(0x0e),
    );
    chain.mine_n(5);
    let shared = Arc::new(Shared::new());
    let messages = shared.subscribe_messages();
    let follower = Follower::new(
        ClusterReader::new(chain.clone(), CLUSTER),
        shared.clone(),
        MeshCidr::new(u32::from_be_bytes([10, 77, 0, 0]), 16).unwrap(),
        id_of(&b),
        secret,
        FollowerConfig {
            poll_interval: Duration::from_secs(1),
            confirmations: CONFIRMATIONS,
        },
        None,
    );
    World {
        chain,
        shared,
        follower,
        messages,
        sender: id_of(&a),
        me: id_of(&b),
        my_x_pub: b.xPubKey,
    }
}

impl World {
    /// A message from A to us, sealed and bound to its event, emitted into the next block.
    fn send(&self, envelope: u8, text: &[u8]) {
        let env = Envelope {
            cluster: CLUSTER,
            sender: self.sender,
            recipient: self.me,
            envelope_id: B256::repeat_byte(envelope),
        };
        let ct = message::seal(&self.my_x_pub, &env, text, &mut rand_core::OsRng).unwrap();
        self.chain.emit(
            CLUSTER,
            &IMessageFacet::MessageSent {
                senderMemberId: self.sender,
                recipientMemberId: self.me,
                envelopeId: env.envelope_id,
                ciphertext: Bytes::from(ct),
            },
        );
    }

    fn delivered(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.messages.try_recv() {
                Ok(m) => out.push(m.plaintext.to_vec()),
                Err(TryRecvError::Empty) => return out,
                Err(e) => panic!("message channel: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn acts_on_confirmed_blocks_only_and_rides_out_a_reorg() {
    let mut w = world();
    w.follower.poll_once().await.unwrap();
    let view = w.shared.cluster().expect("a view after the first poll");
    assert_eq!(view.members.len(), 2);
    assert_eq!(view.block, 5 - CONFIRMATIONS);

    // A message in block 6: not acted on while it is above the confirmation depth.
    w.send(0xe1, b"vanishes");
    w.chain.mine();
    w.chain.mine();
    w.follower.poll_once().await.unwrap();
    assert!(
        w.delivered().is_empty(),
        "an unconfirmed message is not delivered"
    );

    // A reorg drops both blocks; the replacement chain carries another message.
    w.chain.reorg(2);
    w.send(0xe2, b"kept");
    w.chain.mine_n(1 + CONFIRMATIONS);
    w.follower.poll_once().await.unwrap();
    assert_eq!(w.delivered(), vec![b"kept".to_vec()]);

    // A reorg below the cursor: the follower notices, rewinds, and delivers only what is new
    // (the message it already delivered is not delivered twice).
    let reorgs = w.shared.metrics.reorgs.load(Ordering::Relaxed);
    w.chain.reorg(3);
    w.send(0xe2, b"kept");
    w.send(0xe3, b"after the reorg");
    w.chain.mine_n(2 + CONFIRMATIONS);
    w.follower.poll_once().await.unwrap();
    assert_eq!(w.delivered(), vec![b"after the reorg".to_vec()]);
    assert!(w.shared.metrics.reorgs.load(Ordering::Relaxed) > reorgs);
}

#[tokio::test]
async fn membership_is_the_state_at_the_confirmed_block() {
    let mut w = world();
    w.follower.poll_once().await.unwrap();
    let third = record(3, B256::repeat_byte(0x33));
    let both = w.shared.cluster().unwrap().members.len();
    let mut members: Vec<MemberRecord> = vec![record(1, B256::ZERO), record(2, w.my_x_pub)];
    members[0].xPubKey = X25519Secret::from_seed([1; 32]).public();
    members.push(third);
    w.chain
        .set_view(CLUSTER, IAttestFacet::listMembersCall {}, &members);
    w.chain.mine();
    w.follower.poll_once().await.unwrap();
    assert_eq!(
        w.shared.cluster().unwrap().members.len(),
        both,
        "a member registered above the confirmation depth is not in the view yet"
    );
    w.chain.mine_n(CONFIRMATIONS);
    w.follower.poll_once().await.unwrap();
    assert_eq!(w.shared.cluster().unwrap().members.len(), 3);
}

#[tokio::test]
async fn a_provider_that_caps_log_ranges_still_delivers_everything() {
    let mut w = world();
    w.follower.poll_once().await.unwrap();
    for i in 0..6u8 {
        w.send(0xa0 + i, &[i]);
        w.chain.mine();
    }
    w.chain.mine_n(CONFIRMATIONS);
    // One block per request, at most one result: every wider request is refused as too large.
    w.chain.limit_logs(Some(1), Some(1));
    let before = w.chain.log_requests();
    w.follower.poll_once().await.unwrap();
    let got = w.delivered();
    assert_eq!(got, (0..6u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(
        w.chain.log_requests() - before > 6,
        "the range was split into single blocks"
    );
}

#[tokio::test]
async fn a_failed_read_fails_the_poll_and_the_next_poll_recovers() {
    let mut w = world();
    w.follower.poll_once().await.unwrap();
    w.send(0xf1, b"once");
    w.chain.mine_n(1 + CONFIRMATIONS);
    w.chain.fail_next(attestmesh_chain::rpc::RpcError::Timeout {
        method: "eth_blockNumber".into(),
        after: Duration::from_secs(20),
    });
    assert!(w.follower.poll_once().await.is_err());
    w.follower.poll_once().await.unwrap();
    assert_eq!(w.delivered(), vec![b"once".to_vec()]);
}
