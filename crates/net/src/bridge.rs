//! WireGuard over the gateway's TCP/TLS path (DESIGN §6.3).
//!
//! Each bridged peer gets its own loopback UDP socket, which is that peer's WireGuard endpoint.
//! What the device sends there is framed and written to the peer's egress stream (dialled through
//! the gateway with SNI = the peer host). Frames arriving on our TLS ingress are injected into the
//! device *from that same socket*, so WireGuard's endpoint roaming never points it elsewhere.
//!
//! The ingress is open to the internet, so it admits connections through [`crate::ingress`]
//! (caps per claimed peer and in total, deadlines) and ranks them by [`crate::proof`]: the socket
//! reader learns the session indices the device announces to each peer, and an ingress
//! connection that echoes one is the peer's proven path, which no flood of claimants displaces.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use attestmesh_core::backoff::{Backoff, BackoffPolicy};

use rustls::pki_types::ServerName;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use crate::frame::{self, Decoder};
use crate::ingress::{Admission, ConnId, IngressCounts, IngressLimits};
use crate::proof::SessionIndices;
use crate::tls::{self, TlsError};

/// Default TLS ingress port (`WG_TCP_PORT`).
pub const DEFAULT_WG_TCP_PORT: u16 = 51900;
/// Redial schedule: 200 ms doubling (with equal jitter) to a 4 s cap, forever. The cap is small
/// enough that a healed link is back well inside WireGuard's 5 s handshake retry and the 30 s
/// recovery target.
pub const REDIAL: BackoffPolicy =
    BackoffPolicy::forever(Duration::from_millis(200), Duration::from_secs(4));
/// Unacknowledged data older than this kills a connection, so a silent partition is noticed
/// (and redialled) instead of stalling in TCP retransmits.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(8);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Egress TLS handshake limit (the ingress one is [`IngressLimits::handshake_timeout`]).
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
    /// Session indices the device announced to this peer; kept across a re-add of the host so
    /// the peer's live session still proves its connections.
    indices: Arc<SessionIndices>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Dropping it (on eviction) closes the connection it belongs to.
type CloseHandle = oneshot::Sender<()>;

struct Shared {
    cfg: BridgeConfig,
    wg_addr: SocketAddr,
    peers: Mutex<HashMap<String, Arc<PeerLink>>>,
    admission: Mutex<Admission<CloseHandle>>,
}

impl Shared {
    fn peer_socket(&self, host: &str) -> Option<(Arc<UdpSocket>, Arc<SessionIndices>)> {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers
            .get(host)
            .map(|p| (Arc::clone(&p.udp), Arc::clone(&p.indices)))
    }

    fn admission(&self) -> MutexGuard<'_, Admission<CloseHandle>> {
        self.admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running bridge. Dropping it stops every task and closes every socket.
pub struct Bridge {
    shared: Arc<Shared>,
    ingress_addr: SocketAddr,
    server: Arc<rustls::ServerConfig>,
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
        // Close every ingress connection too.
        let mut admission = self.shared.admission();
        *admission = Admission::new(admission.limits().clone());
    }
}

impl Bridge {
    /// Binds the TLS ingress with the default [`IngressLimits`] and starts accepting. Must run
    /// inside a Tokio runtime.
    pub async fn start(cfg: BridgeConfig) -> Result<Self, BridgeError> {
        Self::start_with_limits(cfg, IngressLimits::default()).await
    }

    /// [`Bridge::start`] with explicit ingress limits.
    pub async fn start_with_limits(
        cfg: BridgeConfig,
        limits: IngressLimits,
    ) -> Result<Self, BridgeError> {
        let listener = TcpListener::bind(cfg.listen).await?;
        Self::start_on(listener, cfg, limits)
    }

