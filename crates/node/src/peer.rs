//! PeerControl: agent-to-agent gRPC on `<mesh IP>:50051`, inside WireGuard only (DESIGN §8).
//!
//! The server hands the CSK only to a current member, only when the request arrives from that
//! member's mesh IP, and only sealed to that member's on-chain x25519 key (invariant 7). The
//! source-IP check is meaningful because the listener is bound to the mesh address: packets
//! reach it only through WireGuard, which admits a source IP only from the peer whose on-chain key
//! authenticated it (allowed-ips = that member's /32). The seal makes a mistaken answer useless
//! to anyone but the named member anyway. It serves only a key whose hash is the commitment of
//! the current (confirmed) chain view.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use attestmesh_core::keys::{SymmetricKey, X25519Secret};
use attestmesh_core::sealed;
use attestmesh_proto::peer as pb;
use attestmesh_proto::peer::peer_control_client::PeerControlClient;
use attestmesh_proto::peer::peer_control_server::{PeerControl, PeerControlServer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::state::{Metrics, Shared};

/// Why a CSK request was refused; each maps to one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("requester_member_id must be 32 bytes, got {0}")]
    BadRequesterId(usize),
    #[error("requester {0} is not a current member")]
    NotMember(B256),
    #[error("requester {id} must call from its mesh IP {expected}, not {got}")]
    WrongSource {
        id: B256,
        expected: IpAddr,
        got: IpAddr,
    },
    #[error("requester {0} shares its mesh IP with an earlier member and is not routed")]
    Unroutable(B256),
    #[error("request carries no source address")]
    NoSource,
    #[error("this node does not hold the cluster shared key yet")]
    CskNotHeld,
    /// The key we hold is not the one the chain commits to now (a reorg replaced the
    /// commitment, or it was read from a view that no longer holds): handing it out would give
    /// the requester a key the cluster does not use. The node drops it and re-pulls.
    #[error(
        "the cluster shared key held here hashes to {held}, not to the current on-chain commitment {on_chain}; refusing to serve it until re-acquired"
    )]
    CskNotCommitted { held: B256, on_chain: B256 },
    #[error("sealing to the requester's on-chain key failed: {0}")]
    Seal(String),
}

impl From<PeerRefusal> for Status {
    fn from(e: PeerRefusal) -> Status {
        let msg = e.to_string();
        match e {
            PeerRefusal::BadRequesterId(_) => Status::invalid_argument(msg),
            PeerRefusal::NotMember(_)
            | PeerRefusal::WrongSource { .. }
            | PeerRefusal::Unroutable(_)
            | PeerRefusal::NoSource => Status::permission_denied(msg),
            PeerRefusal::CskNotHeld => Status::unavailable(msg),
            PeerRefusal::Seal(_) | PeerRefusal::CskNotCommitted { .. } => {
                Status::failed_precondition(msg)
            }
        }
    }
}

/// The PeerControl service.
pub struct PeerControlService {
    shared: Arc<Shared>,
}

impl PeerControlService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The decision, separate from gRPC plumbing so it is testable with any source address.
    pub fn answer(&self, requester: &[u8], source: Option<IpAddr>) -> Result<Vec<u8>, PeerRefusal> {
        if requester.len() != 32 {
            return Err(PeerRefusal::BadRequesterId(requester.len()));
        }
        let id = B256::from_slice(requester);
        let source = source.ok_or(PeerRefusal::NoSource)?;
        let cluster = self.shared.cluster().ok_or(PeerRefusal::NotMember(id))?;
        let member = cluster.member(&id).ok_or(PeerRefusal::NotMember(id))?;
        if !member.routable {
            return Err(PeerRefusal::Unroutable(id));
        }
        let expected = IpAddr::V4(member.mesh_ip);
        // An IPv4 peer may show up as v4-mapped v6 on a dual-stack socket.
        let got = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(source),
            v4 => v4,
        };
        if got != expected {
            return Err(PeerRefusal::WrongSource { id, expected, got });
        }
        let csk = self.shared.csk().ok_or(PeerRefusal::CskNotHeld)?;
        // Serve only the key the current view commits to (DESIGN §8): the requester would
        // reject anything else anyway, but a node must not spread a key the chain disowns.
        let held = csk.commitment();
        if held != cluster.commitment {
            return Err(PeerRefusal::CskNotCommitted {
                held,
                on_chain: cluster.commitment,
            });
        }
        sealed::seal(&member.x_pub, csk.as_bytes(), &mut rand_core::OsRng)
            .map_err(|e| PeerRefusal::Seal(e.to_string()))
    }
}

#[tonic::async_trait]
impl PeerControl for PeerControlService {
    async fn request_cluster_shared_key(
        &self,
        req: Request<pb::RequestClusterSharedKeyRequest>,
    ) -> Result<Response<pb::RequestClusterSharedKeyResponse>, Status> {
        let source = req.remote_addr().map(|a| a.ip());
        let requester = req.into_inner().requester_member_id;
        match self.answer(&requester, source) {
            Ok(sealed_csk) => {
                Metrics::inc(&self.shared.metrics.csk_requests_served);
                tracing::info!(requester = %alloy_primitives::hex::encode(&requester), "served the CSK");
                Ok(Response::new(pb::RequestClusterSharedKeyResponse {
                    sealed_csk,
                }))
            }
            Err(refusal) => {
                Metrics::inc(&self.shared.metrics.csk_requests_refused);
                tracing::warn!(?source, reason = %refusal, "refused a CSK request");
                Err(refusal.into())
            }
        }
    }
}

/// Serves PeerControl on `listener` (bound to the mesh IP) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(PeerControlServer::new(PeerControlService::new(shared)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Deadlines of one CSK request (DESIGN §8: connect 1 s, call 2 s).
#[derive(Debug, Clone, Copy)]
pub struct PullTimeouts {
    pub connect: Duration,
    pub call: Duration,
}

impl Default for PullTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(1),
            call: Duration::from_secs(2),
        }
    }
}

/// Why one candidate's answer was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("{0} refused: {1}")]
    Refused(SocketAddr, Status),
    /// A bogus answer (does not open, wrong length, or fails the commitment check): the
    /// invariant-4 attack. Counted and logged by the caller.
    #[error("{addr} served a bogus CSK: {reason}")]
    Bogus {
        addr: SocketAddr,
        reason: attestmesh_core::csk::ServedCskError,
    },
}

/// Asks one peer for the CSK and accepts it only if `keccak256(csk) == commitment` (invariant
/// 4). `local` pins the source address (the mesh IP; loopback aliases in tests).
pub async fn request_csk(
    peer: SocketAddr,
    local: Option<IpAddr>,
    requester: B256,
    my_x25519: &X25519Secret,
    commitment: B256,
    timeouts: PullTimeouts,
) -> Result<SymmetricKey, PullError> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{peer}"))
        .map_err(|e| PullError::Connect(peer, e.to_string()))?
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.call)
        .local_address(local);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| PullError::Connect(peer, e.to_string()))?;
    let mut client = PeerControlClient::new(channel);
    let resp = tokio::time::timeout(
        timeouts.call,
        client.request_cluster_shared_key(pb::RequestClusterSharedKeyRequest {
            requester_member_id: requester.to_vec(),
        }),
    )
    .await
    .map_err(|_| PullError::Refused(peer, Status::deadline_exceeded("call deadline")))?
    .map_err(|s| PullError::Refused(peer, s))?
    .into_inner();
    attestmesh_core::csk::verify_served(my_x25519, &resp.sealed_csk, Some(&commitment))
        .map_err(|reason| PullError::Bogus { addr: peer, reason })
}
