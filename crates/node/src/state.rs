//! The agent's shared state: phase, health gate, chain view, liveness, CSK, and the event fan-outs
//! the app API streams from.
//!
//! Every task of the runtime writes here and every interface (HTTP, app API, PeerControl) only
//! reads, so the interfaces never need to know how the runtime is structured. `watch` channels
//! carry "current value" state (readers always see the latest, never a backlog); `broadcast`
//! carries events (a slow subscriber lags and is told so, it never blocks the agent).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use alloy_primitives::{Address, B256};
use attestmesh_core::keys::SymmetricKey;
use attestmesh_core::mesh::MeshCidr;
use tokio::sync::{broadcast, watch};

/// Boot phases, in order (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Phase {
    #[default]
    Booting,
    Registering,
    Subscribing,
    WaitingPeers,
    WgConfiguring,
    PullingCsk,
    Heartbeating,
    Healthy,
}

impl Phase {
    /// The wire name used by `/healthz`, logs and the devnet's status table.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Booting => "booting",
            Phase::Registering => "registering",
            Phase::Subscribing => "subscribing",
            Phase::WaitingPeers => "waiting-peers",
            Phase::WgConfiguring => "wg-configuring",
            Phase::PullingCsk => "pulling-csk",
            Phase::Heartbeating => "heartbeating",
            Phase::Healthy => "healthy",
        }
    }

    pub fn to_proto(self) -> attestmesh_proto::agent::Phase {
        use attestmesh_proto::agent::Phase as P;
        match self {
            Phase::Booting => P::Booting,
            Phase::Registering => P::Registering,
            Phase::Subscribing => P::Subscribing,
            Phase::WaitingPeers => P::WaitingPeers,
            Phase::WgConfiguring => P::WgConfiguring,
            Phase::PullingCsk => P::PullingCsk,
            Phase::Heartbeating => P::Heartbeating,
            Phase::Healthy => P::Healthy,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health-relevant summary, published on every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Furthest phase the runtime has reached; `Healthy` is derived (see [`Status::settle`]).
    pub phase: Phase,
    /// Latches true the first time the mesh converges in this process (DESIGN §5.5).
    pub first_converged: bool,
    /// Whether the mesh is converged right now.
    pub converged: bool,
    pub csk_acquired: bool,
    pub live_peers: u32,
    pub member_count: u32,
    /// Last block the follower processed.
    pub chain_head: u64,
    /// Set when the agent failed closed (lost state, wrong chain): never healthy again.
    pub fatal: Option<String>,
}

impl Status {
    /// Applies the health gate: `healthy` iff the runtime reached heartbeating, the CSK is held,
    /// the mesh converged at least once, and nothing fatal happened. Later peer flaps lower
    /// `live_peers`, not the gate.
    fn settle(&mut self) {
        if self.converged {
            self.first_converged = true;
        }
        if self.fatal.is_none()
            && self.phase >= Phase::Heartbeating
            && self.csk_acquired
            && self.first_converged
        {
            self.phase = Phase::Healthy;
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.fatal.is_none() && self.phase == Phase::Healthy
    }
}

/// One member as read from the chain, plus what the agent derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: B256,
    pub contract: Address,
    pub attestor_id: B256,
    pub x_pub: B256,
    pub wg_pub: B256,
    pub ed_pub: B256,
    pub mesh_ip: Ipv4Addr,
    pub registered_at: u64,
    /// False when an earlier member already owns this mesh IP (DESIGN §3.2) or WireGuard key, or
    /// the key is a low-order point (`mesh::refusals`): the agent configures no peer for this
    /// member, ignores its heartbeats and serves it no CSK.
    pub routable: bool,
}

/// Chain state of the cluster at the confirmed block, read with views (DESIGN §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub cluster: Address,
    pub cidr: MeshCidr,
    /// Registration order; index 0 is the CSK originator.
    pub members: Vec<MemberView>,
    /// `cskCommitment()`; zero until the originator committed.
    pub commitment: B256,
    /// Block the view was read at: the confirmed block, head − CONFIRMATIONS (DESIGN §9.1).
    pub block: u64,
}

impl ClusterView {
    pub fn member(&self, id: &B256) -> Option<&MemberView> {
        self.members.iter().find(|m| &m.id == id)
    }

    pub fn originator(&self) -> Option<&MemberView> {
        self.members.first()
    }
}

/// Peer up/down/joined events for `SubscribePeerEvents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEventKind {
    Up,
    Down,
    Joined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerEvent {
    pub kind: PeerEventKind,
    pub member_id: B256,
    pub unix_ms: u64,
}

/// A message addressed to this node, already opened and attributed (DESIGN §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub sender: B256,
    pub envelope_id: B256,
    pub plaintext: Vec<u8>,
    pub block_number: u64,
    pub tx_hash: B256,
    pub from_cluster_owner: bool,
}

