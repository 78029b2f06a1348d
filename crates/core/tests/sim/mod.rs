//! A deterministic discrete-event simulator for `Liveness` (DESIGN §7, §15.3): seeded RNG,
//! simulated clock in ms, per-link loss, partitions, uniform delivery delay, node kill/restart.
//! Shared by the `sim_*` test files.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;

use alloy_primitives::{B256, keccak256};
use attestmesh_core::heartbeat::{self, HEARTBEAT_LEN, VerifiedHeartbeat};
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::liveness::{Config, DropReason, Event, Liveness, MemberInfo};

/// SplitMix64: tiny, seedable, good enough for scheduling decisions; no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}

pub struct Identity {
    pub id: B256,
    pub key: Ed25519Secret,
    pub info: MemberInfo,
}

pub fn identity(i: usize) -> Identity {
    let id = keccak256(format!("sim-member-{i}"));
    let key = Ed25519Secret::from_seed(keccak256(format!("sim-ed-{i}")).0);
    let n = u32::try_from(i + 2).unwrap();
    let info = MemberInfo {
        ed_pub: key.public(),
        mesh_ip: Ipv4Addr::from(0x0A00_0000 | n),
    };
    Identity { id, key, info }
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Tick(usize),
    Poll(usize),
    Deliver { to: usize, pkt: usize },
}

struct Packet {
    from: usize,
    bytes: [u8; HEARTBEAT_LEN],
    /// Verified once against the sender's on-chain key when `shared_verify` is on.
    verified: Option<VerifiedHeartbeat>,
}

pub struct Node {
    pub ident: Identity,
    pub liveness: Liveness,
    pub alive: bool,
    /// This node's wall clock minus simulated real time: a clock that jumps is a change here.
    pub clock_offset_ms: i64,
    /// Bumped on kill/restart so stale scheduled ticks of an old incarnation are ignored.
    epoch: u64,
}

pub struct Sim {
    pub now: u64,
    pub rng: Rng,
    pub cfg: Config,
    pub nodes: Vec<Node>,
    members: HashMap<B256, MemberInfo>,
    queue: BTreeMap<u64, Vec<(Ev, u64)>>,
    packets: Vec<Packet>,
    pub loss: f64,
    pub link_loss: HashMap<(usize, usize), f64>,
    /// Partition group per node; packets only flow within a group. `None` = no partition.
    pub groups: Option<Vec<u8>>,
    pub delay_ms: (u64, u64),
    /// Verify each packet once and hand receivers a `VerifiedHeartbeat` (scales to 1,000 nodes);
    /// otherwise every receiver runs the full decode+verify path on raw bytes.
    pub shared_verify: bool,
    /// Extra poll period for fine-grained down detection (besides the per-tick poll).
    pub poll_every_ms: Option<u64>,
    pub record_events: bool,
    pub events: Vec<(u64, usize, Event)>,
    pub drops: HashMap<String, u64>,
    pub accepted: u64,
    /// `(real time, receiver, packet index)` of every accepted packet, when `record_events`.
    pub accepted_log: Vec<(u64, usize, usize)>,
}

impl Sim {
    pub fn new(n: usize, seed: u64, interval_ms: u64, start_ms: u64) -> Self {
        let cfg = Config::with_interval(interval_ms);
        let idents: Vec<Identity> = (0..n).map(identity).collect();
        let members: HashMap<B256, MemberInfo> = idents.iter().map(|i| (i.id, i.info)).collect();
        let mut nodes = Vec::with_capacity(n);
        for ident in idents {
            let mut liveness = Liveness::new(ident.id, ident.key.clone(), cfg);
            liveness.set_members(&members);
            nodes.push(Node {
                ident,
                liveness,
                alive: true,
                clock_offset_ms: 0,
                epoch: 0,
            });
        }
        let mut sim = Self {
            now: start_ms,
            rng: Rng::new(seed),
            cfg,
            nodes,
            members,
            queue: BTreeMap::new(),
            packets: Vec::new(),
            loss: 0.0,
            link_loss: HashMap::new(),
            groups: None,
            delay_ms: (1, 50),
            shared_verify: false,
            poll_every_ms: None,
            record_events: true,
            events: Vec::new(),
            drops: HashMap::new(),
            accepted: 0,
            accepted_log: Vec::new(),
        };
        for i in 0..n {
            // Nodes boot at random offsets within one interval, as real agents do.
            let at = start_ms + sim.rng.range(0, interval_ms - 1);
            sim.schedule(at, Ev::Tick(i), 0);
        }
        sim
    }

