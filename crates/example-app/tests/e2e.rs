//! The example end to end against the agent's real app API server (crates/node) over real unix
//! sockets: two in-process "nodes" A and B, each with its own agent state and socket, joined by
//! a fake chain behind the node's `Submitter` / `MessageHistory` seams that opens each sealed
//! message with the recipient's x25519 key and delivers it, like the follower would. Mesh IPs are
//! loopback addresses (127.0.0.2, 127.0.0.3) so the echo runs over real TCP with real source
//! addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolCall as _;
use attestmesh_chain::bindings::IMessageFacet;
use attestmesh_chain::cluster::MessageLog;
use attestmesh_core::keys::{SymmetricKey, X25519Secret};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_example_app::agent::{Agent, PeerInfo};
use attestmesh_example_app::appkey::{APP_KEY_INFO, AppKey};
use attestmesh_example_app::demo::{self, DemoConfig};
use attestmesh_example_app::echo::{self, EchoError, EchoServer};
use attestmesh_example_app::{AppError, MemberId, PeerSpec};
use attestmesh_node::api::{self, AgentApi};
use attestmesh_node::chainview::open_message;
use attestmesh_node::ports::{BoxFuture, MessageHistory, SubmitError, Submitted, Submitter};
use attestmesh_node::state::{
    ClusterView, InboundMessage, MemberView, PeerLiveness, Phase, Shared,
};

const CSK: [u8; 32] = [9; 32];
const CLUSTER: Address = Address::repeat_byte(0xc1);

/// Everything "on chain": every message sent, and the nodes it can be delivered to.
#[derive(Default)]
struct Chain {
    block: AtomicU64,
    log: Mutex<Vec<(B256, InboundMessage)>>,
    nodes: Mutex<HashMap<B256, (Arc<Shared>, X25519Secret)>>,
}

/// One node's submission path: decodes `MessageFacet.send`, "mines" it, and delivers it opened
/// to the recipient (what the recipient's follower does from the `MessageSent` event).
struct NodeSubmitter {
    chain: Arc<Chain>,
    sender: B256,
}

impl Submitter for NodeSubmitter {
    fn submit(&self, inner: Vec<u8>) -> BoxFuture<'_, Result<Submitted, SubmitError>> {
        Box::pin(async move {
            let call =
                IMessageFacet::sendCall::abi_decode(&inner).map_err(|e| SubmitError::Rejected {
                    contract_error: None,
                    detail: e.to_string(),
                })?;
            let block = self.chain.block.fetch_add(1, Ordering::SeqCst) + 1;
            let tx_hash = B256::repeat_byte(block as u8);
            let (to, secret) = self
                .chain
                .nodes
                .lock()
                .unwrap()
                .get(&call.recipientMemberId)
                .map(|(s, x)| (Arc::clone(s), x.clone()))
                .expect("recipient is a node");
            // The recipient's real receive path: open and check the binding to this event.
            let log = MessageLog {
                sender: self.sender,
                recipient: call.recipientMemberId,
                envelope_id: call.envelopeId,
                ciphertext: call.ciphertext,
                block_number: block,
                tx_hash,
            };
            let msg = open_message(&to, &secret, CLUSTER, None, &log)
                .expect("sealed to the recipient's key and bound to this event");
            self.chain
                .log
                .lock()
                .unwrap()
                .push((call.recipientMemberId, msg.clone()));
            to.deliver(msg);
            Ok(Submitted {
                tx_hash,
                block_number: block,
            })
        })
    }
}

struct NodeHistory {
    chain: Arc<Chain>,
    me: B256,
}

impl MessageHistory for NodeHistory {
    fn messages_since(
        &self,
        from: u64,
    ) -> BoxFuture<'_, Result<Vec<InboundMessage>, attestmesh_node::ports::HistoryError>> {
        let v = self
            .chain
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(to, m)| *to == self.me && m.block_number >= from)
            .map(|(_, m)| m.clone())
            .collect();
        Box::pin(async move { Ok(v) })
    }
}

