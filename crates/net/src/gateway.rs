//! The dev gateway (DESIGN §6.4): a stand-in for dstack's gateway. It reads the SNI of each
//! incoming TLS ClientHello, maps `<app id>-<port>s.<domain>` to that node's address and port, and
//! splices bytes both ways without terminating TLS. TCP only.

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

    /// Resolves a server name under `domain` to the node's address and port.
    pub fn resolve(&self, server_name: &str, domain: &str) -> Option<SocketAddr> {
        let name = server_name.to_ascii_lowercase();
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        let label = name.strip_suffix(&domain)?.strip_suffix('.')?;
        if label.contains('.') {
            return None;
        }
        let (id, port) = label.rsplit_once('-')?;
        let port: u16 = port.strip_suffix('s')?.parse().ok()?;
        if port == 0 {
            return None;
        }
        let ip = self.0.get(&norm_id(id))?;
        Some(SocketAddr::new(*ip, port))
    }
}

/// Gateway configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub domain: String,
    pub routes: Routes,
}

/// A bound gateway, so callers can learn the port before serving.
pub struct Gateway {
    listener: TcpListener,
    domain: String,
    routes: std::sync::Arc<Routes>,
}

impl Gateway {
    pub async fn bind(cfg: GatewayConfig) -> Result<Self, GatewayError> {
        let listener = TcpListener::bind(cfg.listen).await?;
        Ok(Self {
            listener,
            domain: cfg.domain,
            routes: std::sync::Arc::new(cfg.routes),
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
                        let routes = std::sync::Arc::clone(&self.routes);
                        let domain = self.domain.clone();
                        conns.spawn(async move {
                            if let Err(e) = handle(tcp, &routes, &domain).await {
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
}

async fn handle(mut tcp: TcpStream, routes: &Routes, domain: &str) -> Result<(), ConnError> {
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
    let target = routes
        .resolve(&name, domain)
        .ok_or_else(|| ConnError::Unknown(name.clone()))?;
    let mut up = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| ConnError::Io(std::io::ErrorKind::TimedOut.into()))??;
    tune(&up);
    // Spliced connections close normally from here on.
    let _ = SockRef::from(&tcp).set_linger(None);
    up.write_all(&head).await?;
    tracing::debug!(%name, %target, "splicing");
    tokio::io::copy_bidirectional_with_sizes(&mut tcp, &mut up, SPLICE_BUF, SPLICE_BUF).await?;
    Ok(())
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
        assert_eq!(
            routes.resolve("abcdef01-51900s.mesh.test", "mesh.test"),
            Some("10.0.0.2:51900".parse().unwrap())
        );
        assert_eq!(
            routes.resolve("1234-443s.Mesh.Test", ".mesh.test."),
            Some("[fd00::1]:443".parse().unwrap())
        );
        assert_eq!(
            routes.resolve("abcdef01-51900.mesh.test", "mesh.test"),
            None
        );
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
