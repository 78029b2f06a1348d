//! Talking to a peer over its mesh IP: a TCP echo with a mutual challenge–response.
//!
//! Inside the mesh, WireGuard already authenticates *nodes* (a packet from a mesh IP comes from
//! the member registered with that IP). What it cannot tell an application is whether the process
//! on the other end is *this application* holding *this cluster's* keys. The exchange below proves
//! that: each side MACs fresh nonces from both sides with the application key derived from the
//! CSK ([`crate::appkey`]), so only a holder of the CSK can answer, and a recorded exchange is
//! useless later. The server also checks that the connection's source address is the mesh IP of
//! the member the client claims to be.
//!
//! Wire format (all fixed-size fields; `u16` big-endian):
//!
//! ```text
//! C→S  hello   MAGIC(8) client_id(32) server_id(32) nonce_c(32)
//! S→C  status(1)=0 nonce_s(32) mac_s(32)             | status=1 len(u16) reason
//! C→S  proof   mac_c(32) len(u16) payload
//! S→C  status(1)=0 len(u16) payload mac_e(32)        | status=1 len(u16) reason
//!
//! mac_L = HMAC-SHA256(app_key, "attestmesh.example.v1/echo/" L 0x00
//!                              client_id server_id nonce_c nonce_s [payload])
//! L ∈ {"server", "client", "echo"}
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::Mac as _;
use rand_core::{OsRng, RngCore as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::agent::{Agent, PeerInfo};
use crate::appkey::AppKey;
use crate::ids::MemberId;

/// Identifies the protocol and its version; anything else on the port is not our peer.
pub const MAGIC: &[u8; 8] = b"AMECHO01";
/// Default port of `serve-echo` on the node's mesh IP.
pub const DEFAULT_PORT: u16 = 7700;
/// Largest echo payload; the exchange is a proof, not a transport.
pub const MAX_PAYLOAD: usize = 4096;
/// A whole exchange must finish within this, so a stuck peer cannot hold a server task.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

const DOMAIN: &[u8] = b"attestmesh.example.v1/echo/";

#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error(
        "cannot connect to {addr}: {source} (is the peer running `serve-echo` or `demo` on that \
         port, and is the mesh up?)"
    )]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use local mesh address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o while {during}: {source}")]
    Io {
        during: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the other end does not speak this protocol (bad magic)")]
    BadMagic,
    #[error("the peer's proof does not verify: it does not hold this cluster's application key")]
    PeerProofInvalid,
    #[error("the peer refused the exchange: {0}")]
    Refused(String),
    #[error("the peer echoed something else than was sent")]
    EchoMismatch,
    #[error("payload of {0} bytes is too large; at most {MAX_PAYLOAD}")]
    PayloadTooLarge(usize),
    #[error("the exchange did not finish within {0:?}")]
    Timeout(Duration),
}

fn io(during: &'static str) -> impl FnOnce(std::io::Error) -> EchoError {
    move |source| EchoError::Io { during, source }
}

/// The transcript both sides MAC.
struct Transcript {
    client: MemberId,
    server: MemberId,
    nonce_c: [u8; 32],
    nonce_s: [u8; 32],
}

impl Transcript {
    fn mac(&self, key: &AppKey, label: &[u8], payload: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        let mut m = key.mac();
        m.update(DOMAIN);
        m.update(label);
        m.update(&[0]);
        m.update(&self.client.0);
        m.update(&self.server.0);
        m.update(&self.nonce_c);
        m.update(&self.nonce_s);
        m.update(payload);
        m
    }

    fn tag(&self, key: &AppKey, label: &[u8], payload: &[u8]) -> [u8; 32] {
        self.mac(key, label, payload).finalize().into_bytes().into()
    }

    /// Constant-time check.
    fn verify(&self, key: &AppKey, label: &[u8], payload: &[u8], tag: &[u8]) -> bool {
        self.mac(key, label, payload).verify_slice(tag).is_ok()
    }
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    OsRng.fill_bytes(&mut n);
    n
}

async fn read_array<const N: usize>(
    s: &mut TcpStream,
    during: &'static str,
) -> Result<[u8; N], EchoError> {
    let mut b = [0u8; N];
    s.read_exact(&mut b).await.map_err(io(during))?;
    Ok(b)
}

async fn read_blob(s: &mut TcpStream, during: &'static str) -> Result<Vec<u8>, EchoError> {
    let len = usize::from(u16::from_be_bytes(read_array::<2>(s, during).await?));
    if len > MAX_PAYLOAD {
        return Err(EchoError::PayloadTooLarge(len));
    }
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).await.map_err(io(during))?;
    Ok(b)
}

