//! Liveness and convergence as a sans-IO state machine (DESIGN §7, invariant 3).
//!
//! No sockets, no clock: the I/O shell feeds received datagrams to [`Liveness::on_heartbeat`],
//! sends what [`Liveness::make_heartbeat`] returns to every peer each interval, and calls
//! [`Liveness::poll`] on every tick (and at [`Liveness::poll_timeout`]) to collect up/down events.
//! `now` is always wall-clock unix milliseconds, because the heartbeat carries a unix timestamp
//! and the freshness check compares it with the receiver's clock.
//!
//! Membership, Ed25519 keys and mesh IPs come only from chain state ([`Liveness::set_members`]);
//! nothing learned from a packet ever adds a peer (invariant 2).
//!
//! ## Sequence numbers, restarts and clock jumps
//! `seq` must exceed the last one accepted from that sender, and every heartbeat binds it to its
//! own signed timestamp: `unix_ms ≤ seq ≤ unix_ms + MAX_SEQ_LEAD_MS`
//! ([`HeartbeatFields::seq_in_window`]), while `unix_ms` must be within
//! [`Config::max_skew_ms`] of the receiver's clock. So a stored `seq` is never more than one
//! lead plus one window ahead of the receiver's clock, whatever the sender's clock did.
//!
//! The sender picks `seq = clamp(previous + 1, now, now + MAX_SEQ_LEAD_MS)`, and
//! `now + MAX_SEQ_LEAD_MS` when it has no previous value (fresh start, nothing persisted):
//! - it follows the wall clock, so a restarted node starts above anything it sent before with a
//!   clock that did not go back, and is accepted at once;
//! - after the clock jumps back by less than the lead, `previous + 1` still fits and nothing
//!   stalls; after a bigger jump back, `seq` drops to `now + lead`, which is above anything a
//!   peer accepted (those heartbeats carried a timestamp within the window of real time),
//!   because a heartbeat sent while the clock was far ahead failed every peer's freshness check
//!   and raised no stored `seq`;
//! - at worst (a clock set back across the edge of the window), peers refuse it until its clock
//!   passes the `seq` they hold: at most one lead plus one window, never hours.
//!
//! A replayed packet carries a `seq` at or below one already accepted and is refused; after the
//! *receiver* restarts (and forgets the stored `seq`) the freshness window still refuses any
//! capture older than the window.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use alloy_primitives::B256;

use crate::heartbeat::{
    self, HEARTBEAT_LEN, HeartbeatError, HeartbeatFields, MAX_SEQ_LEAD_MS, VerifiedHeartbeat,
};
use crate::keys::Ed25519Secret;

/// A peer is live iff a valid heartbeat arrived within this many intervals (plus
/// [`Config::grace_ms`]).
pub const LIVE_INTERVALS: u64 = 3;

/// Chain-state facts about one member that liveness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberInfo {
    /// On-chain `edPubKey`; the only key a heartbeat from this member may verify against.
    pub ed_pub: B256,
    /// On-chain-derived mesh IP; a heartbeat must arrive from it.
    pub mesh_ip: Ipv4Addr,
}

/// Tunables. Defaults match DESIGN §7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub interval_ms: u64,
    /// Slack added to the [`LIVE_INTERVALS`]-interval window. Heartbeats are sent exactly one
    /// interval apart but arrive with jitter; without slack, two lost packets plus a few ms of
    /// jitter would already flap a peer down, whereas the intent of "3 intervals" is that three
    /// consecutive losses are needed. Half an interval keeps detection within 3 intervals + 1.
    pub grace_ms: u64,
    /// Maximum |sender clock − receiver clock| accepted. Bounds replays after a receiver restart
    /// and, with [`MAX_SEQ_LEAD_MS`], how far an accepted `seq` can run ahead of real time.
    pub max_skew_ms: u64,
}

impl Config {
    pub fn with_interval(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            grace_ms: interval_ms / 2,
            max_skew_ms: MAX_SEQ_LEAD_MS.max(interval_ms * 2 * LIVE_INTERVALS),
        }
    }

    fn live_window(&self) -> u64 {
        self.interval_ms * LIVE_INTERVALS + self.grace_ms
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::with_interval(2_000)
    }
}

