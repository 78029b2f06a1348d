//! The app API: gRPC on the agent's unix socket (DESIGN §11).
//!
//! The app next to the agent reads mesh state, sends sealed messages through the chain and gets
//! the CSK here. Access control is the socket's file mode (0600: same user only), which is why the
//! socket is created by [`bind_socket`] and never left world-accessible.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use attestmesh_core::message;
use attestmesh_proto::agent as pb;
use attestmesh_proto::agent::agent_server::{Agent, AgentServer};
use tokio::net::UnixListener;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::ports::{HistoryError, MessageHistory, SubmitError, Submitter};
use crate::state::{InboundMessage, MemberView, Metrics, PeerEventKind, Shared};

/// Largest plaintext `SendMessage` accepts: the ciphertext goes into calldata and an event, so
/// size is gas; 32 KiB is far beyond control messages and far below block limits.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// App API failures, each with a fixed gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("cluster shared key not held yet")]
    CskNotHeld,
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("reading message history: {0}")]
    History(#[from] HistoryError),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::InvalidArgument(_) => Status::invalid_argument(msg),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ApiError::CskNotHeld => Status::unavailable(msg),
            ApiError::Submit(SubmitError::Rejected { .. }) => Status::failed_precondition(msg),
            ApiError::Submit(SubmitError::Unavailable(_)) => Status::unavailable(msg),
            ApiError::History(_) => Status::unavailable(msg),
        }
    }
}

fn b32(field: &str, bytes: &[u8]) -> Result<B256, ApiError> {
    if bytes.len() == 32 {
        Ok(B256::from_slice(bytes))
    } else {
        Err(ApiError::InvalidArgument(format!(
            "{field} must be 32 bytes, got {}",
            bytes.len()
        )))
    }
}

fn member_pb(m: &MemberView) -> pb::Member {
    pb::Member {
        member_id: m.id.to_vec(),
        member_contract: m.contract.to_vec(),
        x_pub_key: m.x_pub.to_vec(),
        wg_pub_key: m.wg_pub.to_vec(),
        ed_pub_key: m.ed_pub.to_vec(),
        mesh_ip: m.mesh_ip.to_string(),
        registered_at: m.registered_at,
    }
}

fn message_pb(m: &InboundMessage) -> pb::ReceivedMessage {
    pb::ReceivedMessage {
        sender_member_id: m.sender.to_vec(),
        envelope_id: m.envelope_id.to_vec(),
        plaintext: m.plaintext.clone(),
        block_number: m.block_number,
        tx_hash: m.tx_hash.to_vec(),
        from_cluster_owner: m.from_cluster_owner,
    }
}

/// The `Agent` service implementation.
pub struct AgentApi {
    shared: Arc<Shared>,
    submitter: Arc<dyn Submitter>,
    history: Arc<dyn MessageHistory>,
}

impl AgentApi {
    pub fn new(
        shared: Arc<Shared>,
        submitter: Arc<dyn Submitter>,
        history: Arc<dyn MessageHistory>,
    ) -> Self {
        Self {
            shared,
            submitter,
            history,
        }
    }

    pub fn into_server(self) -> AgentServer<Self> {
        AgentServer::new(self)
    }

