//! The bridge ingress under attack (issue 11 hole 4), on paused time: caps per claimed peer and
//! in total, the handshake / proof / idle deadlines, and that a proven path survives a flood.
//! Connections are in-memory streams handed to `Bridge::accept_stream`, so the clock is the only
//! thing that moves; a plain UDP socket stands in for the WireGuard device.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use attestmesh_net::bridge::{Bridge, BridgeConfig};
use attestmesh_net::ingress::{IngressCounts, IngressLimits};
use attestmesh_net::{frame, tls};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::time::sleep;
use tokio_rustls::client::TlsStream;

const HOST_A: &str = "aaaa-51900s.mesh.test";
const HOST_B: &str = "bbbb-51900s.mesh.test";
const INDEX: u32 = 0x00c0_ff01;

struct Rig {
    bridge: Bridge,
    /// B's "WireGuard device".
    dev: UdpSocket,
    /// B's loopback endpoint for peer A.
    a_ep: SocketAddr,
    /// Holds the port A's egress dials, so it stays closed.
    _closed_port: tokio::net::TcpSocket,
}

/// Node B's bridge, knowing peer A. A's egress dials a closed port and just keeps retrying.
async fn rig(limits: IngressLimits) -> Rig {
    let dev = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    dev.set_nonblocking(true).unwrap();
    // Bound but never listening: A's dials are refused, and nobody else can take the port.
    let closed_port = tokio::net::TcpSocket::new_v4().unwrap();
    closed_port.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let closed = closed_port.local_addr().unwrap();
    let bridge = Bridge::start_with_limits(
        BridgeConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            wg_port: dev.local_addr().unwrap().port(),
            local_host: HOST_B.to_owned(),
            gateway_connect: Some(closed),
            gateway_port: 443,
        },
        limits,
    )
    .await
    .unwrap();
    let a_ep = bridge.add_peer(HOST_A).await.unwrap();
    Rig {
        bridge,
        dev,
        a_ep,
        _closed_port: closed_port,
    }
}

fn limits() -> IngressLimits {
    IngressLimits {
        max_per_peer: 3,
        ..IngressLimits::default()
    }
}

fn wg(kind: u8, len: usize, index_at: usize, index: u32) -> Vec<u8> {
    let mut m = vec![0x42u8; len];
    m[..4].copy_from_slice(&[kind, 0, 0, 0]);
    m[index_at..index_at + 4].copy_from_slice(&index.to_le_bytes());
    m
}

/// A data message to our device's session `index`.
fn data(index: u32) -> Vec<u8> {
    wg(4, 48, 4, index)
}

/// Polls `f` on a few milliseconds of (paused) time until it holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(5)).await;
    }
    panic!("never: {what}");
}

/// Our device announces session `index` to peer A (a handshake initiation to A's endpoint).
async fn device_announces(r: &Rig, index: u32) {
    r.dev.send_to(&wg(1, 148, 4, index), r.a_ep).unwrap();
    // Give the bridge's socket reader a turn.
    sleep(Duration::from_millis(20)).await;
}

/// Opens an ingress connection claiming `me`; `None` if the bridge closed it during the handshake.
async fn dial(r: &Rig, me: &str) -> Option<TlsStream<DuplexStream>> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    r.bridge
        .accept_stream(server, "192.0.2.7:4000".parse().unwrap());
    let cfg = tls::client_config(tls::identity_alpn(me)).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(HOST_B).unwrap(), client)
        .await
        .ok()
}

async fn send(s: &mut TlsStream<DuplexStream>, dg: &[u8]) {
    let mut wire = Vec::new();
    frame::encode(dg, &mut wire).unwrap();
    s.write_all(&wire).await.unwrap();
    s.flush().await.unwrap();
}

/// The next datagram B's device received, with its source.
async fn device_got(r: &Rig) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let mut got = None;
    eventually("the device receives a datagram", || {
        got = r.dev.recv_from(&mut buf).ok();
        got.is_some()
    })
    .await;
    let (n, from) = got.unwrap();
    (buf[..n].to_vec(), from)
}

