//! The app API client: gRPC over the agent's unix socket (DESIGN §11).
//!
//! Access control is the socket's file mode (0600), so the only way in is to run as the agent's
//! user with the socket directory shared into the app's container. [`Agent::connect`] probes the
//! socket first so those deployment mistakes surface as a clear [`AppError`] rather than a
//! generic transport error.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use attestmesh_proto::agent as pb;
use attestmesh_proto::agent::agent_client::AgentClient;
use tonic::transport::Channel;

use crate::appkey::{APP_KEY_INFO, AppKey};
use crate::error::AppError;
use crate::ids::{MemberId, PeerSpec};

/// The agent's default socket (`AGENT_SOCKET`).
pub const DEFAULT_SOCKET: &str = "/var/run/attestmesh/agent.sock";

/// The agent refuses larger plaintexts (`SendMessage`: ciphertext is calldata, size is gas);
/// checked here too so the user gets the limit before a round trip.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// A member as the agent reports it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: MemberId,
    pub mesh_ip: Ipv4Addr,
    /// Heartbeats arriving (always `true` for [`Agent::me`]).
    pub live: bool,
    pub last_heartbeat_unix_ms: u64,
    pub registered_at: u64,
}

impl PeerInfo {
    fn from_member(
        m: &pb::Member,
        live: bool,
        last_heartbeat_unix_ms: u64,
    ) -> Result<Self, AppError> {
        let id = MemberId::from_slice("member_id", &m.member_id)?;
        let mesh_ip = m.mesh_ip.parse().map_err(|_| {
            AppError::BadAgentData(format!("member {id} has mesh IP {:?}", m.mesh_ip))
        })?;
        Ok(PeerInfo {
            id,
            mesh_ip,
            live,
            last_heartbeat_unix_ms,
            registered_at: m.registered_at,
        })
    }
}

/// A sent message's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub envelope_id: [u8; 32],
    pub tx_hash: [u8; 32],
}

/// A message addressed to this node, decrypted by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub sender: MemberId,
    pub envelope_id: [u8; 32],
    pub plaintext: Vec<u8>,
    pub block_number: u64,
    pub tx_hash: [u8; 32],
    pub from_cluster_owner: bool,
}

impl Received {
    /// The plaintext as text, lossily decoded and with control characters escaped: it comes
    /// from another node and must not be able to drive the terminal.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.plaintext)
            .chars()
            .flat_map(char::escape_default)
            .collect()
    }
}

fn b32(field: &str, b: &[u8]) -> Result<[u8; 32], AppError> {
    <[u8; 32]>::try_from(b)
        .map_err(|_| AppError::BadAgentData(format!("{field} is {} bytes, expected 32", b.len())))
}

/// The phase's wire name, as `/healthz` and the devnet status show it.
pub fn phase_name(phase: i32) -> &'static str {
    match pb::Phase::try_from(phase) {
        Ok(pb::Phase::Booting) => "booting",
        Ok(pb::Phase::Registering) => "registering",
        Ok(pb::Phase::Subscribing) => "subscribing",
        Ok(pb::Phase::WaitingPeers) => "waiting-peers",
        Ok(pb::Phase::WgConfiguring) => "wg-configuring",
        Ok(pb::Phase::PullingCsk) => "pulling-csk",
        Ok(pb::Phase::Heartbeating) => "heartbeating",
        Ok(pb::Phase::Healthy) => "healthy",
        Ok(pb::Phase::Unspecified) | Err(_) => "unknown",
    }
}

/// One-line summary of a status, for progress and for the not-healthy error.
pub fn describe(s: &pb::MeshStatus) -> String {
    format!(
        "phase {}, {} members, {} live peers, csk {}, converged {}",
        phase_name(s.phase),
        s.member_count,
        s.live_peers,
        if s.csk_acquired { "held" } else { "not held" },
        s.converged
    )
}

/// A connection to the agent. Cheap to clone (one multiplexed HTTP/2 connection).
#[derive(Clone)]
pub struct Agent {
    client: AgentClient<Channel>,
    path: PathBuf,
}