/// Per-peer liveness as last reported by the heartbeat task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerLiveness {
    pub live: bool,
    pub last_heartbeat_unix_ms: u64,
}

/// One WireGuard peer's counters as the device last reported them (refreshed every few seconds by
/// the reconcile task), for the per-peer series on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WgPeerStats {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// When the last handshake completed (wall clock), `None` before the first.
    pub last_handshake_unix_ms: Option<u64>,
    /// Which path carries the tunnel: the gateway's TCP bridge today (DESIGN §6.3).
    pub path: PeerPath,
}

/// How a peer's WireGuard datagrams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPath {
    Bridge,
}

impl PeerPath {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerPath::Bridge => "bridge",
        }
    }
}

/// Monotonic counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_accepted: AtomicU64,
    pub heartbeats_dropped: AtomicU64,
    pub chain_polls: AtomicU64,
    pub chain_poll_errors: AtomicU64,
    pub reorgs: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub messages_undecryptable: AtomicU64,
    /// Opened but not bound to their event (re-sent copies, unversioned plaintexts): dropped.
    pub messages_misbound: AtomicU64,
    pub messages_sent: AtomicU64,
    pub submissions_failed: AtomicU64,
    pub csk_bogus_answers: AtomicU64,
    pub csk_requests_served: AtomicU64,
    pub csk_requests_refused: AtomicU64,
    pub mesh_ip_collisions: AtomicU64,
    /// Members refused for a WireGuard key an earlier member holds, or a low-order key.
    pub wg_key_refusals: AtomicU64,
    /// Verified Indexer wake-ups the follower acted on (after coalescing).
    pub indexer_wakeups: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Capacity of the event fan-outs; a subscriber further behind is told it lagged.
const EVENT_CAPACITY: usize = 1024;

/// Everything the interfaces read and the runtime writes.
#[derive(Debug)]
pub struct Shared {
    status: watch::Sender<Status>,
    me: watch::Sender<Option<MemberView>>,
    cluster: watch::Sender<Option<Arc<ClusterView>>>,
    csk: watch::Sender<Option<SymmetricKey>>,
    liveness: Mutex<HashMap<B256, PeerLiveness>>,
    wg_peers: Mutex<HashMap<B256, WgPeerStats>>,
    peer_events: broadcast::Sender<PeerEvent>,
    messages: broadcast::Sender<InboundMessage>,
    /// The Indexer intake's counters, once it runs (INDEXER_REGISTRY set); owned by the intake.
    intake: std::sync::OnceLock<Arc<crate::intake::IntakeStats>>,
    pub metrics: Metrics,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    pub fn new() -> Self {
        Self {
            status: watch::channel(Status::default()).0,
            me: watch::channel(None).0,
            cluster: watch::channel(None).0,
            csk: watch::channel(None).0,
            liveness: Mutex::new(HashMap::new()),
            wg_peers: Mutex::new(HashMap::new()),
            peer_events: broadcast::channel(EVENT_CAPACITY).0,
            messages: broadcast::channel(EVENT_CAPACITY).0,
            intake: std::sync::OnceLock::new(),
            metrics: Metrics::default(),
        }
    }

    /// Publishes the intake's counters for `/metrics`; the first call wins (one intake per agent).
    pub fn set_intake_stats(&self, stats: Arc<crate::intake::IntakeStats>) {
        let _ = self.intake.set(stats);
    }

    pub fn intake_stats(&self) -> Option<Arc<crate::intake::IntakeStats>> {
        self.intake.get().cloned()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Mutates the status and re-applies the health gate.
    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(|s| {
            let before = s.phase;
            f(s);
            s.settle();
            if s.phase != before {
                tracing::info!(phase = %s.phase, "phase");
            }
        });
    }

    /// Advances the phase; never moves it backwards (a later step re-entering an earlier phase
    /// is a bug, and `/healthz` consumers rely on monotonic progress).
    pub fn advance(&self, phase: Phase) {
        self.update_status(|s| {
            if phase > s.phase {
                s.phase = phase;
            }
        });
    }