    fn schedule(&mut self, at: u64, ev: Ev, epoch: u64) {
        self.queue.entry(at).or_default().push((ev, epoch));
    }

    pub fn start_polling(&mut self, every_ms: u64) {
        self.poll_every_ms = Some(every_ms);
        for i in 0..self.nodes.len() {
            let at = self.now + 1 + (i as u64 % every_ms);
            let e = self.nodes[i].epoch;
            self.schedule(at, Ev::Poll(i), e);
        }
    }

    /// Runs until simulated time `until` (inclusive).
    pub fn run_until(&mut self, until: u64) {
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() > until {
                break;
            }
            let at = *entry.key();
            let evs = entry.remove();
            self.now = at;
            for (ev, epoch) in evs {
                self.handle(ev, epoch);
            }
        }
        self.now = until;
    }

    /// Runs in `step_ms` steps until `pred` holds or `deadline` passes; returns the time it held.
    pub fn run_until_pred(
        &mut self,
        deadline: u64,
        step_ms: u64,
        mut pred: impl FnMut(&mut Sim) -> bool,
    ) -> Option<u64> {
        loop {
            if pred(self) {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            let next = (self.now + step_ms).min(deadline);
            self.run_until(next);
        }
    }

    fn handle(&mut self, ev: Ev, epoch: u64) {
        match ev {
            Ev::Tick(i) => {
                if !self.nodes[i].alive || self.nodes[i].epoch != epoch {
                    return;
                }
                self.poll_node(i);
                let now = self.now;
                let local = self.local_now(i);
                let bytes = self.nodes[i].liveness.make_heartbeat(local);
                let verified = if self.shared_verify {
                    Some(
                        heartbeat::decode_verified(&bytes, &self.nodes[i].ident.info.ed_pub)
                            .unwrap(),
                    )
                } else {
                    None
                };
                let pkt = self.packets.len();
                self.packets.push(Packet {
                    from: i,
                    bytes,
                    verified,
                });
                for j in 0..self.nodes.len() {
                    if j == i || !self.link_up(i, j) {
                        continue;
                    }
                    let d = self.rng.range(self.delay_ms.0, self.delay_ms.1);
                    self.schedule(now + d, Ev::Deliver { to: j, pkt }, 0);
                }
                let next = now + self.cfg.interval_ms;
                self.schedule(next, Ev::Tick(i), epoch);
            }
            Ev::Poll(i) => {
                if self.nodes[i].epoch != epoch {
                    return;
                }
                if self.nodes[i].alive {
                    self.poll_node(i);
                }
                if let Some(p) = self.poll_every_ms {
                    self.schedule(self.now + p, Ev::Poll(i), epoch);
                }
            }
            Ev::Deliver { to, pkt } => {
                if !self.nodes[to].alive {
                    return;
                }
                let from_ip = self.nodes[self.packets[pkt].from].ident.info.mesh_ip;
                let now = self.local_now(to);
                let p = &self.packets[pkt];
                let r = match &p.verified {
                    Some(v) => self.nodes[to].liveness.on_verified(now, from_ip, v),
                    None => self.nodes[to].liveness.on_heartbeat(now, from_ip, &p.bytes),
                };
                if r.is_ok() && self.record_events {
                    self.accepted_log.push((self.now, to, pkt));
                }
                self.note(r.map(|_| ()));
            }
        }
    }

    /// Node `i`'s wall clock: simulated real time plus its offset.
    pub fn local_now(&self, i: usize) -> u64 {
        self.now
            .saturating_add_signed(self.nodes[i].clock_offset_ms)
    }

    /// The bytes of every packet node `from` has sent, oldest first (for replay attacks).
    pub fn sent_by(&self, from: usize) -> Vec<[u8; HEARTBEAT_LEN]> {
        self.packets
            .iter()
            .filter(|p| p.from == from)
            .map(|p| p.bytes)
            .collect()
    }

    /// `(sender, packet bytes)` of every packet receiver `to` accepted, in acceptance order.
    pub fn accepted_by(&self, to: usize) -> Vec<(usize, [u8; HEARTBEAT_LEN])> {
        self.accepted_log
            .iter()
            .filter(|(_, t, _)| *t == to)
            .map(|(_, _, p)| (self.packets[*p].from, self.packets[*p].bytes))
            .collect()
    }

    fn note(&mut self, r: Result<(), DropReason>) {
        match r {
            Ok(()) => self.accepted += 1,
            Err(e) => {
                let k = format!("{e:?}");
                let k = k.split(['(', ' ', '{']).next().unwrap_or("").to_string();
                *self.drops.entry(k).or_default() += 1;
            }
        }
    }

    fn poll_node(&mut self, i: usize) {
        let local = self.local_now(i);
        let evs = self.nodes[i].liveness.poll(local);
        if self.record_events {
            for e in evs {
                self.events.push((self.now, i, e));
            }
        }
    }

    fn link_up(&mut self, from: usize, to: usize) -> bool {
        if let Some(g) = &self.groups
            && g[from] != g[to]
        {
            return false;
        }
        let p = self
            .link_loss
            .get(&(from, to))
            .copied()
            .unwrap_or(self.loss);
        !(p > 0.0 && self.rng.chance(p))
    }

    /// Injects raw bytes at node `to` as if they arrived from `from_ip` (attacker traffic).
    pub fn inject(&mut self, to: usize, from_ip: Ipv4Addr, bytes: &[u8]) -> Result<(), DropReason> {
        let now = self.local_now(to);
        self.nodes[to]
            .liveness
            .on_heartbeat(now, from_ip, bytes)
            .map(|_| ())
    }

    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].epoch += 1;
    }

    /// Restarts node `i` with a brand-new `Liveness` (no persisted state: seq starts over from
    /// the clock), same keys, first heartbeat after `boot_ms`.
    pub fn restart(&mut self, i: usize, boot_ms: u64) {
        let ident = &self.nodes[i].ident;
        let mut l = Liveness::new(ident.id, ident.key.clone(), self.cfg);
        l.set_members(&self.members);
        let n = &mut self.nodes[i];
        n.liveness = l;
        n.alive = true;
        n.epoch += 1;
        let e = n.epoch;
        self.schedule(self.now + boot_ms, Ev::Tick(i), e);
        if let Some(p) = self.poll_every_ms {
            self.schedule(self.now + p, Ev::Poll(i), e);
        }
    }

    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect()
    }

    /// Every alive node counts exactly the alive set as live and is converged on it.
    pub fn cluster_converged(&mut self) -> bool {
        let alive = self.alive();
        let want: HashSet<usize> = alive.iter().copied().collect();
        let mut digest = None;
        for &i in &alive {
            let l = &mut self.nodes[i].liveness;
            if !l.is_converged() {
                return false;
            }
            let (len, d) = l.own_view();
            if len as usize != want.len() {
                return false;
            }
            match digest {
                None => digest = Some(d),
                Some(x) if x != d => return false,
                _ => {}
            }
        }
        true
    }

    /// The distinct own-view digests held by alive nodes.
    pub fn distinct_views(&mut self) -> usize {
        let mut s = HashSet::new();
        for i in self.alive() {
            s.insert(self.nodes[i].liveness.own_view().1);
        }
        s.len()
    }

    pub fn drops_of(&self, k: &str) -> u64 {
        self.drops.get(k).copied().unwrap_or(0)
    }
}