    /// Seals and submits; separate from the trait method so errors stay typed until the edge.
    async fn send_message(
        &self,
        req: pb::SendMessageRequest,
    ) -> Result<pb::SendMessageResponse, ApiError> {
        let recipient = b32("recipient_member_id", &req.recipient_member_id)?;
        if req.plaintext.len() > MAX_MESSAGE_BYTES {
            return Err(ApiError::InvalidArgument(format!(
                "plaintext is {} bytes; at most {MAX_MESSAGE_BYTES}",
                req.plaintext.len()
            )));
        }
        let me = self.shared.me().ok_or_else(|| {
            ApiError::FailedPrecondition("this node is not registered yet".into())
        })?;
        let cluster = self
            .shared
            .cluster()
            .ok_or_else(|| ApiError::FailedPrecondition("cluster state not read yet".into()))?;
        // The recipient's key comes from chain state only (invariant 8: sealed to the
        // registered key, never to one an app or peer supplies).
        let member = cluster.member(&recipient).ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "recipient {recipient} is not a member in current chain state"
            ))
        })?;
        let mut envelope = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut envelope);
        let envelope_id = B256::from(envelope);
        // Bound to the event it will be carried in (sender = our member id, which the chain
        // derives from msg.sender), so nobody can re-send these bytes as their own (§3.3).
        let bound = message::Envelope {
            cluster: cluster.cluster,
            sender: me.id,
            recipient,
            envelope_id,
        };
        let ciphertext =
            message::seal(&member.x_pub, &bound, &req.plaintext, &mut rand_core::OsRng).map_err(
                |e| {
                    ApiError::FailedPrecondition(format!(
                        "recipient's on-chain x25519 key is unusable: {e}"
                    ))
                },
            )?;
        let call = send_calldata(recipient, envelope_id, ciphertext);
        let landed = self.submitter.submit(call).await.inspect_err(|e| {
            Metrics::inc(&self.shared.metrics.submissions_failed);
            tracing::warn!(%recipient, error = %e, "SendMessage submission failed");
        })?;
        Metrics::inc(&self.shared.metrics.messages_sent);
        tracing::info!(%recipient, %envelope_id, tx = %landed.tx_hash, "message sent");
        Ok(pb::SendMessageResponse {
            envelope_id: envelope_id.to_vec(),
            tx_hash: landed.tx_hash.to_vec(),
        })
    }
}