    /// Fails closed: unhealthy from now on, with the reason on `/healthz`.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.update_status(|s| s.fatal = Some(reason));
    }

    pub fn me(&self) -> Option<MemberView> {
        self.me.borrow().clone()
    }

    pub fn set_me(&self, me: MemberView) {
        self.me.send_replace(Some(me));
    }

    pub fn cluster(&self) -> Option<Arc<ClusterView>> {
        self.cluster.borrow().clone()
    }

    pub fn watch_cluster(&self) -> watch::Receiver<Option<Arc<ClusterView>>> {
        self.cluster.subscribe()
    }

    /// Publishes a new chain view and emits `Joined` for members not in the previous one.
    pub fn set_cluster(&self, view: ClusterView, now_ms: u64) {
        let view = Arc::new(view);
        let prev = self.cluster.send_replace(Some(Arc::clone(&view)));
        let me = self.me().map(|m| m.id);
        if let Some(prev) = prev {
            for m in &view.members {
                if Some(m.id) != me && prev.member(&m.id).is_none() {
                    self.emit(PeerEvent {
                        kind: PeerEventKind::Joined,
                        member_id: m.id,
                        unix_ms: now_ms,
                    });
                }
            }
        }
        self.update_status(|s| s.member_count = view.members.len() as u32);
    }

    pub fn csk(&self) -> Option<SymmetricKey> {
        self.csk.borrow().clone()
    }

    pub fn watch_csk(&self) -> watch::Receiver<Option<SymmetricKey>> {
        self.csk.subscribe()
    }

    /// Stores the verified CSK. Callers must have checked it against the on-chain commitment.
    pub fn set_csk(&self, key: SymmetricKey) {
        self.csk.send_replace(Some(key));
        self.update_status(|s| s.csk_acquired = true);
    }

    /// Forgets a CSK the current chain view no longer commits to (DESIGN §8: a reorg replaced
    /// the commitment). The app API answers `UNAVAILABLE` and PeerControl serves nothing until
    /// the CSK task holds a verified key again.
    pub fn drop_csk(&self) {
        self.csk.send_replace(None);
        self.update_status(|s| s.csk_acquired = false);
    }

    pub fn liveness(&self) -> HashMap<B256, PeerLiveness> {
        self.liveness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The WireGuard counters of every configured peer, by member id.
    pub fn wg_peers(&self) -> HashMap<B256, WgPeerStats> {
        self.wg_peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the WireGuard counters (the reconcile task reads them from the device).
    pub fn set_wg_peers(&self, table: HashMap<B256, WgPeerStats>) {
        *self.wg_peers.lock().unwrap_or_else(PoisonError::into_inner) = table;
    }

    /// Replaces the liveness table (the heartbeat task owns the truth and republishes it).
    pub fn set_liveness(&self, table: HashMap<B256, PeerLiveness>, converged: bool) {
        let live = table.values().filter(|p| p.live).count() as u32;
        *self.liveness.lock().unwrap_or_else(PoisonError::into_inner) = table;
        self.update_status(|s| {
            s.live_peers = live;
            s.converged = converged;
        });
    }

    pub fn emit(&self, event: PeerEvent) {
        // No subscribers is normal; the send error only says so.
        let _ = self.peer_events.send(event);
    }

    pub fn subscribe_peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.peer_events.subscribe()
    }

    pub fn deliver(&self, msg: InboundMessage) {
        Metrics::inc(&self.metrics.messages_delivered);
        let _ = self.messages.send(msg);
    }

    pub fn subscribe_messages(&self) -> broadcast::Receiver<InboundMessage> {
        self.messages.subscribe()
    }
}

/// Wall-clock unix milliseconds (heartbeats carry wall-clock time, DESIGN §7).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_ordered_and_named() {
        assert!(Phase::Booting < Phase::Registering);
        assert!(Phase::Heartbeating < Phase::Healthy);
        assert_eq!(Phase::WaitingPeers.as_str(), "waiting-peers");
        assert_eq!(Phase::PullingCsk.as_str(), "pulling-csk");
    }

    #[test]
    fn healthy_needs_csk_and_convergence_and_latches() {
        let s = Shared::new();
        s.advance(Phase::Heartbeating);
        assert_eq!(s.status().phase, Phase::Heartbeating);
        s.set_liveness(HashMap::new(), true);
        assert!(s.status().first_converged);
        assert!(!s.status().is_healthy(), "no CSK yet");
        s.set_csk(SymmetricKey::from_bytes([1; 32]));
        assert!(s.status().is_healthy());
        // A flap lowers live_peers/converged but not the gate.
        s.set_liveness(HashMap::new(), false);
        let st = s.status();
        assert!(st.is_healthy() && st.first_converged && !st.converged);
        // Phases never go backwards.
        s.advance(Phase::Registering);
        assert_eq!(s.status().phase, Phase::Healthy);
        s.fail("lost state");
        assert!(!s.status().is_healthy());
    }

    #[test]
    fn convergence_before_heartbeating_still_latches() {
        let s = Shared::new();
        s.set_csk(SymmetricKey::from_bytes([1; 32]));
        s.set_liveness(HashMap::new(), true);
        assert_eq!(s.status().phase, Phase::Booting);
        s.advance(Phase::Heartbeating);
        assert!(s.status().is_healthy());
    }
}