/// True once the bridge has closed the connection (EOF or reset on read).
async fn closed(s: &mut TlsStream<DuplexStream>) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn counts(total: usize, proven: usize) -> IngressCounts {
    IngressCounts { total, proven }
}

#[tokio::test(start_paused = true)]
async fn a_flood_never_displaces_the_proven_path() {
    let r = rig(limits()).await;
    device_announces(&r, INDEX).await;
    let mut real = dial(&r, HOST_A).await.unwrap();
    send(&mut real, &data(INDEX)).await;
    eventually("the real peer is proven", || {
        r.bridge.ingress_counts() == counts(1, 1)
    })
    .await;
    assert_eq!(device_got(&r).await, (data(INDEX), r.a_ep));

    // 200 idle claimants of A's name: the cap keeps 3 connections for A, the proven one included.
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(dial(&r, HOST_A).await);
    }
    assert_eq!(r.bridge.ingress_counts(), counts(3, 1));
    let survivors = flood.iter().filter(|c| c.is_some()).count();
    assert!(survivors >= 2, "{survivors}");
    send(&mut real, &data(INDEX)).await;
    assert_eq!(device_got(&r).await, (data(INDEX), r.a_ep));

    // The unproven claimants go at the proof deadline (40 s); the real one keeps talking.
    for _ in 0..3 {
        sleep(Duration::from_secs(20)).await;
        send(&mut real, &data(INDEX)).await;
        assert_eq!(device_got(&r).await.0, data(INDEX));
    }
    assert_eq!(r.bridge.ingress_counts(), counts(1, 1));
    for c in flood.iter_mut().flatten() {
        assert!(closed(c).await);
    }
    // Then silence: the idle timeout (90 s) closes even the proven connection.
    sleep(Duration::from_secs(88)).await;
    assert_eq!(r.bridge.ingress_counts(), counts(1, 1));
    sleep(Duration::from_secs(3)).await;
    assert_eq!(r.bridge.ingress_counts(), counts(0, 0));
    assert!(closed(&mut real).await);
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_a_tls_handshake_is_closed_at_the_handshake_deadline() {
    let r = rig(limits()).await;
    let (mut client, server) = tokio::io::duplex(4096);
    r.bridge
        .accept_stream(server, "192.0.2.7:4000".parse().unwrap());
    sleep(Duration::from_secs(9)).await;
    assert_eq!(r.bridge.ingress_counts(), counts(1, 0));
    sleep(Duration::from_secs(2)).await;
    assert_eq!(r.bridge.ingress_counts(), counts(0, 0));
    let mut buf = [0u8; 8];
    assert!(matches!(client.read(&mut buf).await, Ok(0) | Err(_)));
}

#[tokio::test(start_paused = true)]
async fn an_unproven_claimant_is_closed_at_the_proof_deadline_even_if_it_talks() {
    let r = rig(limits()).await;
    let mut fake = dial(&r, HOST_A).await.unwrap();
    // Well-formed WireGuard messages, but to sessions our device never announced.
    for i in 0..6u32 {
        sleep(Duration::from_secs(6)).await;
        send(&mut fake, &data(0xdead_0000 + i)).await;
    }
    // 36 s in: still admitted (its frames were delivered; WireGuard drops them).
    assert_eq!(r.bridge.ingress_counts(), counts(1, 0));
    assert_eq!(device_got(&r).await.0, data(0xdead_0000));
    sleep(Duration::from_secs(5)).await;
    assert_eq!(r.bridge.ingress_counts(), counts(0, 0));
    assert!(closed(&mut fake).await);
}

#[tokio::test(start_paused = true)]
async fn guessing_indices_is_bounded_per_connection() {
    let r = rig(IngressLimits {
        max_unproven_frames: 5,
        ..limits()
    })
    .await;
    device_announces(&r, INDEX).await;
    let mut guesser = dial(&r, HOST_A).await.unwrap();
    for i in 0..6u32 {
        send(&mut guesser, &data(i)).await;
    }
    eventually("the guesser is cut off", || {
        r.bridge.ingress_counts() == counts(0, 0)
    })
    .await;
    assert!(closed(&mut guesser).await);
}