struct Node {
    shared: Arc<Shared>,
    view: MemberView,
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn member_view(n: u8, x: &X25519Secret, ip: Ipv4Addr) -> MemberView {
    MemberView {
        id: B256::repeat_byte(n),
        contract: Address::repeat_byte(n),
        attestor_id: B256::repeat_byte(0xd5),
        x_pub: x.public(),
        wg_pub: B256::repeat_byte(n ^ 0x10),
        ed_pub: B256::repeat_byte(n ^ 0x20),
        mesh_ip: ip,
        registered_at: u64::from(n),
        routable: true,
    }
}

/// Starts one node's app API on `<dir>/<name>.sock`.
fn start_node(chain: &Arc<Chain>, dir: &Path, name: &str, n: u8, ip: Ipv4Addr) -> Node {
    let x = X25519Secret::from_seed([n; 32]);
    let view = member_view(n, &x, ip);
    let shared = Arc::new(Shared::new());
    chain
        .nodes
        .lock()
        .unwrap()
        .insert(view.id, (Arc::clone(&shared), x));
    let socket = dir.join(format!("{name}.sock"));
    let listener = api::bind_socket(&socket).unwrap();
    let api = AgentApi::new(
        Arc::clone(&shared),
        Arc::new(NodeSubmitter {
            chain: Arc::clone(chain),
            sender: view.id,
        }),
        Arc::new(NodeHistory {
            chain: Arc::clone(chain),
            me: view.id,
        }),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let p = socket.clone();
    let task = tokio::spawn(async move {
        let _ = api::serve(listener, p, api, async {
            let _ = rx.await;
        })
        .await;
    });
    Node {
        shared,
        view,
        socket,
        stop: Some(tx),
        task: Some(task),
    }
}

/// Brings a node to healthy through the real health gate: registered, cluster read,
/// heartbeating, CSK held, converged with every peer live.
fn make_healthy(node: &Node, members: &[MemberView], csk: [u8; 32]) {
    node.shared.set_me(node.view.clone());
    node.shared.set_cluster(
        ClusterView {
            cluster: CLUSTER,
            cidr: MeshCidr::new(0x0a0d_0000, 16).unwrap(),
            members: members.to_vec(),
            commitment: SymmetricKey::from_bytes(csk).commitment(),
            block: 10,
        },
        0,
    );
    node.shared.update_status(|s| s.chain_head = 10);
    node.shared.advance(Phase::Heartbeating);
    node.shared.set_csk(SymmetricKey::from_bytes(csk));
    let live = members
        .iter()
        .filter(|m| m.id != node.view.id)
        .map(|m| {
            (
                m.id,
                PeerLiveness {
                    live: true,
                    last_heartbeat_unix_ms: 1,
                },
            )
        })
        .collect();
    node.shared.set_liveness(live, true);
}

const IP_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const IP_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

struct Pair {
    a: Node,
    b: Node,
    _dir: tempfile::TempDir,
}

/// A and B, both healthy with the same CSK unless `csk_b` says otherwise.
fn pair(csk_b: [u8; 32]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(Chain::default());
    let a = start_node(&chain, dir.path(), "a", 0xa1, IP_A);
    let b = start_node(&chain, dir.path(), "b", 0xb2, IP_B);
    let members = vec![a.view.clone(), b.view.clone()];
    make_healthy(&a, &members, CSK);
    make_healthy(&b, &members, csk_b);
    Pair { a, b, _dir: dir }
}

/// A port free on both loopback "mesh IPs" (the demo uses one port for both ends).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind((IP_A, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn id(v: &MemberView) -> MemberId {
    MemberId(v.id.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_between_two_nodes_runs_every_step() {
    let p = pair(CSK);
    let port = free_port();
    let mut a = Agent::connect(&p.a.socket).await.unwrap();
    let mut b = Agent::connect(&p.b.socket).await.unwrap();
    let cfg = |text: &str| DemoConfig {
        peer: None,
        port,
        timeout: Duration::from_secs(20),
        text: Some(text.to_owned()),
        ..DemoConfig::default()
    };
    let (cfg_a, cfg_b) = (cfg("hello B, this is A"), cfg("hello A, this is B"));
    let (mut log_a, mut log_b) = (|l| eprintln!("A: {l}"), |l| eprintln!("B: {l}"));
    let (ra, rb) = tokio::join!(
        demo::run(&mut a, &cfg_a, &mut log_a),
        demo::run(&mut b, &cfg_b, &mut log_b),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());

    assert_eq!(ra.me.id, id(&p.a.view));
    assert_eq!(ra.peer.id, id(&p.b.view), "A's first peer is B");
    assert_eq!(rb.peer.id, id(&p.a.view));

    // The message A→B arrives at B with A as the sender, and vice versa.
    let at_b = rb.received.as_ref().unwrap();
    assert_eq!(at_b.sender, id(&p.a.view));
    assert_eq!(at_b.plaintext, b"hello B, this is A");
    assert_eq!(at_b.envelope_id, ra.sent.envelope_id);
    let at_a = ra.received.as_ref().unwrap();
    assert_eq!(at_a.sender, id(&p.b.view));
    assert_eq!(at_a.plaintext, b"hello A, this is B");

    // Both derived the same application key: HKDF of the CSK, never the CSK itself.
    let expected = AppKey::derive(&CSK, APP_KEY_INFO).unwrap();
    assert_eq!(ra.app_key_fingerprint, expected.fingerprint());
    assert_eq!(rb.app_key_fingerprint, expected.fingerprint());
    assert_ne!(expected.as_bytes(), &CSK);

    // The authenticated exchange ran in both directions over the mesh IPs.
    assert_eq!(ra.ping.addr, (IP_B, port).into());
    assert_eq!(rb.ping.addr, (IP_A, port).into());
    let served_by_a = ra.served.unwrap();
    assert_eq!(served_by_a.client, Some(id(&p.b.view)));
    assert_eq!(served_by_a.source.ip(), IP_B);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_recv_with_replay() {
    let p = pair(CSK);
    let mut a = Agent::connect(&p.a.socket).await.unwrap();
    let mut b = Agent::connect(&p.b.socket).await.unwrap();
    let peers = a.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].mesh_ip, IP_B);
    assert!(peers[0].live);

    // Sent before B subscribes: only a replay finds it.
    let by_ip = a.resolve_peer(&PeerSpec::MeshIp(IP_B)).await.unwrap();
    let sent = a.send(by_ip.id, b"first").await.unwrap();
    let mut inbox = b.subscribe(1).await.unwrap();
    let m = inbox.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(m.sender, id(&p.a.view));
    assert_eq!(m.plaintext, b"first");
    assert_eq!(m.envelope_id, sent.envelope_id);
    assert_eq!(m.tx_hash, sent.tx_hash);
    // Then live ones.
    a.send(id(&p.b.view), b"second").await.unwrap();
    let m = inbox.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(m.plaintext, b"second");
    // Nothing else.
    assert!(matches!(
        inbox.next_within(Duration::from_millis(200)).await,
        Err(AppError::Timeout { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();

    // No socket at all.
    let missing = dir.path().join("nope.sock");
    let e = Agent::connect(&missing).await.err().unwrap();
    assert!(matches!(e, AppError::SocketMissing(_)), "{e}");
    assert!(e.to_string().contains("AGENT_SOCKET"));

    // A stale socket file: nobody accepting.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let e = Agent::connect(&stale).await.err().unwrap();
    assert!(matches!(e, AppError::SocketRefused(_)), "{e}");

    // An agent still booting: not healthy within the timeout, with its phase in the error.
    let chain = Arc::new(Chain::default());
    let n = start_node(&chain, dir.path(), "n", 0xa1, IP_A);
    let mut c = Agent::connect(&n.socket).await.unwrap();
    let e = c
        .wait_healthy(Duration::from_millis(300), |_| {})
        .await
        .err()
        .unwrap();
    assert!(matches!(e, AppError::NotHealthy { .. }), "{e}");
    assert!(e.to_string().contains("phase booting"), "{e}");
    assert!(matches!(c.me().await, Err(AppError::NotRegistered(_))));
    assert!(matches!(
        c.app_key(None).await,
        Err(AppError::CskUnavailable(_))
    ));
    assert!(matches!(c.first_peer().await, Err(AppError::NoPeers)));

    // Failed closed: reported at once, not after the timeout.
    n.shared.fail("state directory lost");
    let t0 = std::time::Instant::now();
    let e = c
        .wait_healthy(Duration::from_secs(30), |_| {})
        .await
        .err()
        .unwrap();
    assert!(matches!(e, AppError::AgentFailed(ref r) if r.contains("state directory lost")));
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Unknown peers: locally by resolution, and by the agent on send.
    let p = pair(CSK);
    let mut a = Agent::connect(&p.a.socket).await.unwrap();
    let unknown = MemberId([0x33; 32]);
    assert!(matches!(
        a.resolve_peer(&PeerSpec::Id(unknown)).await,
        Err(AppError::UnknownPeer(_))
    ));
    assert!(matches!(
        a.resolve_peer(&PeerSpec::MeshIp(Ipv4Addr::new(10, 9, 9, 9)))
            .await,
        Err(AppError::UnknownPeer(_))
    ));
    let e = a.send(unknown, b"hi").await.err().unwrap();
    assert!(matches!(e, AppError::UnknownPeer(_)), "{e}");
    let e = a.send(id(&p.b.view), &vec![0; 40_000]).await.err().unwrap();
    assert!(matches!(e, AppError::MessageTooLarge { .. }), "{e}");
}

async fn serve(
    agent: &Agent,
    me: &PeerInfo,
    key: AppKey,
    port: u16,
) -> tokio::sync::mpsc::UnboundedReceiver<echo::Served> {
    let listener = echo::bind(me, port).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let server = EchoServer::new(key, me.id, agent.clone());
    tokio::spawn(server.run(listener, tx, std::future::pending()));
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_proves_the_shared_key_and_refuses_everyone_else() {
    // B holds another CSK: neither side accepts the other's proof.
    let p = pair([8; 32]);
    let port = free_port();
    let mut a = Agent::connect(&p.a.socket).await.unwrap();
    let mut b = Agent::connect(&p.b.socket).await.unwrap();
    let (me_a, me_b) = (a.me().await.unwrap(), b.me().await.unwrap());
    let (key_a, key_b) = (
        a.app_key(None).await.unwrap(),
        b.app_key(None).await.unwrap(),
    );
    assert_ne!(key_a.fingerprint(), key_b.fingerprint());
    let mut served_b = serve(&b, &me_b, key_b.clone(), port).await;
    let e = echo::ping(&key_a, &me_a, &me_b, port, b"x")
        .await
        .err()
        .unwrap();
    assert!(matches!(e, EchoError::PeerProofInvalid), "{e}");
    let s = served_b.recv().await.unwrap();
    assert!(
        s.result.is_err(),
        "B must not count a client that never proved the key"
    );

    // Same key, but the client claims A's id from another address: refused by source check.
    let impostor = PeerInfo {
        mesh_ip: Ipv4Addr::new(127, 0, 0, 4),
        ..me_a.clone()
    };
    let e = echo::ping(&key_b, &impostor, &me_b, port, b"x")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, EchoError::Refused(r) if r.contains("mesh IP")),
        "{e}"
    );
    // A client that is not a member at all.
    let stranger = PeerInfo {
        id: MemberId([0x55; 32]),
        ..me_a.clone()
    };
    let e = echo::ping(&key_b, &stranger, &me_b, port, b"x")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, EchoError::Refused(r) if r.contains("not a member")),
        "{e}"
    );
    // Dialled the wrong node: B is not A.
    let wrong = PeerInfo {
        id: me_a.id,
        ..me_b.clone()
    };
    let e = echo::ping(&key_b, &me_a, &wrong, port, b"x")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, EchoError::Refused(r) if r.contains("not")),
        "{e}"
    );
    // Nobody listening.
    let e = echo::ping(&key_a, &me_a, &me_b, free_port(), b"x")
        .await
        .err()
        .unwrap();
    assert!(matches!(e, EchoError::Connect { .. }), "{e}");
}

/// The binary itself: argument parsing, output, and exit status with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_commands() {
    let p = pair(CSK);
    let exe = env!("CARGO_BIN_EXE_attestmesh-example");
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(exe)
            .args(&args)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sock_a = p.a.socket.display().to_string();
    let sock_b = p.b.socket.display().to_string();
    let b_id = id(&p.b.view).to_string();

