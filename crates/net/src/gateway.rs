//! The dev gateway (DESIGN §6.4): a stand-in for dstack's gateway. It reads the SNI of each
//! incoming TLS ClientHello and routes by dstack's two name forms:
//! - `<app id>-<port>s.<domain>`: TLS passthrough — bytes are spliced both ways to that node's
//!   port, the node terminates TLS itself (the WireGuard bridge);
//! - `<app id>-<port>.<domain>`: the gateway terminates TLS with its certificate (a dev CA's
//!   `*.<domain>` here, a public one on dstack) and speaks plain TCP to the node's port (the
//!   Indexer's gRPC, health and metrics). Only when the gateway has a certificate.
//!
//! TCP only.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::sni::{self, Sni};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Same reasoning as the bridge: a dead leg must error out so both ends redial.
const USER_TIMEOUT: Duration = Duration::from_secs(8);
const SPLICE_BUF: usize = 64 * 1024;

/// Gateway failures.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("route file line {line}: {msg}")]
    RouteSyntax { line: usize, msg: String },
}

/// App id → node address. Ids are stored lowercase without `0x`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(HashMap<String, IpAddr>);

fn norm_id(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    id.strip_prefix("0x").map(str::to_owned).unwrap_or(id)
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one route.
    pub fn insert(&mut self, app_id: &str, addr: IpAddr) {
        self.0.insert(norm_id(app_id), addr);
    }

    /// Parses `<app id> <address>` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Self, GatewayError> {
        let mut routes = Self::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |msg: &str| GatewayError::RouteSyntax {
                line: i + 1,
                msg: msg.to_owned(),
            };
            let mut parts = line.split_whitespace();
            let (Some(id), Some(addr), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `<app id> <address>`"));
            };
            let addr: IpAddr = addr.parse().map_err(|_| err("bad address"))?;
            routes.insert(id, addr);
        }
        Ok(routes)
    }

    /// Reads a route file.
    pub fn load(path: &Path) -> Result<Self, GatewayError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// Resolves a server name under `domain` to the node's address and port, and whether the
    /// gateway terminates TLS for it.
    pub fn resolve(&self, server_name: &str, domain: &str) -> Option<Route> {
        let name = server_name.to_ascii_lowercase();
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        let label = name.strip_suffix(&domain)?.strip_suffix('.')?;
        if label.contains('.') {
            return None;
        }
        let (id, port) = label.rsplit_once('-')?;
        let (port, terminate) = match port.strip_suffix('s') {
            Some(p) => (p, false),
            None => (port, true),
        };
        // Digits only: `u16::from_str` would also take a leading `+`.
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok()?;
        if port == 0 {
            return None;
        }
        let ip = self.0.get(&norm_id(id))?;
        Some(Route {
            target: SocketAddr::new(*ip, port),
            terminate,
        })
    }
}

/// Where a connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub target: SocketAddr,
    /// `<app>-<port>.<domain>`: the gateway terminates TLS; `…s.<domain>`: passthrough.
    pub terminate: bool,
}

/// The routes a running gateway resolves against. Replacing them affects only connections that
/// arrive afterwards (an open splice keeps its target), as when dstack's gateway learns a new
/// CVM: a route file can grow while the mesh runs.
#[derive(Debug, Clone, Default)]
pub struct RouteTable(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Routes>>>);

impl RouteTable {
    pub fn new(routes: Routes) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(routes),
        )))
    }

    /// The routes now.
    pub fn current(&self) -> std::sync::Arc<Routes> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, routes: Routes) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(routes);
    }
}

/// Gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub domain: String,
    pub routes: RouteTable,
    /// The certificate for `*.<domain>` names (see [`crate::tls::terminating_server_config`]);
    /// `None` refuses the terminating form.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// A bound gateway, so callers can learn the port before serving.
