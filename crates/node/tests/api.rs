//! The app API over a real unix socket with a real tonic client; the chain side is a fake
//! implementing the node's `Submitter` / `MessageHistory` seams.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolCall as _;
use attestmesh_chain::bindings::IMessageFacet;
use attestmesh_chain::cluster::MessageLog;
use attestmesh_core::keys::{SymmetricKey, X25519Secret};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::message;
use attestmesh_node::api::{self, AgentApi};
use attestmesh_node::chainview::{open_message, owner_sender_id};
use attestmesh_node::ports::{BoxFuture, MessageHistory, SubmitError, Submitted, Submitter};
use attestmesh_node::state::{
    ClusterView, InboundMessage, MemberView, PeerEvent, PeerEventKind, PeerLiveness, Phase, Shared,
};
use attestmesh_proto::agent as pb;
use attestmesh_proto::agent::agent_client::AgentClient;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Default)]
struct FakeChain {
    calls: Mutex<Vec<Vec<u8>>>,
    fail: Mutex<Option<SubmitError>>,
}

impl Submitter for FakeChain {
    fn submit(&self, inner: Vec<u8>) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            self.calls.lock().unwrap().push(inner);
            Ok(Submitted {
                tx_hash: B256::repeat_byte(0x77),
                block_number: 42,
            })
        })
    }
}

struct History(Vec<InboundMessage>);
impl MessageHistory for History {
    fn messages_since(
        &self,
        from: u64,
    ) -> BoxFuture<'_, Result<Vec<InboundMessage>, attestmesh_node::ports::HistoryError>> {
        let v = self
            .0
            .iter()
            .filter(|m| m.block_number >= from)
            .cloned()
            .collect();
        Box::pin(async move { Ok(v) })
    }
}

fn member(n: u8, x: &X25519Secret) -> MemberView {
    let cidr = MeshCidr::new(0x0a0d_0000, 16).unwrap();
    let id = B256::repeat_byte(n);
    MemberView {
        id,
        contract: Address::repeat_byte(n),
        attestor_id: B256::repeat_byte(0xd5),
        x_pub: x.public(),
        wg_pub: B256::repeat_byte(n ^ 0x10),
        ed_pub: B256::repeat_byte(n ^ 0x20),
        mesh_ip: cidr.mesh_ip(&id),
        registered_at: u64::from(n),
        routable: true,
    }
}

fn msg(block: u64, env: u8) -> InboundMessage {
    InboundMessage {
        sender: B256::repeat_byte(2),
        envelope_id: B256::repeat_byte(env),
        plaintext: vec![env; 3],
        block_number: block,
        tx_hash: B256::repeat_byte(block as u8),
        from_cluster_owner: false,
    }
}

async fn client(path: PathBuf) -> AgentClient<Channel> {
    AgentClient::new(attestmesh_proto::socket::connect_agent(path).await.unwrap())
}

struct Fixture {
    shared: Arc<Shared>,
    chain: Arc<FakeChain>,
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    x_b: X25519Secret,
}

