//! The example's typed errors. Each variant says what the operator should check, because the
//! usual failures of an app next to the agent are deployment mistakes (socket not shared, wrong
//! user, agent still booting), not bugs.

use std::path::PathBuf;
use std::time::Duration;

use crate::echo::EchoError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "agent socket {} does not exist: is the agent running, and is its socket directory \
         shared with this app? (set AGENT_SOCKET or --socket)",
        .0.display()
    )]
    SocketMissing(PathBuf),
    #[error(
        "permission denied on agent socket {}: the socket is mode 0600, so run this app as the \
         agent's user",
        .0.display()
    )]
    SocketPermission(PathBuf),
    #[error(
        "nobody is serving agent socket {} (a stale socket file: the agent is not running)",
        .0.display()
    )]
    SocketRefused(PathBuf),
    #[error("cannot connect to agent socket {}: {source}", .path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC connection to agent socket {}: {detail}", .path.display())]
    Transport { path: PathBuf, detail: String },
    #[error("agent not healthy after {waited:?}: {last}")]
    NotHealthy { waited: Duration, last: String },
    #[error("the agent failed closed and will not become healthy: {0}")]
    AgentFailed(String),
    #[error("{op} failed ({code:?}): {message}")]
    Rpc {
        op: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("the cluster shared key is not available yet: {0}")]
    CskUnavailable(String),
    #[error("the agent sent malformed data: {0}")]
    BadAgentData(String),
    #[error("invalid member id {input:?}: {why}")]
    InvalidMemberId { input: String, why: String },
    #[error("unknown peer {0}: not a member in the agent's current view (see `peers`)")]
    UnknownPeer(String),
    #[error("peer {spec} is ambiguous: it matches {matches} members; give more of the id")]
    AmbiguousPeer { spec: String, matches: usize },
    #[error("this node has no peers yet")]
    NoPeers,
    #[error("this node is not registered yet (no member id / mesh IP): {0}")]
    NotRegistered(String),
    #[error("message of {len} bytes is too large; at most {max}")]
    MessageTooLarge { len: usize, max: usize },
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { waited: Duration, what: String },
    #[error("the agent closed the {0} stream")]
    StreamEnded(&'static str),
    #[error("the agent's stream failed ({code:?}): {message}")]
    Stream { code: tonic::Code, message: String },
    #[error(transparent)]
    Echo(#[from] EchoError),
}

impl AppError {
    /// A failed RPC, keeping the code and the agent's message but not tonic's verbose Display.
    pub fn rpc(op: &'static str, s: &tonic::Status) -> Self {
        AppError::Rpc {
            op,
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}