/// Why a heartbeat was dropped. Every variant is a normal, expected outcome of hostile or stale
/// input: the shell counts and logs them, it never stops on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("malformed heartbeat: {0}")]
    Malformed(HeartbeatError),
    #[error("heartbeat claims to come from this node")]
    FromSelf,
    #[error("sender {0} is not a member in chain state")]
    NotMember(B256),
    #[error("signature does not verify against the sender's on-chain edPubKey")]
    BadSignature,
    #[error("heartbeat from {got}, but the sender's mesh IP is {expected}")]
    WrongSourceIp { expected: Ipv4Addr, got: Ipv4Addr },
    #[error(
        "seq {seq} is not within [unix_ms, unix_ms + {MAX_SEQ_LEAD_MS}] of its own timestamp {unix_ms}"
    )]
    SeqOutOfWindow { seq: u64, unix_ms: u64 },
    #[error("seq {got} is not above the last accepted {last} (replay or reorder)")]
    StaleSeq { last: u64, got: u64 },
    #[error("sender clock {sender_ms} ms is more than the allowed skew from ours {now_ms} ms")]
    ClockSkew { sender_ms: u64, now_ms: u64 },
}

/// A heartbeat that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub peer: B256,
    /// The peer was not live before this heartbeat; a `PeerUp` event is queued for [`Liveness::poll`].
    pub became_live: bool,
}

/// Why a peer went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// No valid heartbeat within [`LIVE_INTERVALS`] intervals.
    Timeout,
    /// It left chain state, or its on-chain key or mesh IP changed.
    MembershipChanged,
}

/// Transitions reported to the app API, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    PeerUp(B256),
    PeerDown(B256, DownReason),
    Converged,
    Diverged,
}

#[derive(Debug, Clone)]
struct Peer {
    info: MemberInfo,
    last_seq: Option<u64>,
    last_seen_ms: u64,
    live: bool,
    reported_view: Option<(u32, B256)>,
}

/// One node's liveness view.
#[derive(Debug)]
pub struct Liveness {
    self_id: B256,
    key: Ed25519Secret,
    cfg: Config,
    peers: HashMap<B256, Peer>,
    /// `None` until the first heartbeat of this process (nothing is persisted).
    last_sent_seq: Option<u64>,
    /// Cached `(view_len, view_digest)` of the live set; `None` when the live set changed.
    own_view: Option<(u32, B256)>,
    pending: Vec<Event>,
    /// Convergence as last reported through events, so `poll` emits only transitions.
    reported_converged: bool,
}

impl Liveness {
    pub fn new(self_id: B256, key: Ed25519Secret, cfg: Config) -> Self {
        Self {
            self_id,
            key,
            cfg,
            peers: HashMap::new(),
            last_sent_seq: None,
            own_view: None,
            pending: Vec::new(),
            reported_converged: false,
        }
    }