    let (ok, out, err) = run(vec![
        "--socket".into(),
        sock_a.clone(),
        "wait-healthy".into(),
        "--timeout".into(),
        "5".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("healthy:"), "{out}");

    let (ok, out, err) = run(vec!["--socket".into(), sock_a.clone(), "peers".into()]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&b_id) && out.contains("127.0.0.3") && out.contains("live"),
        "{out}"
    );

    let (ok, out, err) = run(vec!["--socket".into(), sock_a.clone(), "app-key".into()]).await;
    assert!(ok, "{err}");
    let fp = AppKey::derive(&CSK, APP_KEY_INFO).unwrap().fingerprint();
    assert!(out.contains(&format!("app key fingerprint: {fp}")), "{out}");
    assert!(!out.contains(&hex::encode(CSK)), "never prints the CSK");

    // recv on B (replaying from block 1) after send from A, addressed by an id prefix.
    let (ok, out, err) = run(vec![
        "--socket".into(),
        sock_a.clone(),
        "send".into(),
        "--to".into(),
        b_id[..10].into(),
        "--text".into(),
        "hi from the CLI".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("sent to") && out.contains("envelope 0x"),
        "{out}"
    );
    let (ok, out, err) = run(vec![
        "--socket".into(),
        sock_b.clone(),
        "recv".into(),
        "--count".into(),
        "1".into(),
        "--from-block".into(),
        "1".into(),
        "--timeout".into(),
        "5".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("received from {}", id(&p.a.view))),
        "{out}"
    );
    assert!(out.contains("hi from the CLI"), "{out}");

    // serve-echo on B (one exchange), ping-peer from A by mesh IP.
    let port = free_port().to_string();
    let serve = tokio::spawn(run(vec![
        "--socket".into(),
        sock_b.clone(),
        "serve-echo".into(),
        "--port".into(),
        port.clone(),
        "--count".into(),
        "1".into(),
    ]));
    let (ok, out, err) = run(vec![
        "--socket".into(),
        sock_a.clone(),
        "ping-peer".into(),
        "--peer".into(),
        "127.0.0.3".into(),
        "--port".into(),
        port,
        "--timeout".into(),
        "10".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("ok, peer proved the same app key"), "{out}");
    let (ok, out, err) = serve.await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains(&format!("served {}", id(&p.a.view))), "{out}");

    // Clear errors, non-zero exit.
    let (ok, _, err) = run(vec![
        "--socket".into(),
        "/nonexistent/agent.sock".into(),
        "peers".into(),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains("does not exist") && err.contains("AGENT_SOCKET"),
        "{err}"
    );
    let (ok, _, err) = run(vec![
        "--socket".into(),
        sock_a.clone(),
        "send".into(),
        "--to".into(),
        "10.99.0.1".into(),
        "--text".into(),
        "x".into(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("unknown peer 10.99.0.1"), "{err}");
    let (ok, _, err) = run(vec![
        "--socket".into(),
        sock_a,
        "send".into(),
        "--to".into(),
        "zz".into(),
        "--text".into(),
        "x".into(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("invalid member id"), "{err}");
}
