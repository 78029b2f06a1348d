//! WireGuard over the gateway's TCP/TLS path (DESIGN §6.3).
//!
//! Each bridged peer gets its own loopback UDP socket, which is that peer's WireGuard endpoint.
//! What the device sends there is framed and written to the peer's egress stream (dialled through
//! the gateway with SNI = the peer host). Frames arriving on our TLS ingress are injected into the
//! device *from that same socket*, so WireGuard's endpoint roaming never points it elsewhere.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::ServerName;
use socket2::SockRef;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use crate::frame::{self, Decoder};
use crate::tls::{self, TlsError};

/// Default TLS ingress port (`WG_TCP_PORT`).
pub const DEFAULT_WG_TCP_PORT: u16 = 51900;
/// First reconnect delay; doubled per failure up to [`BACKOFF_CAP`].
pub const BACKOFF_START: Duration = Duration::from_millis(200);
/// Reconnect delay cap: small enough that a healed link is back well inside WireGuard's
/// 5 s handshake retry and the 30 s recovery target.
pub const BACKOFF_CAP: Duration = Duration::from_secs(4);
/// Unacknowledged data older than this kills a connection, so a silent partition is noticed
/// (and redialled) instead of stalling in TCP retransmits.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(8);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams queued per peer while its stream is (re)connecting; WireGuard retransmits the rest.
const QUEUE: usize = 512;

/// Bridge configuration.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// TLS ingress address, normally `0.0.0.0:WG_TCP_PORT`.
    pub listen: SocketAddr,
    /// The local WireGuard device's UDP port.
    pub wg_port: u16,
    /// Our own gateway host name; peers know us by it.
    pub local_host: String,
    /// `GATEWAY_CONNECT`: dial this instead of `<peer host>:443`, keeping the SNI.
    pub gateway_connect: Option<SocketAddr>,
    /// Port dialled on the peer host when there is no override.
    pub gateway_port: u16,
}

/// Bridge failures (setup only; per-connection failures are logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid peer host name {0:?}")]
    BadHost(String),
}

struct PeerLink {
    udp: Arc<UdpSocket>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Shared {
    cfg: BridgeConfig,
    wg_addr: SocketAddr,
    peers: Mutex<HashMap<String, Arc<PeerLink>>>,
}

impl Shared {
    fn peer_socket(&self, host: &str) -> Option<Arc<UdpSocket>> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.get(host).map(|p| Arc::clone(&p.udp))
    }
}

/// A running bridge. Dropping it stops every task and closes every socket.
pub struct Bridge {
    shared: Arc<Shared>,
    ingress_addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Bridge {
    /// Binds the TLS ingress and starts accepting. Must run inside a Tokio runtime.
    pub async fn start(cfg: BridgeConfig) -> Result<Self, BridgeError> {
        let server = tls::server_config()?;
        let listener = TcpListener::bind(cfg.listen).await?;
        let ingress_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            wg_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.wg_port)),
            cfg,
            peers: Mutex::new(HashMap::new()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, server, Arc::clone(&shared)));
        tracing::info!(%ingress_addr, "bridge ingress listening");
        Ok(Self {
            shared,
            ingress_addr,
            accept_task,
        })
    }

    /// Where the TLS ingress listens.
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_addr
    }

    /// Starts bridging to `host` and returns the loopback address to configure as that peer's
    /// WireGuard endpoint. Re-adding a host restarts its link.
    pub async fn add_peer(&self, host: &str) -> Result<SocketAddr, BridgeError> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| BridgeError::BadHost(host.to_owned()))?;
        let udp = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        let endpoint = udp.local_addr()?;
        let client = tls::client_config(tls::identity_alpn(&self.shared.cfg.local_host))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let target = match self.shared.cfg.gateway_connect {
            Some(addr) => Target::Addr(addr),
            None => Target::Host(host.to_owned(), self.shared.cfg.gateway_port),
        };
        let tasks = vec![
            tokio::spawn(device_to_queue(
                Arc::clone(&udp),
                self.shared.wg_addr,
                tx,
                host.to_owned(),
            )),
            tokio::spawn(egress_loop(
                target,
                server_name,
                TlsConnector::from(client),
                rx,
                host.to_owned(),
            )),
        ];
        let link = Arc::new(PeerLink { udp, tasks });
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(host.to_owned(), link);
        Ok(endpoint)
    }

    /// Stops bridging to `host`.
    pub fn remove_peer(&self, host: &str) {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(host);
    }
}