    pub fn self_id(&self) -> &B256 {
        &self.self_id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Replaces the member set with the chain's. Members that left, or whose key or mesh IP
    /// changed, lose all state (a new key is a new identity: its old `seq` and liveness mean
    /// nothing). This node's own entry, if present, is ignored: self is always in its own view.
    pub fn set_members(&mut self, members: &HashMap<B256, MemberInfo>) {
        let self_id = self.self_id;
        let mut changed = false;
        let mut downs = Vec::new();
        self.peers.retain(|id, p| {
            let keep = members.get(id).is_some_and(|m| *m == p.info);
            if !keep && p.live {
                downs.push(*id);
                changed = true;
            }
            keep
        });
        for (id, info) in members {
            if *id == self_id {
                continue;
            }
            self.peers.entry(*id).or_insert_with(|| Peer {
                info: *info,
                last_seq: None,
                last_seen_ms: 0,
                live: false,
                reported_view: None,
            });
        }
        downs.sort_unstable();
        for id in downs {
            self.pending
                .push(Event::PeerDown(id, DownReason::MembershipChanged));
        }
        if changed {
            self.own_view = None;
        }
    }

    /// Handles one received datagram. Checks run cheapest first so a flood of junk from a wrong
    /// address costs no signature verification.
    pub fn on_heartbeat(
        &mut self,
        now_ms: u64,
        from_ip: Ipv4Addr,
        bytes: &[u8],
    ) -> Result<Accepted, DropReason> {
        let hb = heartbeat::decode(bytes).map_err(DropReason::Malformed)?;
        let peer = self.precheck(&hb.fields, from_ip)?;
        let ed_pub = peer.info.ed_pub;
        let v = hb.verify(&ed_pub).map_err(|_| DropReason::BadSignature)?;
        self.accept(now_ms, from_ip, &v)
    }

    /// Like [`Self::on_heartbeat`] for a packet whose signature was already checked (one packet
    /// delivered to many receivers is verified once). Still drops it unless the key it was
    /// verified with is exactly the sender's on-chain key.
    pub fn on_verified(
        &mut self,
        now_ms: u64,
        from_ip: Ipv4Addr,
        hb: &VerifiedHeartbeat,
    ) -> Result<Accepted, DropReason> {
        let peer = self.precheck(hb.fields(), from_ip)?;
        if peer.info.ed_pub != *hb.verified_by() {
            return Err(DropReason::BadSignature);
        }
        self.accept(now_ms, from_ip, hb)
    }

    fn precheck(&self, f: &HeartbeatFields, from_ip: Ipv4Addr) -> Result<&Peer, DropReason> {
        if f.sender == self.self_id {
            return Err(DropReason::FromSelf);
        }
        let peer = self
            .peers
            .get(&f.sender)
            .ok_or(DropReason::NotMember(f.sender))?;
        if peer.info.mesh_ip != from_ip {
            return Err(DropReason::WrongSourceIp {
                expected: peer.info.mesh_ip,
                got: from_ip,
            });
        }
        Ok(peer)
    }

    fn accept(
        &mut self,
        now_ms: u64,
        from_ip: Ipv4Addr,
        hb: &VerifiedHeartbeat,
    ) -> Result<Accepted, DropReason> {
        let f = hb.fields();
        if f.unix_ms.abs_diff(now_ms) > self.cfg.max_skew_ms {
            return Err(DropReason::ClockSkew {
                sender_ms: f.unix_ms,
                now_ms,
            });
        }
        if !f.seq_in_window() {
            return Err(DropReason::SeqOutOfWindow {
                seq: f.seq,
                unix_ms: f.unix_ms,
            });
        }
        let peer = self
            .peers
            .get_mut(&f.sender)
            .ok_or(DropReason::NotMember(f.sender))?;
        // Re-checked here so `accept` is safe on its own, not only after `precheck`.
        if peer.info.mesh_ip != from_ip {
            return Err(DropReason::WrongSourceIp {
                expected: peer.info.mesh_ip,
                got: from_ip,
            });
        }
        if let Some(last) = peer.last_seq
            && f.seq <= last
        {
            return Err(DropReason::StaleSeq { last, got: f.seq });
        }
        peer.last_seq = Some(f.seq);
        peer.last_seen_ms = peer.last_seen_ms.max(now_ms);
        peer.reported_view = Some((f.view_len, f.view_digest));
        let became_live = !peer.live;
        if became_live {
            peer.live = true;
            self.own_view = None;
            self.pending.push(Event::PeerUp(f.sender));
        }
        Ok(Accepted {
            peer: f.sender,
            became_live,
        })
    }

    /// Expires peers and returns queued transitions (up, down, converged, diverged).
    pub fn poll(&mut self, now_ms: u64) -> Vec<Event> {
        let window = self.cfg.live_window();
        let mut downs = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if p.live && now_ms.saturating_sub(p.last_seen_ms) > window {
                p.live = false;
                downs.push(*id);
            }
        }
        if !downs.is_empty() {
            self.own_view = None;
            downs.sort_unstable();
            self.pending.extend(
                downs
                    .into_iter()
                    .map(|id| Event::PeerDown(id, DownReason::Timeout)),
            );
        }
        let conv = self.is_converged();
        if conv != self.reported_converged {
            self.reported_converged = conv;
            self.pending.push(if conv {
                Event::Converged
            } else {
                Event::Diverged
            });
        }
        std::mem::take(&mut self.pending)
    }

