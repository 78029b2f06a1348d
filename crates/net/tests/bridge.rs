//! The TCP/TLS bridge on loopback: two bridges dial each other directly (as GATEWAY_CONNECT
//! would), and plain UDP sockets stand in for the WireGuard devices.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use attestmesh_net::bridge::{Bridge, BridgeConfig};
use attestmesh_net::ingress::IngressLimits;
use attestmesh_net::tls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

const HOST_A: &str = "aaaa-51900s.mesh.test";
const HOST_B: &str = "bbbb-51900s.mesh.test";

fn wg_data(blocks: usize, tag: u8) -> Vec<u8> {
    let mut m = vec![tag; 32 + 16 * blocks];
    m[0] = 4;
    m[1..4].copy_from_slice(&[0, 0, 0]);
    m
}

struct Node {
    bridge: Bridge,
    dev: UdpSocket,
}

async fn node(host: &str, connect: Option<SocketAddr>) -> Node {
    let dev = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let bridge = Bridge::start(BridgeConfig {
        listen: (Ipv4Addr::LOCALHOST, 0).into(),
        wg_port: dev.local_addr().unwrap().port(),
        local_host: host.to_owned(),
        gateway_connect: connect,
        gateway_port: 443,
    })
    .await
    .unwrap();
    Node { bridge, dev }
}

/// A loopback port held but not listening: connecting to it is refused until [`TcpSocket::listen`]
/// turns it into the listener handed to [`node_on`], and nobody else can take it meanwhile.
fn reserved_port() -> (TcpSocket, SocketAddr) {
    let s = TcpSocket::new_v4().unwrap();
    s.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}

/// A bridge on an ingress listener bound beforehand, dialling its peers via `connect`.
async fn node_on(host: &str, listener: TcpListener, connect: SocketAddr) -> Node {
    let dev = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let bridge = Bridge::start_on(
        listener,
        BridgeConfig {
            listen: (Ipv4Addr::UNSPECIFIED, 0).into(),
            wg_port: dev.local_addr().unwrap().port(),
            local_host: host.to_owned(),
            gateway_connect: Some(connect),
            gateway_port: 443,
        },
        IngressLimits::default(),
    )
    .unwrap();
    Node { bridge, dev }
}

/// A pair of bridges, A knows B and B knows A. Returns (a, b, A's endpoint for B, B's for A).
async fn pair() -> (Node, Node, SocketAddr, SocketAddr) {
    let b_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let a = node(HOST_A, Some(b_listener.local_addr().unwrap())).await;
    let b = node_on(HOST_B, b_listener, a.bridge.ingress_addr()).await;
    let a_ep = a.bridge.add_peer(HOST_B).await.unwrap();
    let b_ep = b.bridge.add_peer(HOST_A).await.unwrap();
    (a, b, a_ep, b_ep)
}

async fn recv_timeout(sock: &UdpSocket, t: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(t, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// Sends `dg` from A's device until B's device gets it (the egress may still be dialling).
async fn deliver(a: &Node, a_ep: SocketAddr, b: &Node) -> (Vec<u8>, SocketAddr) {
    let dg = wg_data(3, 0x5a);
    for _ in 0..50 {
        a.dev.send_to(&dg, a_ep).await.unwrap();
        if let Some(got) = recv_timeout(&b.dev, Duration::from_millis(200)).await {
            return got;
        }
    }
    panic!("datagram never crossed the bridge");
}

#[tokio::test]
async fn datagrams_cross_both_ways_from_the_right_endpoint() {
    let (a, b, a_ep, b_ep) = pair().await;
    let (got, from) = deliver(&a, a_ep, &b).await;
    assert_eq!(got, wg_data(3, 0x5a));
    // Injected from B's socket for peer A, so WireGuard would not roam.
    assert_eq!(from, b_ep);
    let (got, from) = deliver(&b, b_ep, &a).await;
    assert_eq!(got, wg_data(3, 0x5a));
    assert_eq!(from, a_ep);

    // A burst (small enough for the receiving socket's buffer) arrives complete and in order.
    for i in 0..100u8 {
        a.dev
            .send_to(&wg_data(usize::from(i % 4), i), a_ep)
            .await
            .unwrap();
    }
    for i in 0..100u8 {
        let (got, _) = recv_timeout(&b.dev, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, wg_data(usize::from(i % 4), i));
    }
}

#[tokio::test]
async fn datagrams_from_strangers_are_not_forwarded() {
    let (a, b, a_ep, _) = pair().await;
    deliver(&a, a_ep, &b).await;
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    stranger.send_to(&wg_data(1, 1), a_ep).await.unwrap();
    assert!(
        recv_timeout(&b.dev, Duration::from_millis(500))
            .await
            .is_none()
    );
}

async fn tls_to(ingress: SocketAddr, me: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let cfg = tls::client_config(tls::identity_alpn(me)).unwrap();
    let tcp = TcpStream::connect(ingress).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::clone(&cfg))
        .connect(ServerName::try_from(HOST_B).unwrap(), tcp)
        .await
        .unwrap()
}

/// The server drops the connection: reads end in EOF or a reset within a bound. The only bytes
/// allowed first are a TLS alert record (content type 21) that rustls sends on a bad handshake.
async fn assert_reset<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("connection was not closed");
        match r {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        got.is_empty() || (got[0] == 21 && got.len() <= 7),
        "unexpected bytes {got:?}"
    );
}