impl Agent {
    /// Connects to the agent's socket, failing fast with a clear error when the socket is
    /// missing, not ours, or stale.
    pub async fn connect(path: &Path) -> Result<Self, AppError> {
        match tokio::net::UnixStream::connect(path).await {
            Ok(probe) => drop(probe),
            Err(e) => {
                let p = path.to_path_buf();
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound => AppError::SocketMissing(p),
                    std::io::ErrorKind::PermissionDenied => AppError::SocketPermission(p),
                    std::io::ErrorKind::ConnectionRefused => AppError::SocketRefused(p),
                    _ => AppError::Connect { path: p, source: e },
                });
            }
        }
        let channel = attestmesh_proto::socket::connect_agent(path)
            .await
            .map_err(|e| AppError::Transport {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        Ok(Agent {
            client: AgentClient::new(channel),
            path: path.to_path_buf(),
        })
    }

    /// Like [`Agent::connect`], but keeps trying while the socket is missing or stale (the agent
    /// may still be starting) until `deadline`; permission errors fail at once.
    pub async fn connect_until(path: &Path, deadline: Instant) -> Result<Self, AppError> {
        loop {
            match Self::connect(path).await {
                Err(AppError::SocketMissing(_) | AppError::SocketRefused(_))
                    if Instant::now() + Duration::from_millis(250) < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    }

    pub fn socket(&self) -> &Path {
        &self.path
    }

    pub async fn status(&mut self) -> Result<pb::MeshStatus, AppError> {
        self.client
            .get_mesh_status(pb::GetMeshStatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| AppError::rpc("GetMeshStatus", &s))
    }

    /// Polls `GetMeshStatus` until the phase is `healthy` (registered, meshed, CSK held), calling
    /// `progress` whenever the summary changes. Gives up at `timeout`, or at once if the agent
    /// reports it failed closed (it will never become healthy then).
    pub async fn wait_healthy(
        &mut self,
        timeout: Duration,
        mut progress: impl FnMut(&pb::MeshStatus),
    ) -> Result<pb::MeshStatus, AppError> {
        let t0 = Instant::now();
        let mut last = String::new();
        loop {
            let s = self.status().await?;
            if !s.error.is_empty() {
                return Err(AppError::AgentFailed(s.error));
            }
            let d = describe(&s);
            if d != last {
                progress(&s);
                last = d;
            }
            if s.phase == pb::Phase::Healthy as i32 {
                return Ok(s);
            }
            if t0.elapsed() >= timeout {
                return Err(AppError::NotHealthy {
                    waited: t0.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// This node as registered on chain.
    pub async fn me(&mut self) -> Result<PeerInfo, AppError> {
        let m = self
            .client
            .get_self(pb::GetSelfRequest {})
            .await
            .map_err(|s| {
                if s.code() == tonic::Code::FailedPrecondition {
                    AppError::NotRegistered(s.message().to_owned())
                } else {
                    AppError::rpc("GetSelf", &s)
                }
            })?
            .into_inner();
        PeerInfo::from_member(&m, true, 0)
    }

    /// Every other member in the agent's current chain view, with liveness.
    pub async fn peers(&mut self) -> Result<Vec<PeerInfo>, AppError> {
        let resp = self
            .client
            .list_peers(pb::ListPeersRequest {})
            .await
            .map_err(|s| AppError::rpc("ListPeers", &s))?
            .into_inner();
        resp.peers
            .iter()
            .map(|p| {
                let m = p
                    .member
                    .as_ref()
                    .ok_or_else(|| AppError::BadAgentData("peer without member".into()))?;
                PeerInfo::from_member(m, p.live, p.last_heartbeat_unix_ms)
            })
            .collect()
    }

    /// Finds the peer `spec` names among the current members.
    pub async fn resolve_peer(&mut self, spec: &PeerSpec) -> Result<PeerInfo, AppError> {
        let peers = self.peers().await?;
        resolve(&peers, spec)
    }

    /// The first live peer, else the first peer (registration order): the demo's default.
    pub async fn first_peer(&mut self) -> Result<PeerInfo, AppError> {
        let peers = self.peers().await?;
        peers
            .iter()
            .find(|p| p.live)
            .or_else(|| peers.first())
            .cloned()
            .ok_or(AppError::NoPeers)
    }

    /// Seals `plaintext` to `to`'s on-chain key and submits it (the agent does both); returns
    /// once the transaction is included.
    pub async fn send(&mut self, to: MemberId, plaintext: &[u8]) -> Result<Sent, AppError> {
        if plaintext.len() > MAX_MESSAGE_BYTES {
            return Err(AppError::MessageTooLarge {
                len: plaintext.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let r = self
            .client
            .send_message(pb::SendMessageRequest {
                recipient_member_id: to.0.to_vec(),
                plaintext: plaintext.to_vec(),
            })
            .await
            .map_err(|s| {
                // The agent answers FAILED_PRECONDITION "recipient … is not a member in current
                // chain state" for an unknown id (it seals only to registered keys).
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message().contains("not a member")
                {
                    AppError::UnknownPeer(to.to_string())
                } else {
                    AppError::rpc("SendMessage", &s)
                }
            })?
            .into_inner();
        Ok(Sent {
            envelope_id: b32("envelope_id", &r.envelope_id)?,
            tx_hash: b32("tx_hash", &r.tx_hash)?,
        })
    }

    /// Messages addressed to this node: from now (`from_block` 0) or replayed from a block.
    /// Subscribe *before* triggering what you wait for, so nothing falls in between.
    pub async fn subscribe(&mut self, from_block: u64) -> Result<Inbox, AppError> {
        let stream = self
            .client
            .subscribe_messages(pb::SubscribeMessagesRequest { from_block })
            .await
            .map_err(|s| AppError::rpc("SubscribeMessages", &s))?
            .into_inner();
        Ok(Inbox { stream })
    }

    /// The raw CSK. Apps should not use it directly: see [`Agent::app_key`].
    pub async fn cluster_shared_key(&mut self) -> Result<pb::ClusterSharedKey, AppError> {
        self.client
            .get_cluster_shared_key(pb::GetClusterSharedKeyRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| {
                if s.code() == tonic::Code::Unavailable {
                    AppError::CskUnavailable(s.message().to_owned())
                } else {
                    AppError::rpc("GetClusterSharedKey", &s)
                }
            })
    }

    /// The application key for `info` (default [`APP_KEY_INFO`]), derived from the CSK with
    /// HKDF-SHA256 (see [`crate::appkey`]). The CSK itself is dropped right after.
    pub async fn app_key(&mut self, info: Option<&[u8]>) -> Result<AppKey, AppError> {
        let mut csk = self.cluster_shared_key().await?;
        let key = AppKey::derive(&csk.key, info.unwrap_or(APP_KEY_INFO));
        zeroize::Zeroize::zeroize(&mut csk.key);
        key
    }
}

/// Resolves `spec` against `peers` (pure, for tests).
pub fn resolve(peers: &[PeerInfo], spec: &PeerSpec) -> Result<PeerInfo, AppError> {
    let matches: Vec<&PeerInfo> = peers
        .iter()
        .filter(|p| match spec {
            PeerSpec::Id(id) => p.id == *id,
            PeerSpec::MeshIp(ip) => p.mesh_ip == *ip,
            PeerSpec::Prefix(h) => hex::encode(p.id.0).starts_with(h.as_str()),
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(AppError::UnknownPeer(spec.to_string())),
        many => Err(AppError::AmbiguousPeer {
            spec: spec.to_string(),
            matches: many.len(),
        }),
    }
}

/// A live stream of messages addressed to this node.
pub struct Inbox {
    stream: tonic::Streaming<pb::ReceivedMessage>,
}

impl Inbox {
    /// The next message, or an error if the stream broke (e.g. `ABORTED` when this subscriber
    /// lagged: resubscribe with `from_block`).
    pub async fn next(&mut self) -> Result<Received, AppError> {
        let m = self
            .stream
            .message()
            .await
            .map_err(|s| AppError::Stream {
                code: s.code(),
                message: s.message().to_owned(),
            })?
            .ok_or(AppError::StreamEnded("SubscribeMessages"))?;
        Ok(Received {
            sender: MemberId::from_slice("sender_member_id", &m.sender_member_id)?,
            envelope_id: b32("envelope_id", &m.envelope_id)?,
            plaintext: m.plaintext,
            block_number: m.block_number,
            tx_hash: b32("tx_hash", &m.tx_hash)?,
            from_cluster_owner: m.from_cluster_owner,
        })
    }

    /// [`Inbox::next`] with a deadline.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Received, AppError> {
        tokio::time::timeout(timeout, self.next())
            .await
            .map_err(|_| AppError::Timeout {
                waited: timeout,
                what: "a message".into(),
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8, ip: [u8; 4]) -> PeerInfo {
        let mut id = [n; 32];
        id[0] = 0xa0 | n;
        PeerInfo {
            id: MemberId(id),
            mesh_ip: Ipv4Addr::from(ip),
            live: true,
            last_heartbeat_unix_ms: 0,
            registered_at: 1,
        }
    }

    #[test]
    fn resolve_by_id_prefix_and_ip() {
        let peers = vec![peer(1, [10, 0, 0, 1]), peer(2, [10, 0, 0, 2])];
        let by_ip = resolve(&peers, &PeerSpec::MeshIp(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(by_ip.ok().map(|p| p.id), Some(peers[1].id));
        let by_id = resolve(&peers, &PeerSpec::Id(peers[0].id));
        assert_eq!(by_id.ok().map(|p| p.id), Some(peers[0].id));
        let by_prefix = resolve(&peers, &PeerSpec::Prefix("a10101".into()));
        assert_eq!(by_prefix.ok().map(|p| p.id), Some(peers[0].id));
        assert!(matches!(
            resolve(&peers, &PeerSpec::MeshIp(Ipv4Addr::new(10, 0, 0, 9))),
            Err(AppError::UnknownPeer(_))
        ));
        let twins = vec![peer(1, [10, 0, 0, 1]), peer(1, [10, 0, 0, 3])];
        assert!(matches!(
            resolve(&twins, &PeerSpec::Prefix("a101".into())),
            Err(AppError::AmbiguousPeer { matches: 2, .. })
        ));
    }

    #[test]
    fn received_text_escapes_control_characters() {
        let r = Received {
            sender: MemberId([0; 32]),
            envelope_id: [0; 32],
            plaintext: b"hi\x1b[2J\n".to_vec(),
            block_number: 1,
            tx_hash: [0; 32],
            from_cluster_owner: false,
        };
        assert_eq!(r.text(), "hi\\u{1b}[2J\\n");
    }
}
