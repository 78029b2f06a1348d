//! A TLS-terminating front for a plain TCP service, as the dstack gateway's
//! `<app>-<port>.<domain>` form puts one in front of a CVM's port: the client speaks TLS (ALPN
//! `h2`) to a certificate of its own CA, the service behind it sees plain TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// A running terminator.
pub struct TlsFront {
    /// Where clients connect (TLS).
    pub addr: SocketAddr,
    /// The self-signed certificate (for `localhost` and `127.0.0.1`) clients must trust, PEM.
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a terminator on loopback that forwards every connection to `upstream`.
pub async fn tls_front(upstream: SocketAddr) -> std::io::Result<TlsFront> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(std::io::Error::other)?;
    let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        ck.key_pair.serialize_der(),
    ));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .map_err(std::io::Error::other)?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust us fails its handshake: the connection just ends.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    Ok(TlsFront {
        addr,
        ca_pem: ck.cert.pem(),
        task,
    })
}