    /// The earliest time at which [`Self::poll`] would report a timeout, if any peer is live.
    pub fn poll_timeout(&self) -> Option<u64> {
        let window = self.cfg.live_window();
        self.peers
            .values()
            .filter(|p| p.live)
            .map(|p| p.last_seen_ms + window + 1)
            .min()
    }

    /// The next heartbeat to send to every peer. `seq` follows the wall clock, never more than
    /// [`MAX_SEQ_LEAD_MS`] ahead of it (see module docs).
    pub fn make_heartbeat(&mut self, now_ms: u64) -> [u8; HEARTBEAT_LEN] {
        let seq = next_seq(self.last_sent_seq, now_ms);
        self.last_sent_seq = Some(seq);
        let (view_len, view_digest) = self.own_view();
        HeartbeatFields {
            sender: self.self_id,
            seq,
            unix_ms: now_ms,
            view_len,
            view_digest,
        }
        .sign(&self.key)
    }

    /// `(view_len, view_digest)` of the live set, this node included.
    pub fn own_view(&mut self) -> (u32, B256) {
        if let Some(v) = self.own_view {
            return v;
        }
        let mut ids: Vec<&B256> = self
            .peers
            .iter()
            .filter(|(_, p)| p.live)
            .map(|(id, _)| id)
            .collect();
        ids.push(&self.self_id);
        let len = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let v = (len, heartbeat::view_digest(ids));
        self.own_view = Some(v);
        v
    }

    /// Converged iff every live peer last reported our own view digest. A cluster of one is
    /// converged; a node with other members needs at least one of them live, otherwise "every
    /// live peer agrees" would hold vacuously and a node that hears nobody (just booted,
    /// restarted, or cut off) would call itself converged.
    pub fn is_converged(&mut self) -> bool {
        let (_, own) = self.own_view();
        let mut live = self.peers.values().filter(|p| p.live).peekable();
        if live.peek().is_none() {
            return self.peers.is_empty();
        }
        live.all(|p| p.reported_view.is_some_and(|(_, d)| d == own))
    }