pub struct Gateway {
    listener: TcpListener,
    domain: String,
    routes: RouteTable,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Gateway {
    pub async fn bind(cfg: GatewayConfig) -> Result<Self, GatewayError> {
        let listener = TcpListener::bind(cfg.listen).await?;
        Ok(Self {
            listener,
            domain: cfg.domain,
            routes: cfg.routes,
            tls: cfg.tls.map(tokio_rustls::TlsAcceptor::from),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, GatewayError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` completes; open splices are aborted then.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                acc = self.listener.accept() => match acc {
                    Ok((tcp, from)) => {
                        let routes = self.routes.current();
                        let domain = self.domain.clone();
                        let tls = self.tls.clone();
                        conns.spawn(async move {
                            if let Err(e) = handle(tcp, &routes, &domain, tls.as_ref()).await {
                                tracing::info!(%from, error = %e, "gateway connection closed");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
        Ok(())
    }
}

/// Binds and serves the gateway until `shutdown` completes.
pub async fn run_gateway(
    cfg: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let gw = Gateway::bind(cfg).await?;
    tracing::info!(addr = %gw.local_addr()?, "gateway listening");
    gw.serve(shutdown).await
}

fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let _ = SockRef::from(tcp).set_tcp_user_timeout(Some(USER_TIMEOUT));
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("no ClientHello within the time limit")]
    Timeout,
    #[error("not a TLS ClientHello")]
    NotTls,
    #[error("ClientHello has no server name")]
    NoSni,
    #[error("no route for {0}")]
    Unknown(String),
    #[error("{0} asks the gateway to terminate TLS, and it has no certificate")]
    NoCertificate(String),
    #[error("TLS handshake for {name}: {source}")]
    Handshake {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

async fn handle(
    mut tcp: TcpStream,
    routes: &Routes,
    domain: &str,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> Result<(), ConnError> {
    tune(&tcp);
    // Refusals end in a reset rather than a polite close.
    let _ = SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    let mut head = Vec::with_capacity(2048);
    let name = tokio::time::timeout(HELLO_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Err(ConnError::NotTls);
            }
            head.extend_from_slice(&buf[..n]);
            match sni::parse(&head) {
                Sni::Incomplete if head.len() <= sni::MAX_HELLO + 64 => continue,
                Sni::Found(name) => return Ok(name),
                Sni::Missing => return Err(ConnError::NoSni),
                Sni::Incomplete | Sni::Invalid => return Err(ConnError::NotTls),
            }
        }
    })
    .await
    .map_err(|_| ConnError::Timeout)??;
    let route = routes
        .resolve(&name, domain)
        .ok_or_else(|| ConnError::Unknown(name.clone()))?;
    let target = route.target;
    if route.terminate {
        let acceptor = tls.ok_or_else(|| ConnError::NoCertificate(name.clone()))?;
        // The ClientHello already read is replayed into the handshake.
        let replay = Replay {
            head: std::mem::take(&mut head),
            pos: 0,
            inner: tcp,
        };
        let mut client = tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(replay))
            .await
            .map_err(|_| ConnError::Timeout)?
            .map_err(|source| ConnError::Handshake {
                name: name.clone(),
                source,
            })?;
        let mut up = connect(target).await?;
        let _ = SockRef::from(&client.get_ref().0.inner).set_linger(None);
        tracing::debug!(%name, %target, "terminating TLS");
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut up, SPLICE_BUF, SPLICE_BUF)
            .await?;
        return Ok(());
    }
    let mut up = connect(target).await?;
    // Spliced connections close normally from here on.
    let _ = SockRef::from(&tcp).set_linger(None);
    up.write_all(&head).await?;
    tracing::debug!(%name, %target, "splicing");
    tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut up, SPLICE_BUF, SPLICE_BUF).await?;
    Ok(())
}

async fn connect(target: SocketAddr) -> Result<TcpStream, ConnError> {
    let up = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| ConnError::Io(std::io::ErrorKind::TimedOut.into()))??;
    tune(&up);
    Ok(up)
}

/// A connection whose first bytes (the ClientHello the router read) are served again.
struct Replay {
    head: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_by_app_id_and_port() {
        let routes = Routes::parse(
            "# app id            address\n0xABCDEF01 10.0.0.2\n1234 fd00::1  # v6\n\n",
        )
        .unwrap();
        let pass = |a: &str| {
            Some(Route {
                target: a.parse().unwrap(),
                terminate: false,
            })
        };
        assert_eq!(
            routes.resolve("abcdef01-51900s.mesh.test", "mesh.test"),
            pass("10.0.0.2:51900")
        );
        assert_eq!(
            routes.resolve("1234-443s.Mesh.Test", ".mesh.test."),
            pass("[fd00::1]:443")
        );
        assert_eq!(
            routes.resolve("abcdef01-51900.mesh.test", "mesh.test"),
            Some(Route {
                target: "10.0.0.2:51900".parse().unwrap(),
                terminate: true
            })
        );
        assert_eq!(routes.resolve("abcdef01-+80.mesh.test", "mesh.test"), None);
        assert_eq!(routes.resolve("abcdef01-s.mesh.test", "mesh.test"), None);
        assert_eq!(routes.resolve("abcdef01-0.mesh.test", "mesh.test"), None);
        assert_eq!(routes.resolve("abcdef01-0s.mesh.test", "mesh.test"), None);
        assert_eq!(routes.resolve("nope-51900s.mesh.test", "mesh.test"), None);
        assert_eq!(
            routes.resolve("abcdef01-51900s.other.test", "mesh.test"),
            None
        );
        assert_eq!(
            routes.resolve("x.abcdef01-51900s.mesh.test", "mesh.test"),
            None
        );
        assert_eq!(
            routes.resolve("abcdef01-51900s.xmesh.test", "mesh.test"),
            None
        );
    }

    #[test]
    fn route_file_errors_name_the_line() {
        let e = Routes::parse("a 1.2.3.4\nb notanip\n").unwrap_err();
        assert!(matches!(e, GatewayError::RouteSyntax { line: 2, .. }));
        assert!(Routes::parse("onlyone\n").is_err());
    }
}