#[tokio::test(start_paused = true)]
async fn a_redial_replaces_the_old_path_only_once_it_proves_itself() {
    let r = rig(limits()).await;
    device_announces(&r, INDEX).await;
    let mut old = dial(&r, HOST_A).await.unwrap();
    send(&mut old, &data(INDEX)).await;
    eventually("old proven", || r.bridge.ingress_counts() == counts(1, 1)).await;
    let mut new = dial(&r, HOST_A).await.unwrap();
    send(&mut new, &wg(1, 148, 4, 77)).await; // an initiation proves nothing
    sleep(Duration::from_millis(20)).await;
    assert_eq!(r.bridge.ingress_counts(), counts(2, 1));
    assert!(!closed(&mut old).await);
    // Our device answers on a new session; the peer's data to it proves the new connection.
    r.dev.send_to(&wg(2, 92, 4, INDEX + 1), r.a_ep).unwrap();
    sleep(Duration::from_millis(20)).await;
    send(&mut new, &data(INDEX + 1)).await;
    eventually("new replaces old", || {
        r.bridge.ingress_counts() == counts(1, 1)
    })
    .await;
    assert!(closed(&mut old).await);
    assert!(!closed(&mut new).await);
}

#[tokio::test(start_paused = true)]
async fn the_total_cap_evicts_the_oldest_unproven_and_unknown_names_are_refused() {
    let r = rig(IngressLimits {
        max_total: 4,
        ..limits()
    })
    .await;
    // Strangers' names are refused at the ClientHello.
    assert!(dial(&r, "ffff-51900s.mesh.test").await.is_none());
    assert_eq!(r.bridge.ingress_counts(), counts(0, 0));
    let mut pending = Vec::new();
    for _ in 0..6 {
        let (client, server) = tokio::io::duplex(4096);
        r.bridge
            .accept_stream(server, "192.0.2.7:4000".parse().unwrap());
        pending.push(client);
        sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(r.bridge.ingress_counts(), counts(4, 0));
    let mut buf = [0u8; 8];
    for (i, c) in pending.iter_mut().enumerate() {
        let r = tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf)).await;
        let gone = matches!(r, Ok(Ok(0)) | Ok(Err(_)));
        assert_eq!(gone, i < 2, "connection {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn re_adding_or_removing_a_peer_closes_its_ingress_connections() {
    let r = rig(limits()).await;
    device_announces(&r, INDEX).await;
    let mut c = dial(&r, HOST_A).await.unwrap();
    send(&mut c, &data(INDEX)).await;
    eventually("proven", || r.bridge.ingress_counts() == counts(1, 1)).await;
    // A rebuilt link has a new socket: the old connection must go, or its frames would make
    // WireGuard roam the peer onto the dead socket.
    let new_ep = r.bridge.add_peer(HOST_A).await.unwrap();
    assert_ne!(new_ep, r.a_ep);
    eventually("closed on re-add", || {
        r.bridge.ingress_counts() == counts(0, 0)
    })
    .await;
    assert!(closed(&mut c).await);
    // The session indices survive the re-add, so the redial proves itself at once.
    let mut c = dial(&r, HOST_A).await.unwrap();
    send(&mut c, &data(INDEX)).await;
    eventually("proven again", || r.bridge.ingress_counts() == counts(1, 1)).await;
    let (_, from) = device_got(&r).await;
    let (_, from2) = device_got(&r).await;
    assert_eq!((from, from2), (r.a_ep, new_ep));
    r.bridge.remove_peer(HOST_A);
    eventually("closed on remove", || {
        r.bridge.ingress_counts() == counts(0, 0)
    })
    .await;
    assert!(closed(&mut c).await);
}