async fn still_works(a: &Node, a_ep: SocketAddr, b: &Node) {
    let (got, _) = deliver(a, a_ep, b).await;
    assert_eq!(got, wg_data(3, 0x5a));
}

#[tokio::test]
async fn zero_length_frame_resets_only_that_connection() {
    let (a, b, a_ep, _) = pair().await;
    let mut s = tls_to(b.bridge.ingress_addr(), HOST_A).await;
    s.write_all(&[0, 0]).await.unwrap();
    s.flush().await.unwrap();
    assert_reset(&mut s).await;
    still_works(&a, a_ep, &b).await;
}

#[tokio::test]
async fn oversized_frame_resets() {
    let (a, b, a_ep, _) = pair().await;
    let mut s = tls_to(b.bridge.ingress_addr(), HOST_A).await;
    s.write_all(&[0xff, 0xff, 4, 0, 0, 0]).await.unwrap();
    s.flush().await.unwrap();
    assert_reset(&mut s).await;
    still_works(&a, a_ep, &b).await;
}

#[tokio::test]
async fn frame_longer_than_declared_resets_and_valid_prefix_is_delivered() {
    let (a, b, a_ep, _) = pair().await;
    let mut s = tls_to(b.bridge.ingress_addr(), HOST_A).await;
    let body = wg_data(2, 0x77); // 64 bytes
    let mut wire = vec![0, 32]; // declares 32
    wire.extend_from_slice(&body);
    s.write_all(&wire).await.unwrap();
    s.flush().await.unwrap();
    // The declared 32 bytes are a well-formed keepalive shape and go through; the rest is junk.
    let (got, _) = recv_timeout(&b.dev, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got, body[..32]);
    assert_reset(&mut s).await;
    assert!(
        recv_timeout(&b.dev, Duration::from_millis(300))
            .await
            .is_none()
    );
    still_works(&a, a_ep, &b).await;
}

#[tokio::test]
async fn garbage_before_tls_resets() {
    let (a, b, a_ep, _) = pair().await;
    let mut tcp = TcpStream::connect(b.bridge.ingress_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_reset(&mut tcp).await;
    still_works(&a, a_ep, &b).await;
}

#[tokio::test]
async fn unknown_dialer_identity_is_refused() {
    let (a, b, a_ep, _) = pair().await;
    let cfg = tls::client_config(tls::identity_alpn("nobody.mesh.test")).unwrap();
    let tcp = TcpStream::connect(b.bridge.ingress_addr()).await.unwrap();
    let r = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(HOST_B).unwrap(), tcp)
        .await;
    if let Ok(mut s) = r {
        assert_reset(&mut s).await;
    }
    still_works(&a, a_ep, &b).await;
}

#[tokio::test]
async fn egress_redials_until_the_peer_appears() {
    // Point A at a port before anything listens there.
    let (reserved, b_addr) = reserved_port();
    let a = node(HOST_A, Some(b_addr)).await;
    let a_ep = a.bridge.add_peer(HOST_B).await.unwrap();
    // Not synchronisation: A's dials are refused meanwhile (a few redials), whatever the timing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = node_on(
        HOST_B,
        reserved.listen(64).unwrap(),
        a.bridge.ingress_addr(),
    )
    .await;
    b.bridge.add_peer(HOST_A).await.unwrap();
    still_works(&a, a_ep, &b).await;
}