fn blob(b: &[u8]) -> Result<Vec<u8>, EchoError> {
    let len = u16::try_from(b.len())
        .ok()
        .filter(|l| usize::from(*l) <= MAX_PAYLOAD)
        .ok_or(EchoError::PayloadTooLarge(b.len()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(b);
    Ok(out)
}

/// Reads the server's status byte; on a refusal returns its reason as the error.
async fn read_status(s: &mut TcpStream, during: &'static str) -> Result<(), EchoError> {
    match read_array::<1>(s, during).await? {
        [0] => Ok(()),
        [1] => {
            let reason = read_blob(s, during).await?;
            Err(EchoError::Refused(
                String::from_utf8_lossy(&reason)
                    .chars()
                    .flat_map(char::escape_default)
                    .collect(),
            ))
        }
        _ => Err(EchoError::BadMagic),
    }
}

/// What a successful [`ping`] proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingReport {
    pub peer: MemberId,
    pub addr: SocketAddr,
    pub echoed: Vec<u8>,
    pub rtt: Duration,
}

/// Connects from this node's mesh IP to `peer`'s mesh IP and runs the exchange: the peer proves
/// it holds `key`, we prove the same, and it echoes `payload` under a MAC.
pub async fn ping(
    key: &AppKey,
    me: &PeerInfo,
    peer: &PeerInfo,
    port: u16,
    payload: &[u8],
) -> Result<PingReport, EchoError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EchoError::PayloadTooLarge(payload.len()));
    }
    tokio::time::timeout(EXCHANGE_TIMEOUT, ping_inner(key, me, peer, port, payload))
        .await
        .map_err(|_| EchoError::Timeout(EXCHANGE_TIMEOUT))?
}

async fn ping_inner(
    key: &AppKey,
    me: &PeerInfo,
    peer: &PeerInfo,
    port: u16,
    payload: &[u8],
) -> Result<PingReport, EchoError> {
    let t0 = Instant::now();
    let addr = SocketAddr::from((peer.mesh_ip, port));
    // Bind the source to our mesh IP: that is what the server checks against our member id. In
    // the mesh the kernel would pick it anyway; binding makes it explicit.
    let local = SocketAddr::from((me.mesh_ip, 0));
    let sock = TcpSocket::new_v4().map_err(|source| EchoError::Bind {
        addr: local,
        source,
    })?;
    sock.bind(local).map_err(|source| EchoError::Bind {
        addr: local,
        source,
    })?;
    let mut s = sock
        .connect(addr)
        .await
        .map_err(|source| EchoError::Connect { addr, source })?;
    let _ = s.set_nodelay(true);

    let nonce_c = nonce();
    let mut hello = Vec::with_capacity(104);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&me.id.0);
    hello.extend_from_slice(&peer.id.0);
    hello.extend_from_slice(&nonce_c);
    s.write_all(&hello).await.map_err(io("sending hello"))?;

    read_status(&mut s, "reading the challenge").await?;
    let nonce_s = read_array::<32>(&mut s, "reading the challenge").await?;
    let mac_s = read_array::<32>(&mut s, "reading the challenge").await?;
    let t = Transcript {
        client: me.id,
        server: peer.id,
        nonce_c,
        nonce_s,
    };
    if !t.verify(key, b"server", &[], &mac_s) {
        return Err(EchoError::PeerProofInvalid);
    }

    let mut proof = t.tag(key, b"client", &[]).to_vec();
    proof.extend_from_slice(&blob(payload)?);
    s.write_all(&proof).await.map_err(io("sending our proof"))?;

    read_status(&mut s, "reading the echo").await?;
    let echoed = read_blob(&mut s, "reading the echo").await?;
    let mac_e = read_array::<32>(&mut s, "reading the echo").await?;
    if !t.verify(key, b"echo", &echoed, &mac_e) {
        return Err(EchoError::PeerProofInvalid);
    }
    if echoed != payload {
        return Err(EchoError::EchoMismatch);
    }
    Ok(PingReport {
        peer: peer.id,
        addr,
        echoed,
        rtt: t0.elapsed(),
    })
}

/// One exchange the server handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub source: SocketAddr,
    /// The member the client claimed to be (verified only if `result` is `Ok`).
    pub client: Option<MemberId>,
    /// Echoed bytes, or why the exchange failed.
    pub result: Result<usize, String>,
}