    /// [`Bridge::start_with_limits`] on an ingress listener the caller has already bound
    /// (`cfg.listen` is then unused). Whoever needs the port before the bridge exists (a test
    /// pointing a peer at it) binds it first and hands it over, so nothing can take the port in
    /// between.
    pub fn start_on(
        listener: TcpListener,
        cfg: BridgeConfig,
        limits: IngressLimits,
    ) -> Result<Self, BridgeError> {
        let server = tls::server_config()?;
        let ingress_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            wg_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.wg_port)),
            cfg,
            peers: Mutex::new(HashMap::new()),
            admission: Mutex::new(Admission::new(limits)),
        });
        let accept_task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&server),
            Arc::clone(&shared),
        ));
        tracing::info!(%ingress_addr, "bridge ingress listening");
        Ok(Self {
            shared,
            ingress_addr,
            server,
            accept_task,
        })
    }

    /// Serves one already-accepted ingress stream exactly as the listener would (admission,
    /// deadlines, proof). The listener uses it for every TCP connection; tests drive it with
    /// in-memory streams.
    pub fn accept_stream<S>(&self, io: S, from: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(serve_ingress(
            io,
            from,
            Arc::clone(&self.server),
            Arc::clone(&self.shared),
        ));
    }

    /// How many ingress connections are held, and how many of them are proven.
    pub fn ingress_counts(&self) -> IngressCounts {
        self.shared.admission().counts()
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
        let indices = self
            .shared
            .peer_socket(host)
            .map(|(_, i)| i)
            .unwrap_or_default();
        let target = match self.shared.cfg.gateway_connect {
            Some(addr) => Target::Addr(addr),
            None => Target::Host(host.to_owned(), self.shared.cfg.gateway_port),
        };
        let tasks = vec![
            tokio::spawn(device_to_queue(
                Arc::clone(&udp),
                self.shared.wg_addr,
                Arc::clone(&indices),
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
        let link = Arc::new(PeerLink {
            udp,
            indices,
            tasks,
        });
        let old = self
            .shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(host.to_owned(), link);
        if old.is_some() {
            // Its ingress connections feed the old socket, which is no longer the device's
            // endpoint for the peer: WireGuard would roam there and black-hole the replies.
            drop(self.shared.admission().evict_peer(host));
        }
        Ok(endpoint)
    }

    /// Stops bridging to `host` and closes the ingress connections claiming it.
    pub fn remove_peer(&self, host: &str) {
        self.shared
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(host);
        drop(self.shared.admission().evict_peer(host));
    }
}

#[derive(Clone)]
enum Target {
    Addr(SocketAddr),
    Host(String, u16),
}

/// Reads what the device sends to this peer's socket, learns the session indices it announces
/// and queues it for the egress stream.
async fn device_to_queue(
    udp: Arc<UdpSocket>,
    wg_addr: SocketAddr,
    indices: Arc<SessionIndices>,
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
        indices.learn(&buf[..n]);
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
    let mut backoff = Backoff::new(REDIAL);
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
                let delay = backoff.next_delay().unwrap_or(REDIAL.max);
                tracing::debug!(%host, error = %e, ?delay, "egress connect failed");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        tracing::info!(%host, "egress connected");
        backoff.reset();
        match pump_egress(stream, &mut rx).await {
            Ok(()) => return, // queue closed: peer removed
            Err(e) => tracing::info!(%host, error = %e, "egress stream lost, redialling"),
        }
        tokio::time::sleep(backoff.next_delay().unwrap_or(REDIAL.max)).await;
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
                tune(&tcp);
                // Every way out of an ingress connection is an abort, so make the close a reset
                // (RST): the sender learns at once and redials.
                let _ = SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
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

/// Why an ingress connection was closed.
#[derive(Debug, thiserror::Error)]
enum IngressError {
    #[error("tls: {0}")]
    Io(#[from] std::io::Error),
    #[error("no TLS handshake within the deadline")]
    HandshakeTimeout,
    #[error("dialer named no known peer (alpn {0:?})")]
    UnknownPeer(Option<String>),
    #[error("bad frame: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("evicted by a newer connection (ingress caps)")]
    Evicted,
    #[error("refused: {0}")]
    Full(#[from] crate::ingress::Full),
    #[error("carried no traffic for the claimed peer's sessions within the deadline")]
    Unproven,
    #[error("{0} frames without one for the claimed peer's sessions")]
    TooManyUnproven(u32),
    #[error("idle for longer than the limit")]
    Idle,
}

impl IngressError {
    /// Attack-shaped outcomes are expected under a flood; only log them at debug level.
    fn is_noise(&self) -> bool {
        matches!(
            self,
            Self::Evicted | Self::UnknownPeer(_) | Self::HandshakeTimeout | Self::Unproven
        )
    }
}

/// Forgets the connection in the admission table however its task ends (return, abort, panic).
struct Registered<'a> {
    shared: &'a Shared,
    id: ConnId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let handle = self.shared.admission().close(self.id);
        drop(handle);
    }
}

async fn serve_ingress<S>(
    io: S,
    from: SocketAddr,
    server: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (close, mut evicted) = oneshot::channel::<()>();
    let opened = shared.admission().open(close);
    let result = match opened {
        Ok((id, others)) => {
            drop(others);
            let _registered = Registered {
                shared: &shared,
                id,
            };
            tokio::select! {
                r = ingress(io, server, &shared, id) => r,
                _ = &mut evicted => Err(IngressError::Evicted),
            }
        }
        Err(full) => Err(full.into()),
    };
    match result {
        Ok(()) => tracing::debug!(%from, "ingress connection closed by the peer"),
        Err(e) if e.is_noise() => tracing::debug!(%from, error = %e, "ingress connection closed"),
        Err(e) => tracing::warn!(%from, error = %e, "ingress connection dropped"),
    }
}

async fn ingress<S>(
    io: S,
    server: Arc<rustls::ServerConfig>,
    shared: &Shared,
    id: ConnId,
) -> Result<(), IngressError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = shared.admission().limits().clone();
    let handshake_deadline = Instant::now() + limits.handshake_timeout;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = tokio::time::timeout_at(handshake_deadline, acceptor)
        .await
        .map_err(|_| IngressError::HandshakeTimeout)??;
    let host = start
        .client_hello()
        .alpn()
        .and_then(|mut it| it.find_map(tls::host_from_alpn).map(str::to_owned));
    let Some(((udp, indices), host)) = host
        .as_deref()
        .and_then(|h| shared.peer_socket(h))
        .zip(host.clone())
    else {
        return Err(IngressError::UnknownPeer(host));
    };
    drop(shared.admission().claim(id, &host));
    let mut stream = tokio::time::timeout_at(handshake_deadline, start.into_stream(server))
        .await
        .map_err(|_| IngressError::HandshakeTimeout)??;
    let proof_deadline = Instant::now() + limits.proof_timeout;
    let mut last_frame = Instant::now();
    let mut proven = false;
    let mut unproven_frames = 0u32;
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let idle_deadline = last_frame + limits.idle_timeout;
        let (deadline, late) = if !proven && proof_deadline < idle_deadline {
            (proof_deadline, IngressError::Unproven)
        } else {
            (idle_deadline, IngressError::Idle)
        };
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Err(late),
        };
        if n == 0 {
            return Ok(());
        }
        dec.push(&buf[..n]);
        let mut any = false;
        while let Some(dg) = dec.next_frame()? {
            any = true;
            if !proven {
                if indices.proves(dg) {
                    proven = true;
                    drop(shared.admission().prove(id));
                    tracing::debug!(%host, "ingress connection proven");
                } else {
                    unproven_frames += 1;
                    if unproven_frames > limits.max_unproven_frames {
                        return Err(IngressError::TooManyUnproven(unproven_frames));
                    }
                }
            }
            // Unproven frames are delivered too (a peer's handshake has to get through to prove
            // anything); WireGuard authenticates them. Waiting here (rather than dropping)
            // pushes back on the TCP stream under load.
            udp.send_to(dg, shared.wg_addr).await?;
        }
        if any {
            last_frame = Instant::now();
        }
    }
}