/// `MessageFacet.send(recipient, envelopeId, ciphertext)` calldata.
pub fn send_calldata(recipient: B256, envelope_id: B256, ciphertext: Vec<u8>) -> Vec<u8> {
    use alloy_sol_types::SolCall as _;
    attestmesh_chain::bindings::IMessageFacet::sendCall {
        recipientMemberId: recipient,
        envelopeId: envelope_id,
        ciphertext: ciphertext.into(),
    }
    .abi_encode()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Agent for AgentApi {
    async fn get_mesh_status(
        &self,
        _: Request<pb::GetMeshStatusRequest>,
    ) -> Result<Response<pb::MeshStatus>, Status> {
        let s = self.shared.status();
        let cluster = self
            .shared
            .cluster()
            .map(|c| c.cluster)
            .unwrap_or(Address::ZERO);
        Ok(Response::new(pb::MeshStatus {
            phase: s.phase.to_proto() as i32,
            first_converged: s.first_converged,
            csk_acquired: s.csk_acquired,
            live_peers: s.live_peers,
            member_count: s.member_count,
            cluster: if cluster.is_zero() {
                Vec::new()
            } else {
                cluster.to_vec()
            },
            chain_head: s.chain_head,
            converged: s.converged,
            error: s.fatal.unwrap_or_default(),
        }))
    }

    async fn get_self(
        &self,
        _: Request<pb::GetSelfRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let me = self.shared.me().ok_or_else(|| {
            Status::from(ApiError::FailedPrecondition(
                "this node is not registered yet".into(),
            ))
        })?;
        Ok(Response::new(member_pb(&me)))
    }

    async fn list_peers(
        &self,
        _: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        let me = self.shared.me().map(|m| m.id);
        let live = self.shared.liveness();
        let peers = self
            .shared
            .cluster()
            .map(|c| {
                c.members
                    .iter()
                    .filter(|m| Some(m.id) != me)
                    .map(|m| {
                        let l = live.get(&m.id).copied().unwrap_or_default();
                        pb::Peer {
                            member: Some(member_pb(m)),
                            live: l.live,
                            last_heartbeat_unix_ms: l.last_heartbeat_unix_ms,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ListPeersResponse { peers }))
    }

    type SubscribePeerEventsStream = BoxStream<pb::PeerEvent>;

    async fn subscribe_peer_events(
        &self,
        _: Request<pb::SubscribePeerEventsRequest>,
    ) -> Result<Response<Self::SubscribePeerEventsStream>, Status> {
        let mut rx = self.shared.subscribe_peer_events();
        let stream = async_stream(move |tx| async move {
            loop {
                let item = match rx.recv().await {
                    Ok(e) => Ok(pb::PeerEvent {
                        kind: match e.kind {
                            PeerEventKind::Up => pb::peer_event::Kind::Up,
                            PeerEventKind::Down => pb::peer_event::Kind::Down,
                            PeerEventKind::Joined => pb::peer_event::Kind::Joined,
                        } as i32,
                        member_id: e.member_id.to_vec(),
                        unix_ms: e.unix_ms,
                    }),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        Err(Status::aborted(format!(
                            "subscriber fell {n} events behind; resubscribe and re-read ListPeers"
                        )))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        Ok(Response::new(self.send_message(req.into_inner()).await?))
    }

    type SubscribeMessagesStream = BoxStream<pb::ReceivedMessage>;

    async fn subscribe_messages(
        &self,
        req: Request<pb::SubscribeMessagesRequest>,
    ) -> Result<Response<Self::SubscribeMessagesStream>, Status> {
        let from = req.into_inner().from_block;
        // Subscribe to live delivery *before* reading history so nothing falls between the two;
        // duplicates are removed by envelope id below.
        let mut rx = self.shared.subscribe_messages();
        let replay = if from > 0 {
            self.history
                .messages_since(from)
                .await
                .map_err(ApiError::History)?
        } else {
            Vec::new()
        };
        let stream = async_stream(move |tx| async move {
            let mut seen: HashSet<(B256, B256)> = HashSet::new();
            for m in &replay {
                seen.insert((m.sender, m.envelope_id));
                if tx.send(Ok(message_pb(m))).await.is_err() {
                    return;
                }
            }
            loop {
                let item = match rx.recv().await {
                    Ok(m) => {
                        if from > 0 && m.block_number < from {
                            continue;
                        }
                        if !seen.is_empty() && seen.contains(&(m.sender, m.envelope_id)) {
                            continue;
                        }
                        Ok(message_pb(&m))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        Err(Status::aborted(format!(
                            "subscriber fell {n} messages behind; resubscribe with from_block"
                        )))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_cluster_shared_key(
        &self,
        _: Request<pb::GetClusterSharedKeyRequest>,
    ) -> Result<Response<pb::ClusterSharedKey>, Status> {
        let key = self.shared.csk().ok_or(ApiError::CskNotHeld)?;
        Ok(Response::new(pb::ClusterSharedKey {
            key: key.as_bytes().to_vec(),
            commitment: key.commitment().to_vec(),
        }))
    }
}

/// Runs `f` as a task feeding a channel and returns the channel as a stream; the task ends when
/// the client goes away (the send fails).
fn async_stream<T, F, Fut>(f: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Socket setup failures.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("app API socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("app API socket {0} is served by another live process")]
    InUse(PathBuf),
}

/// Binds the app socket with mode 0600, creating its directory if needed. A stale socket file
/// (nobody accepting) is replaced; a live one is refused, so two agents never fight over it.
///
/// `bind(2)` creates the socket with the process umask's mode (0755 under the usual 022: anyone
/// may connect), so binding at the public path and `chmod`ing afterwards leaves a window. The
/// socket is therefore bound inside a fresh private directory (0700, ours alone), restricted
/// there, and only then renamed to its path: it is never reachable with a looser mode. This
/// avoids changing the umask, which is process-wide and would also tighten files other threads
/// create meanwhile.
pub fn bind_socket(path: &Path) -> Result<UnixListener, SocketError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let io = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    // A fresh name: `create` (not `create_all`) fails on anything already there, so nobody
    // can have prepared the directory or a link in its place.
    let private = dir.join(format!(
        ".agent-sock-bind-{:016x}",
        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io)?;
    let staged = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result.map_err(io)
}

/// Serves the app API on `listener` until `shutdown`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    api: AgentApi,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let result = tonic::transport::Server::builder()
        .add_service(api.into_server())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove the app socket");
    }
    result
}