/// The echo server: answers exchanges from current members only, on this node's mesh IP.
pub struct EchoServer {
    key: AppKey,
    me: MemberId,
    agent: Agent,
}

impl EchoServer {
    /// `agent` is asked for the current members on every connection, so a member removed from
    /// the cluster stops being served at once.
    pub fn new(key: AppKey, me: MemberId, agent: Agent) -> Self {
        EchoServer { key, me, agent }
    }

    /// Accepts until `shutdown`, one task per connection, reporting each exchange to `served`.
    pub async fn run(
        self,
        listener: TcpListener,
        served: tokio::sync::mpsc::UnboundedSender<Served>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let this = std::sync::Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            let (stream, source) = tokio::select! {
                () = &mut shutdown => return,
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(_) => {
                        // Transient (e.g. out of descriptors): back off, keep serving.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let this = std::sync::Arc::clone(&this);
            let served = served.clone();
            tokio::spawn(async move {
                let mut claimed = None;
                let result = tokio::time::timeout(
                    EXCHANGE_TIMEOUT,
                    this.handle(stream, source, &mut claimed),
                )
                .await
                .map_err(|_| EchoError::Timeout(EXCHANGE_TIMEOUT).to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
                let _ = served.send(Served {
                    source,
                    client: claimed,
                    result,
                });
            });
        }
    }

    async fn refuse(s: &mut TcpStream, reason: &str) -> Result<(), EchoError> {
        let mut out = vec![1u8];
        out.extend_from_slice(&blob(reason.as_bytes())?);
        s.write_all(&out).await.map_err(io("sending a refusal"))
    }

    async fn handle(
        &self,
        mut s: TcpStream,
        source: SocketAddr,
        claimed: &mut Option<MemberId>,
    ) -> Result<usize, EchoError> {
        let _ = s.set_nodelay(true);
        let magic = read_array::<8>(&mut s, "reading hello").await?;
        if &magic != MAGIC {
            return Err(EchoError::BadMagic);
        }
        let client = MemberId(read_array::<32>(&mut s, "reading hello").await?);
        let server = MemberId(read_array::<32>(&mut s, "reading hello").await?);
        let nonce_c = read_array::<32>(&mut s, "reading hello").await?;
        *claimed = Some(client);

        let reason = if server != self.me {
            Some(format!("this is {}, not {server}", self.me))
        } else {
            self.check_source(client, source.ip()).await.err()
        };
        if let Some(reason) = reason {
            Self::refuse(&mut s, &reason).await?;
            return Err(EchoError::Refused(reason));
        }

        let t = Transcript {
            client,
            server,
            nonce_c,
            nonce_s: nonce(),
        };
        let mut challenge = vec![0u8];
        challenge.extend_from_slice(&t.nonce_s);
        challenge.extend_from_slice(&t.tag(&self.key, b"server", &[]));
        s.write_all(&challenge)
            .await
            .map_err(io("sending the challenge"))?;

        let mac_c = read_array::<32>(&mut s, "reading the proof").await?;
        let payload = read_blob(&mut s, "reading the proof").await?;
        if !t.verify(&self.key, b"client", &[], &mac_c) {
            Self::refuse(
                &mut s,
                "your proof does not verify: different application key",
            )
            .await?;
            return Err(EchoError::PeerProofInvalid);
        }
        let mut echo = vec![0u8];
        echo.extend_from_slice(&blob(&payload)?);
        echo.extend_from_slice(&t.tag(&self.key, b"echo", &payload));
        s.write_all(&echo).await.map_err(io("sending the echo"))?;
        Ok(payload.len())
    }

    /// The connection must come from the claimed member's mesh IP (WireGuard guarantees the
    /// source address inside the mesh, so this binds the TCP peer to a registered member).
    async fn check_source(&self, client: MemberId, ip: IpAddr) -> Result<(), String> {
        let mut agent = self.agent.clone();
        let peers = agent
            .peers()
            .await
            .map_err(|e| format!("cannot read members: {e}"))?;
        match peers.iter().find(|p| p.id == client) {
            None => Err(format!("{client} is not a member of this cluster")),
            Some(p) if IpAddr::V4(p.mesh_ip) != ip => Err(format!(
                "connection from {ip}, but {client}'s mesh IP is {}",
                p.mesh_ip
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Binds the echo port on this node's mesh IP: only reachable through the mesh.
pub async fn bind(me: &PeerInfo, port: u16) -> Result<TcpListener, EchoError> {
    let addr = SocketAddr::from((me.mesh_ip, port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })
}
