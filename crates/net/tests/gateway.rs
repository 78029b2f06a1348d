//! The dev gateway on loopback: SNI routing to a real TLS server, byte splicing, refusals.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use attestmesh_net::gateway::{Gateway, GatewayConfig, RouteTable, Routes};
use attestmesh_net::tls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TLS echo server standing in for a node's ingress.
async fn tls_echo() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = s.flush().await;
                }
            });
        }
    });
    port
}

async fn gateway(routes: Routes) -> SocketAddr {
    gateway_on(RouteTable::new(routes), None).await
}

async fn gateway_with(
    routes: Routes,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
) -> SocketAddr {
    gateway_on(RouteTable::new(routes), tls).await
}

async fn gateway_on(
    routes: RouteTable,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
) -> SocketAddr {
    let gw = Gateway::bind(GatewayConfig {
        listen: (Ipv4Addr::LOCALHOST, 0).into(),
        domain: "mesh.test".into(),
        routes,
        tls,
    })
    .await
    .unwrap();
    let addr = gw.local_addr().unwrap();
    tokio::spawn(gw.serve(std::future::pending()));
    addr
}

async fn dial(
    gw: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(gw).await?;
    let cfg = tls::client_config(b"test".to_vec()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp),
    )
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

#[tokio::test]
async fn routes_by_sni_and_splices_tls_end_to_end() {
    let port = tls_echo().await;
    let mut routes = Routes::new();
    routes.insert("0xDEADBEEF", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let gw = gateway(routes).await;
    let mut s = dial(gw, &format!("deadbeef-{port}s.mesh.test"))
        .await
        .unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let (mut r, mut w) = tokio::io::split(&mut s);
    let send = payload.clone();
    let writer = async move {
        w.write_all(&send).await.unwrap();
        w.flush().await.unwrap();
    };
    let reader = async move {
        let mut back = vec![0u8; payload.len()];
        r.read_exact(&mut back).await.unwrap();
        assert_eq!(back, payload);
    };
    tokio::join!(writer, reader);
}

#[tokio::test]
async fn a_route_added_while_running_serves_new_connections_and_keeps_open_ones() {
    let port = tls_echo().await;
    let mut first = Routes::new();
    first.insert("aa", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let table = RouteTable::new(first.clone());
    let gw = gateway_on(table.clone(), None).await;
    let mut open = dial(gw, &format!("aa-{port}s.mesh.test")).await.unwrap();
    assert!(dial(gw, &format!("bb-{port}s.mesh.test")).await.is_err());
    let mut both = first;
    both.insert("bb", IpAddr::V4(Ipv4Addr::LOCALHOST));
    table.replace(both);
    let mut new = dial(gw, &format!("bb-{port}s.mesh.test")).await.unwrap();
    for s in [&mut open, &mut new] {
        s.write_all(b"ping").await.unwrap();
        s.flush().await.unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
    }
}

#[tokio::test]
async fn unknown_sni_and_non_tls_are_closed() {
    let port = tls_echo().await;
    let mut routes = Routes::new();
    routes.insert("aa", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let gw = gateway(routes).await;
    assert!(dial(gw, &format!("bb-{port}s.mesh.test")).await.is_err());
    assert!(dial(gw, &format!("aa-{port}s.other.test")).await.is_err());
    assert!(dial(gw, &format!("aa-{port}.mesh.test")).await.is_err());
    let mut tcp = TcpStream::connect(gw).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Ok(0) | Err(_)));
    // The gateway still serves good names afterwards.
    assert!(dial(gw, &format!("aa-{port}s.mesh.test")).await.is_ok());
}

/// A plain (no TLS) TCP echo server, like a node's gRPC or health port behind the gateway's
/// terminating form.
async fn plain_echo() -> u16 {
    let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A client that trusts only `ca_pem` (no "accept anything": the certificate is checked).
async fn dial_verified(
    gw: SocketAddr,
    sni: &str,
    ca_pem: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(gw).await?;
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp),
    )
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

#[tokio::test]
async fn terminates_tls_for_the_dstack_app_port_form_under_its_dev_ca() {
    let plain = plain_echo().await;
    let tls_port = tls_echo().await;
    let ca = tls::dev_ca("mesh.test").unwrap();
    let cfg =
        tls::terminating_server_config(ca.leaf_pem.as_bytes(), ca.leaf_key_pem.as_bytes()).unwrap();
    let mut routes = Routes::new();
    routes.insert("0xDEADBEEF", IpAddr::V4(Ipv4Addr::LOCALHOST));
    let gw = gateway_with(routes, Some(cfg)).await;

    // `<app>-<port>.<domain>`: TLS ends at the gateway (the client verifies the dev CA's
    // wildcard certificate), the node's port sees plain bytes.
    let mut s = dial_verified(gw, &format!("deadbeef-{plain}.mesh.test"), &ca.ca_pem)
        .await
        .unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 13 + 1) as u8).collect();
    let (mut r, mut w) = tokio::io::split(&mut s);
    let send = payload.clone();
    let writer = async move {
        w.write_all(&send).await.unwrap();
        w.flush().await.unwrap();
    };
    let reader = async move {
        let mut back = vec![0u8; payload.len()];
        r.read_exact(&mut back).await.unwrap();
        assert_eq!(back, payload);
    };
    tokio::join!(writer, reader);

    // A client that trusts another CA is refused by its own verification.
    let other = tls::dev_ca("mesh.test").unwrap();
    assert!(
        dial_verified(gw, &format!("deadbeef-{plain}.mesh.test"), &other.ca_pem)
            .await
            .is_err()
    );
    // The passthrough form still reaches the node's own TLS on the same gateway.
    assert!(
        dial(gw, &format!("deadbeef-{tls_port}s.mesh.test"))
            .await
            .is_ok()
    );
}
