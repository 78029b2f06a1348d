//! PeerControl over real TCP on loopback aliases (127.0.0.x stand in for mesh IPs).
//! Attack tests for invariant 7 (the CSK goes only to a current member, from its own mesh IP,
//! sealed to its on-chain key) and invariant 4 (a served key must match the commitment).

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use attestmesh_core::csk::ServedCskError;
use attestmesh_core::keys::{SymmetricKey, X25519Secret};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_node::peer::{self, PullError, PullTimeouts};
use attestmesh_node::state::{ClusterView, MemberView, Shared};
use tonic::Code;

fn member(n: u8, ip: Ipv4Addr, x: &X25519Secret, routable: bool) -> MemberView {
    MemberView {
        id: B256::repeat_byte(n),
        contract: Address::repeat_byte(n),
        attestor_id: B256::repeat_byte(0xd5),
        x_pub: x.public(),
        wg_pub: B256::repeat_byte(n ^ 0x10),
        ed_pub: B256::repeat_byte(n ^ 0x20),
        mesh_ip: ip,
        registered_at: u64::from(n),
        routable,
    }
}

struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A PeerControl server on 127.0.0.1 for a cluster of A (127.0.0.1, the server), B (127.0.0.2)
/// and C (127.0.0.4, colliding with nobody but marked unroutable to model a mesh-IP collision).
async fn server(csk: Option<SymmetricKey>, x_b: &X25519Secret) -> Server {
    let shared = Arc::new(Shared::new());
    let a = member(
        1,
        Ipv4Addr::new(127, 0, 0, 1),
        &X25519Secret::from_seed([1; 32]),
        true,
    );
    let b = member(2, Ipv4Addr::new(127, 0, 0, 2), x_b, true);
    let c = member(
        3,
        Ipv4Addr::new(127, 0, 0, 4),
        &X25519Secret::from_seed([3; 32]),
        false,
    );
    shared.set_me(a.clone());
    shared.set_cluster(
        ClusterView {
            cluster: Address::repeat_byte(0xc1),
            cidr: MeshCidr::new(0x7f00_0000, 8).unwrap(),
            members: vec![a, b, c],
            commitment: csk.as_ref().map(|k| k.commitment()).unwrap_or_default(),
            block: 1,
        },
        0,
    );
    if let Some(k) = csk {
        shared.set_csk(k);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let s = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        peer::serve(listener, s, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server {
        addr,
        shared,
        stop,
        task,
    }
}

impl Server {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}

fn lo(n: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
}

#[tokio::test]
async fn member_from_its_mesh_ip_gets_the_csk_sealed_to_its_key() {
    let csk = SymmetricKey::from_bytes([0x5c; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(Some(csk.clone()), &x_b).await;
    let got = peer::request_csk(
        s.addr,
        lo(2),
        B256::repeat_byte(2),
        &x_b,
        csk.commitment(),
        PullTimeouts::default(),
    )
    .await
    .unwrap();
    assert_eq!(got, csk);
    assert_eq!(
        s.shared
            .metrics
            .csk_requests_served
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    s.stop().await;
}

fn refused_code(e: PullError) -> Code {
    match e {
        PullError::Refused(_, status) => status.code(),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn attack_non_member_is_refused() {
    let csk = SymmetricKey::from_bytes([0x5c; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(Some(csk.clone()), &x_b).await;
    let outsider = X25519Secret::from_seed([9; 32]);
    let e = peer::request_csk(
        s.addr,
        lo(9),
        B256::repeat_byte(9),
        &outsider,
        csk.commitment(),
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused_code(e), Code::PermissionDenied);
    s.stop().await;
}

#[tokio::test]
async fn attack_member_id_from_the_wrong_ip_is_refused() {
    let csk = SymmetricKey::from_bytes([0x5c; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(Some(csk.clone()), &x_b).await;
    // Claims to be B but calls from 127.0.0.3. Even holding B's key would not help.
    let e = peer::request_csk(
        s.addr,
        lo(3),
        B256::repeat_byte(2),
        &x_b,
        csk.commitment(),
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused_code(e), Code::PermissionDenied);
    // A colliding (unroutable) member is refused even from "its" IP.
    let x_c = X25519Secret::from_seed([3; 32]);
    let e = peer::request_csk(
        s.addr,
        lo(4),
        B256::repeat_byte(3),
        &x_c,
        csk.commitment(),
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused_code(e), Code::PermissionDenied);
    assert_eq!(
        s.shared
            .metrics
            .csk_requests_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    s.stop().await;
}

#[tokio::test]
async fn answer_is_sealed_to_the_member_not_the_caller() {
    // Direct check of the decision: whoever receives the answer can open it only with the
    // requester's on-chain key.
    let csk = SymmetricKey::from_bytes([0x5c; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(Some(csk.clone()), &x_b).await;
    let svc = peer::PeerControlService::new(Arc::clone(&s.shared));
    let sealed = svc.answer(&[2; 32], lo(2)).unwrap();
    assert!(attestmesh_core::sealed::open(&X25519Secret::from_seed([9; 32]), &sealed).is_err());
    assert_eq!(
        attestmesh_core::sealed::open(&x_b, &sealed).unwrap(),
        csk.as_bytes().to_vec()
    );
    assert_eq!(
        svc.answer(&[2; 31], lo(2)).unwrap_err(),
        peer::PeerRefusal::BadRequesterId(31)
    );
    assert_eq!(
        svc.answer(&[2; 32], None).unwrap_err(),
        peer::PeerRefusal::NoSource
    );
    s.stop().await;
}

#[tokio::test]
async fn csk_not_held_is_unavailable() {
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(None, &x_b).await;
    let e = peer::request_csk(
        s.addr,
        lo(2),
        B256::repeat_byte(2),
        &x_b,
        B256::repeat_byte(1),
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused_code(e), Code::Unavailable);
    s.stop().await;
}

#[tokio::test]
async fn attack_bogus_key_fails_the_commitment_check() {
    // A malicious member serves a key of its own; the requester checks the on-chain commitment.
    let real = SymmetricKey::from_bytes([0x5c; 32]);
    let bogus = SymmetricKey::from_bytes([0x66; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(Some(bogus.clone()), &x_b).await;
    let e = peer::request_csk(
        s.addr,
        lo(2),
        B256::repeat_byte(2),
        &x_b,
        real.commitment(),
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    match e {
        PullError::Bogus {
            reason: ServedCskError::CommitmentMismatch { got, expected },
            ..
        } => {
            assert_eq!(got, bogus.commitment());
            assert_eq!(expected, real.commitment());
        }
        other => panic!("expected a commitment mismatch, got {other}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn dead_peer_fails_within_the_connect_deadline() {
    let x_b = X25519Secret::from_seed([2; 32]);
    // Bound but not listening, and held: dials are refused, and no one else can take the port.
    let dead = tokio::net::TcpSocket::new_v4().unwrap();
    dead.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = dead.local_addr().unwrap();
    let t = std::time::Instant::now();
    let e = peer::request_csk(
        addr,
        lo(2),
        B256::repeat_byte(2),
        &x_b,
        B256::ZERO,
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, PullError::Connect(..)), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
}

/// Replaces the server's view with one whose commitment is `commitment` (a reorg or a fresh
/// read changed it while the node still holds its old key).
fn recommit(shared: &Shared, commitment: B256) {
    let mut v = (*shared.cluster().unwrap()).clone();
    v.commitment = commitment;
    v.block += 1;
    shared.set_cluster(v, 0);
}

/// Hole 6: a node holding K1 while the chain's commitment says keccak(K2) (its K1 came from a
/// view that was reorganised away) must not hand K1 out: it is not the cluster's key.
#[tokio::test]
async fn attack_peer_control_refuses_csk_not_matching_commitment() {
    let k1 = SymmetricKey::from_bytes([0x11; 32]);
    let k2 = SymmetricKey::from_bytes([0x22; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    let s = server(Some(k1.clone()), &x_b).await;
    recommit(&s.shared, k2.commitment());
    let svc = peer::PeerControlService::new(Arc::clone(&s.shared));
    assert!(
        svc.answer(&[2; 32], lo(2)).is_err(),
        "K1 must not be served under commitment keccak(K2)"
    );
    // Over gRPC: FAILED_PRECONDITION, and the message says why.
    let e = peer::request_csk(
        s.addr,
        lo(2),
        B256::repeat_byte(2),
        &x_b,
        k1.commitment(),
        PullTimeouts::default(),
    )
    .await
    .unwrap_err();
    match e {
        PullError::Refused(_, status) => {
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert!(
                status.message().contains("commitment"),
                "{}",
                status.message()
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // No commitment at all on chain (it was reorganised out): nothing is served either.
    recommit(&s.shared, B256::ZERO);
    assert!(svc.answer(&[2; 32], lo(2)).is_err());
    s.stop().await;
}

/// A node that submits nothing: the non-originator CSK path never submits.
struct NoSubmissions;

impl attestmesh_node::ports::Submitter for NoSubmissions {
    fn submit(
        &self,
        _: Vec<u8>,
    ) -> attestmesh_node::ports::BoxFuture<
        '_,
        Result<attestmesh_node::ports::Submitted, attestmesh_node::ports::SubmitError>,
    > {
        Box::pin(async {
            Err(attestmesh_node::ports::SubmitError::Unavailable(
                "not in this test".into(),
            ))
        })
    }
}

/// Hole 6, the holder's side: B holds K1; the chain's commitment moves to keccak(K2) (a reorg).
/// B drops K1 at once and re-pulls K2 from A, which holds it.
#[tokio::test]
async fn node_drops_a_superseded_csk_and_re_pulls() {
    let k1 = SymmetricKey::from_bytes([0x11; 32]);
    let k2 = SymmetricKey::from_bytes([0x22; 32]);
    let x_b = X25519Secret::from_seed([2; 32]);
    // A (the originator, 127.0.0.1) holds K2 under commitment keccak(K2).
    let a = server(Some(k2.clone()), &x_b).await;
    // B's own state: same members, still the old commitment and K1.
    let b = Arc::new(Shared::new());
    let mut view = (*a.shared.cluster().unwrap()).clone();
    b.set_me(view.members[1].clone());
    view.commitment = k1.commitment();
    b.set_cluster(view.clone(), 0);
    b.set_csk(k1.clone());
    let ctx = attestmesh_node::cskflow::CskContext {
        shared: Arc::clone(&b),
        me: B256::repeat_byte(2),
        my_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        x25519: x_b.clone(),
        derived_csk: SymmetricKey::from_bytes([0x99; 32]),
        state_key: SymmetricKey::from_bytes([0x55; 32]),
        state: None,
        submitter: Arc::new(NoSubmissions),
        peer_control_port: a.addr.port(),
        wake_follower: Arc::new(tokio::sync::Notify::new()),
    };
    let mut csk_rx = b.watch_csk();
    let task = tokio::spawn(async move { ctx.maintain(k1).await });
    // While the chain agrees, K1 stays.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!task.is_finished());
    assert_eq!(b.csk().map(|k| k.commitment()), Some(view.commitment));

    recommit(&b, k2.commitment());
    let dropped = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        csk_rx.wait_for(|k| k.is_none()),
    )
    .await;
    assert!(dropped.is_ok(), "K1 dropped once the commitment moved");
    drop(dropped);
    let repulled = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        csk_rx.wait_for(|k| k.as_ref() == Some(&k2)),
    )
    .await;
    assert!(repulled.is_ok(), "K2 pulled from A and verified");
    drop(repulled);
    assert!(b.status().csk_acquired);
    task.abort();
    a.stop().await;
}