async fn fixture(history: Vec<InboundMessage>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/agent.sock");
    let shared = Arc::new(Shared::new());
    let chain = Arc::new(FakeChain::default());
    let listener = api::bind_socket(&path).unwrap();
    let api = AgentApi::new(
        Arc::clone(&shared),
        Arc::clone(&chain) as Arc<dyn Submitter>,
        Arc::new(History(history)),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let p = path.clone();
    let task = tokio::spawn(async move {
        api::serve(listener, p, api, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Fixture {
        shared,
        chain,
        path,
        stop: Some(tx),
        task,
        _dir: dir,
        x_b: X25519Secret::from_seed([0xbb; 32]),
    }
}

impl Fixture {
    fn register(&self) {
        let a = member(1, &X25519Secret::from_seed([0xaa; 32]));
        let b = member(2, &self.x_b);
        self.shared.set_me(a.clone());
        self.shared.set_cluster(
            ClusterView {
                cluster: Address::repeat_byte(0xc1),
                cidr: MeshCidr::new(0x0a0d_0000, 16).unwrap(),
                members: vec![a, b],
                commitment: B256::ZERO,
                block: 10,
            },
            0,
        );
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            tx.send(()).unwrap();
        }
        self.task.await.unwrap();
        assert!(!self.path.exists(), "socket removed on shutdown");
    }
}

#[tokio::test]
async fn socket_is_0600_and_removed_on_shutdown() {
    let f = fixture(vec![]).await;
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second agent on the same socket is refused while the first serves.
    assert!(matches!(
        api::bind_socket(&f.path),
        Err(api::SocketError::InUse(_))
    ));
    f.stop().await;
}

#[tokio::test]
async fn status_self_peers_before_and_after_registration() {
    let f = fixture(vec![]).await;
    let mut c = client(f.path.clone()).await;

    let s = c
        .get_mesh_status(pb::GetMeshStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.phase, pb::Phase::Booting as i32);
    assert!(s.cluster.is_empty());
    let e = c.get_self(pb::GetSelfRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        c.list_peers(pb::ListPeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers
            .is_empty()
    );

    f.register();
    f.shared.advance(Phase::WaitingPeers);
    let mut live = std::collections::HashMap::new();
    live.insert(
        B256::repeat_byte(2),
        PeerLiveness {
            live: true,
            last_heartbeat_unix_ms: 1234,
        },
    );
    f.shared.set_liveness(live, true);

    let s = c
        .get_mesh_status(pb::GetMeshStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.phase, pb::Phase::WaitingPeers as i32);
    assert_eq!(s.member_count, 2);
    assert_eq!(s.live_peers, 1);
    assert!(s.first_converged && s.converged);
    assert_eq!(s.cluster, Address::repeat_byte(0xc1).to_vec());

    let me = c
        .get_self(pb::GetSelfRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.member_id, B256::repeat_byte(1).to_vec());
    assert_eq!(me.member_contract, Address::repeat_byte(1).to_vec());

    let peers = c
        .list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers;
    assert_eq!(peers.len(), 1, "self is not a peer");
    assert_eq!(
        peers[0].member.as_ref().unwrap().member_id,
        B256::repeat_byte(2).to_vec()
    );
    assert!(peers[0].live);
    assert_eq!(peers[0].last_heartbeat_unix_ms, 1234);
    f.stop().await;
}

#[tokio::test]
async fn csk_is_unavailable_until_held() {
    let f = fixture(vec![]).await;
    let mut c = client(f.path.clone()).await;
    let e = c
        .get_cluster_shared_key(pb::GetClusterSharedKeyRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let k = SymmetricKey::from_bytes([9; 32]);
    f.shared.set_csk(k.clone());
    let got = c
        .get_cluster_shared_key(pb::GetClusterSharedKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.key, vec![9; 32]);
    assert_eq!(got.commitment, k.commitment().to_vec());
    f.stop().await;
}

#[tokio::test]
async fn send_message_seals_to_the_on_chain_key_and_submits() {
    let f = fixture(vec![]).await;
    let mut c = client(f.path.clone()).await;

    // Bad arguments.
    let e = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![1; 31],
            plaintext: b"hi".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![2; 32],
            plaintext: vec![0; api::MAX_MESSAGE_BYTES + 1],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Not registered yet.
    let e = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![2; 32],
            plaintext: b"hi".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    f.register();
    // Unknown recipient.
    let e = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![3; 32],
            plaintext: b"hi".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(f.chain.calls.lock().unwrap().is_empty());

    let resp = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![2; 32],
            plaintext: b"hello B".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.tx_hash, vec![0x77; 32]);
    assert_eq!(resp.envelope_id.len(), 32);
    let calls = f.chain.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let call = IMessageFacet::sendCall::abi_decode(&calls[0]).unwrap();
    assert_eq!(call.recipientMemberId, B256::repeat_byte(2));
    assert_eq!(call.envelopeId.to_vec(), resp.envelope_id);
    // Invariant 8: no plaintext on chain; only B's on-chain key opens it.
    assert!(!call.ciphertext.windows(7).any(|w| w == b"hello B"));
    // Bound to the event it travels in: this cluster, sender A (member 1), recipient, envelope.
    let bound = message::Envelope {
        cluster: Address::repeat_byte(0xc1),
        sender: B256::repeat_byte(1),
        recipient: B256::repeat_byte(2),
        envelope_id: call.envelopeId,
    };
    assert_eq!(
        message::open(&f.x_b, &bound, &call.ciphertext).unwrap(),
        b"hello B"
    );

    // Submission failures map to their codes.
    *f.chain.fail.lock().unwrap() = Some(SubmitError::Unavailable("bundler down".into()));
    let e = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![2; 32],
            plaintext: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    *f.chain.fail.lock().unwrap() = Some(SubmitError::Rejected {
        contract_error: Some(attestmesh_chain::revert::decode(
            &alloy_sol_types::SolError::abi_encode(
                &attestmesh_chain::bindings::IMessageFacet::NotClusterMember {},
            ),
        )),
        detail: "denied".into(),
    });
    let e = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![2; 32],
            plaintext: b"x".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    f.stop().await;
}

#[tokio::test]
async fn subscribe_messages_replays_then_streams_without_duplicates() {
    let f = fixture(vec![msg(5, 0xe1), msg(7, 0xe2)]).await;
    let mut c = client(f.path.clone()).await;
    let mut live = c
        .subscribe_messages(pb::SubscribeMessagesRequest { from_block: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut replay = c
        .subscribe_messages(pb::SubscribeMessagesRequest { from_block: 6 })
        .await
        .unwrap()
        .into_inner();
    let first = replay.next().await.unwrap().unwrap();
    assert_eq!(
        first.envelope_id,
        vec![0xe2; 32],
        "block 5 is before from_block"
    );
    assert_eq!(first.block_number, 7);
    assert_eq!(first.sender_member_id, vec![2; 32]);

    // The replayed message delivered live again is not duplicated; a new one is.
    f.shared.deliver(msg(7, 0xe2));
    f.shared.deliver(msg(8, 0xe3));
    let next = replay.next().await.unwrap().unwrap();
    assert_eq!(next.envelope_id, vec![0xe3; 32]);
    assert_eq!(next.plaintext, vec![0xe3; 3]);

    // from_block = 0: live only.
    let a = live.next().await.unwrap().unwrap();
    let b = live.next().await.unwrap().unwrap();
    assert_eq!(a.envelope_id, vec![0xe2; 32]);
    assert_eq!(b.envelope_id, vec![0xe3; 32]);
    drop((live, replay));
    f.stop().await;
}

#[tokio::test]
async fn peer_events_stream() {
    let f = fixture(vec![]).await;
    let mut c = client(f.path.clone()).await;
    let mut events = c
        .subscribe_peer_events(pb::SubscribePeerEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    // No pause needed: the handler subscribes before it answers, and the call above returned
    // only with that answer, so every event emitted from here on reaches the stream.
    for kind in [
        PeerEventKind::Joined,
        PeerEventKind::Up,
        PeerEventKind::Down,
    ] {
        f.shared.emit(PeerEvent {
            kind,
            member_id: B256::repeat_byte(2),
            unix_ms: 99,
        });
    }
    let kinds: Vec<i32> = [
        events.next().await.unwrap().unwrap(),
        events.next().await.unwrap().unwrap(),
        events.next().await.unwrap().unwrap(),
    ]
    .iter()
    .map(|e| e.kind)
    .collect();
    assert_eq!(
        kinds,
        vec![
            pb::peer_event::Kind::Joined as i32,
            pb::peer_event::Kind::Up as i32,
            pb::peer_event::Kind::Down as i32
        ]
    );
    drop(events);
    f.stop().await;
}

/// Issue 11 hole 8: a `MessageSent` ciphertext is public. Member C (or the cluster owner through
/// `sendOwnerCommand`) copies the box A sent to B and sends the same bytes to B under a new
/// envelope id. B's receive path must never deliver it — not as from C (the event's sender),
/// and not as from A either (it is not the envelope A sent).
#[tokio::test]
async fn attack_resent_ciphertext_is_not_delivered_as_from_the_resender() {
    let f = fixture(vec![]).await;
    let mut c = client(f.path.clone()).await;
    f.register();
    // A (this fixture's node, member 1) sends to B through the real SendMessage path.
    let resp = c
        .send_message(pb::SendMessageRequest {
            recipient_member_id: vec![2; 32],
            plaintext: b"transfer 100 to A".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let calls = f.chain.calls.lock().unwrap().clone();
    let call = IMessageFacet::sendCall::abi_decode(&calls[0]).unwrap();
    let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
    let cluster = Address::repeat_byte(0xc1);
    let owner = owner_sender_id(Address::repeat_byte(0x0e));
    let log = |sender: B256, envelope_id: B256| MessageLog {
        sender,
        recipient: b,
        envelope_id,
        ciphertext: call.ciphertext.clone(),
        block_number: 50,
        tx_hash: B256::repeat_byte(0x50),
    };
    // B's side: its own view of the same cluster.
    let b_shared = Shared::new();
    b_shared.set_me(member(2, &f.x_b));

    // The genuine event is delivered, attributed to A.
    let honest = open_message(
        &b_shared,
        &f.x_b,
        cluster,
        Some(owner),
        &log(a, B256::from_slice(&resp.envelope_id)),
    )
    .expect("A's own message is delivered");
    assert_eq!(honest.sender, a);
    assert_eq!(honest.plaintext, b"transfer 100 to A");

    for (who, sender) in [
        ("member C", B256::repeat_byte(3)),
        ("the owner", owner),
        ("A", a),
    ] {
        let resent = log(sender, B256::repeat_byte(0xee));
        assert_eq!(
            open_message(&b_shared, &f.x_b, cluster, Some(owner), &resent),
            None,
            "the box re-sent by {who} under a new envelope must not be delivered"
        );
    }
    // Nor in another cluster with the same member ids.
    assert_eq!(
        open_message(
            &b_shared,
            &f.x_b,
            Address::repeat_byte(0xc2),
            Some(owner),
            &log(a, B256::from_slice(&resp.envelope_id))
        ),
        None
    );
    assert_eq!(
        b_shared
            .metrics
            .messages_misbound
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    f.stop().await;
}