    /// Live peers, sorted (self excluded).
    pub fn live_peers(&self) -> Vec<B256> {
        let mut v: Vec<B256> = self
            .peers
            .iter()
            .filter(|(_, p)| p.live)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn is_live(&self, id: &B256) -> bool {
        self.peers.get(id).is_some_and(|p| p.live)
    }

    /// Members known from chain state (self excluded), sorted.
    pub fn members(&self) -> Vec<B256> {
        let mut v: Vec<B256> = self.peers.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// `clamp(previous + 1, now, now + lead)`, or `now + lead` on a fresh start (module docs).
fn next_seq(previous: Option<u64>, now_ms: u64) -> u64 {
    let ceiling = now_ms.saturating_add(MAX_SEQ_LEAD_MS);
    match previous {
        None => ceiling,
        Some(p) => p.saturating_add(1).clamp(now_ms, ceiling),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(i: u8) -> (B256, Ed25519Secret, MemberInfo) {
        let k = Ed25519Secret::from_seed([i; 32]);
        let info = MemberInfo {
            ed_pub: k.public(),
            mesh_ip: Ipv4Addr::new(10, 0, 0, i),
        };
        (B256::repeat_byte(i), k, info)
    }

    #[test]
    fn two_nodes_up_converge_and_time_out() {
        let (ida, ka, ia) = node(1);
        let (idb, kb, ib) = node(2);
        let members: HashMap<_, _> = [(ida, ia), (idb, ib)].into();
        let mut a = Liveness::new(ida, ka, Config::with_interval(1000));
        let mut b = Liveness::new(idb, kb, Config::with_interval(1000));
        a.set_members(&members);
        b.set_members(&members);
        assert!(
            !a.is_converged(),
            "members but none live yet: not converged"
        );
        let t = 1_000_000;
        let hb = a.make_heartbeat(t);
        let acc = b.on_heartbeat(t, ia.mesh_ip, &hb).unwrap();
        assert!(acc.became_live);
        // a reported a view of {a} only; b now counts {a, b}: not converged.
        assert_eq!(b.poll(t), vec![Event::PeerUp(ida)]);
        assert!(!b.is_converged());
        let hb = b.make_heartbeat(t + 1);
        a.on_heartbeat(t + 1, ib.mesh_ip, &hb).unwrap();
        assert!(a.is_converged(), "a sees {{a,b}} and b reported {{a,b}}");
        let hb = a.make_heartbeat(t + 2);
        b.on_heartbeat(t + 2, ia.mesh_ip, &hb).unwrap();
        assert!(b.is_converged());
        assert_eq!(b.poll(t + 2), vec![Event::Converged]);
        // Replay of the same packet is dropped.
        assert!(matches!(
            b.on_heartbeat(t + 3, ia.mesh_ip, &hb),
            Err(DropReason::StaleSeq { .. })
        ));
        // Timeout after 3 intervals.
        assert!(b.poll(t + 2 + 3500).is_empty());
        assert_eq!(b.poll_timeout(), Some(t + 2 + 3501));
        assert_eq!(
            b.poll(t + 2 + 3501),
            vec![Event::PeerDown(ida, DownReason::Timeout), Event::Diverged]
        );
        assert!(!b.is_converged(), "every peer is down: not converged");
    }

    #[test]
    fn a_cluster_of_one_is_converged() {
        let (ida, ka, ia) = node(1);
        let mut a = Liveness::new(ida, ka, Config::with_interval(1000));
        a.set_members(&[(ida, ia)].into());
        assert!(a.is_converged());
    }

    #[test]
    fn removed_member_goes_down_and_is_rejected() {
        let (ida, ka, ia) = node(1);
        let (idb, kb, ib) = node(2);
        let mut b = Liveness::new(idb, kb, Config::with_interval(1000));
        b.set_members(&[(ida, ia), (idb, ib)].into());
        let mut a = Liveness::new(ida, ka, Config::with_interval(1000));
        b.on_heartbeat(5000, ia.mesh_ip, &a.make_heartbeat(5000))
            .unwrap();
        b.poll(5000);
        b.set_members(&[(idb, ib)].into());
        assert_eq!(
            b.poll(5001),
            vec![
                Event::PeerDown(ida, DownReason::MembershipChanged),
                Event::Converged
            ]
        );
        assert_eq!(
            b.on_heartbeat(5002, ia.mesh_ip, &a.make_heartbeat(5002)),
            Err(DropReason::NotMember(ida))
        );
        assert!(b.live_peers().is_empty());
    }

    #[test]
    fn next_seq_follows_the_clock_within_the_lead() {
        let t = 1_700_000_000_000;
        let lead = MAX_SEQ_LEAD_MS;
        // Fresh start: one lead ahead, so above anything sent before a restart.
        assert_eq!(next_seq(None, t), t + lead);
        // Normal running: the clock wins once it passes previous + 1.
        assert_eq!(next_seq(Some(t - 5), t), t);
        assert_eq!(next_seq(Some(t + lead - 2_000), t), t + lead - 1_999);
        // Clock came back from hours ahead: clamped to one lead ahead, not hours.
        assert_eq!(next_seq(Some(t + 3 * 3_600_000), t), t + lead);
        // After a fresh start the lead decays by one interval per heartbeat minus 1 ms.
        let mut seq = next_seq(None, t);
        let mut now = t;
        for _ in 0..20 {
            now += 2_000;
            let next = next_seq(Some(seq), now);
            assert!(next > seq);
            assert!(next >= now && next - now <= lead);
            seq = next;
        }
        assert_eq!(seq, now, "caught up with the clock after 20 intervals");
    }
}