#[derive(Clone)]
enum Target {
    Addr(SocketAddr),
    Host(String, u16),
}

/// Reads what the device sends to this peer's socket and queues it for the egress stream.
async fn device_to_queue(
    udp: Arc<UdpSocket>,
    wg_addr: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
    host: String,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(%host, error = %e, "bridge udp receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Only the local device may use this socket.
        if from != wg_addr {
            tracing::debug!(%host, %from, "ignoring datagram not from the local device");
            continue;
        }
        match tx.try_send(buf[..n].to_vec()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::trace!(%host, "egress queue full, datagram dropped")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let sock = SockRef::from(tcp);
    let _ = sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
    let _ = sock.set_keepalive(true);
}

async fn dial(target: &Target) -> std::io::Result<TcpStream> {
    let fut = async {
        match target {
            Target::Addr(a) => TcpStream::connect(*a).await,
            Target::Host(h, p) => TcpStream::connect((h.as_str(), *p)).await,
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Dials the peer through the gateway and streams queued datagrams, forever.
async fn egress_loop(
    target: Target,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    mut rx: mpsc::Receiver<Vec<u8>>,
    host: String,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let attempt = async {
            let tcp = dial(&target).await?;
            tune(&tcp);
            tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                connector.connect(server_name.clone(), tcp),
            )
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        };
        let stream = match attempt.await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%host, error = %e, ?backoff, "egress connect failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
        };
        tracing::info!(%host, "egress connected");
        backoff = BACKOFF_START;
        match pump_egress(stream, &mut rx).await {
            Ok(()) => return, // queue closed: peer removed
            Err(e) => tracing::info!(%host, error = %e, "egress stream lost, redialling"),
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn pump_egress(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    rx: &mut mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut sink = [0u8; 2048];
    loop {
        tokio::select! {
            dg = rx.recv() => {
                let Some(dg) = dg else { return Ok(()) };
                out.clear();
                push_frame(&dg, &mut out);
                // Batch whatever else is already queued into one TLS write.
                while out.len() < 60 * 1024 {
                    match rx.try_recv() {
                        Ok(dg) => push_frame(&dg, &mut out),
                        Err(_) => break,
                    }
                }
                wr.write_all(&out).await?;
                wr.flush().await?;
            }
            // The ingress side never sends; reading only detects close and reset.
            r = rd.read(&mut sink) => {
                if r? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

fn push_frame(dg: &[u8], out: &mut Vec<u8>) {
    if let Err(e) = frame::encode(dg, out) {
        tracing::warn!(error = %e, "device produced an unframeable datagram, dropped");
    }
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, from)) => {
                tokio::spawn(serve_ingress(
                    tcp,
                    from,
                    Arc::clone(&server),
                    Arc::clone(&shared),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why an ingress connection was reset.
#[derive(Debug, thiserror::Error)]
enum IngressError {
    #[error("tls: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("dialer named no known peer (alpn {0:?})")]
    UnknownPeer(Option<String>),
    #[error("bad frame: {0}")]
    Frame(#[from] frame::FrameError),
}

async fn serve_ingress(
    tcp: TcpStream,
    from: SocketAddr,
    server: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) {
    tune(&tcp);
    // Every way out of this function is an abort, so make the close a reset (RST): the sender
    // learns at once and redials.
    let _ = SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
    if let Err(e) = ingress(tcp, server, &shared).await {
        tracing::warn!(%from, error = %e, "ingress connection dropped");
    }
}

async fn ingress(
    tcp: TcpStream,
    server: Arc<rustls::ServerConfig>,
    shared: &Shared,
) -> Result<(), IngressError> {
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor)
        .await
        .map_err(|_| IngressError::Timeout)??;
    let host = start
        .client_hello()
        .alpn()
        .and_then(|mut it| it.find_map(tls::host_from_alpn).map(str::to_owned));
    let udp = match host.as_deref().and_then(|h| shared.peer_socket(h)) {
        Some(u) => u,
        None => return Err(IngressError::UnknownPeer(host)),
    };
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(server))
        .await
        .map_err(|_| IngressError::Timeout)??;
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        dec.push(&buf[..n]);
        while let Some(dg) = dec.next_frame()? {
            // Waiting here (rather than dropping) pushes back on the TCP stream under load.
            udp.send_to(dg, shared.wg_addr).await?;
        }
    }
}
