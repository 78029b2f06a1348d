//! Admission control for the bridge's TLS ingress (DESIGN §6.3, issue 11 hole 4).
//!
//! Anyone on the internet can reach the ingress through the gateway and claim any peer's name in
//! ALPN, so connections are bounded per claimed peer and in total, and ranked: a connection is
//! *unproven* until it carries a message addressed to a session index our device announced to the
//! claimed peer ([`crate::proof`]), then *proven*. Pressure always lands on unproven connections
//! (oldest first); a proven connection is replaced only by a newer proven one for the same peer.
//! So an attacker who cannot see the peer's traffic can never displace the peer's working path.
//!
//! This module is the bookkeeping only (no I/O, no clock): each connection registers a handle
//! whose drop tells its task to close, and every decision returns the handles it evicted.

use std::collections::BTreeMap;
use std::time::Duration;

/// Ingress limits. The defaults suit a cluster of up to ~100 members on the default fd limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressLimits {
    /// Connections held at once, all peers and handshakes together. Keep it well under the
    /// process's file-descriptor limit.
    pub max_total: usize,
    /// Connections held at once per claimed peer (at most one of them proven).
    pub max_per_peer: usize,
    /// From accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// From the finished handshake to the first proving message. Longer than WireGuard's 25 s
    /// persistent keepalive, so an idle but real peer that redials proves itself in time.
    pub proof_timeout: Duration,
    /// Longest silence on any connection (WireGuard sends at least a keepalive every 25 s).
    pub idle_timeout: Duration,
    /// Frames an unproven connection may deliver before it must have proven itself; bounds how
    /// many receiver indices one connection can guess.
    pub max_unproven_frames: u32,
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            max_total: 512,
            max_per_peer: 4,
            handshake_timeout: Duration::from_secs(10),
            proof_timeout: Duration::from_secs(40),
            idle_timeout: Duration::from_secs(90),
            max_unproven_frames: 256,
        }
    }
}

/// Identifies one ingress connection; ids grow with age, so the smallest is the oldest.
pub type ConnId = u64;

/// The ingress is full of proven connections (one per peer), so a new one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ingress full: {0} proven connections")]
pub struct Full(pub usize);

#[derive(Debug)]
struct Entry<H> {
    peer: Option<String>,
    proven: bool,
    handle: H,
}

/// The live ingress connections. `H` is the connection's close handle (dropping it closes it).
#[derive(Debug)]
pub struct Admission<H> {
    limits: IngressLimits,
    next: ConnId,
    conns: BTreeMap<ConnId, Entry<H>>,
}

/// A snapshot of the ingress for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngressCounts {
    pub total: usize,
    pub proven: usize,
}

impl<H> Admission<H> {
    pub fn new(limits: IngressLimits) -> Self {
        Self {
            limits,
            next: 0,
            conns: BTreeMap::new(),
        }
    }

    pub fn limits(&self) -> &IngressLimits {
        &self.limits
    }

    /// Registers a freshly accepted connection (peer not yet named). At the total cap the oldest
    /// unproven connection is evicted to make room; if every slot is proven, this one is refused.
    pub fn open(&mut self, handle: H) -> Result<(ConnId, Vec<H>), Full> {
        let mut evicted = Vec::new();
        while self.conns.len() >= self.limits.max_total.max(1) {
            let victim = self
                .conns
                .iter()
                .find(|(_, e)| !e.proven)
                .map(|(id, _)| *id);
            match victim.and_then(|id| self.conns.remove(&id)) {
                Some(e) => evicted.push(e.handle),
                None => return Err(Full(self.conns.len())),
            }
        }
        let id = self.next;
        self.next += 1;
        self.conns.insert(
            id,
            Entry {
                peer: None,
                proven: false,
                handle,
            },
        );
        Ok((id, evicted))
    }

    /// Records the peer a connection claims. Over the per-peer cap the claimant's oldest unproven
    /// connection goes, which may be this one if all others are proven.
    pub fn claim(&mut self, id: ConnId, peer: &str) -> Vec<H> {
        let Some(e) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        e.peer = Some(peer.to_owned());
        let mut evicted = Vec::new();
        loop {
            let mut same = self
                .conns
                .iter()
                .filter(|(_, e)| e.peer.as_deref() == Some(peer));
            if same.clone().count() <= self.limits.max_per_peer.max(1) {
                break;
            }
            let Some(victim) = same.find(|(_, e)| !e.proven).map(|(id, _)| *id) else {
                break;
            };
            if let Some(e) = self.conns.remove(&victim) {
                evicted.push(e.handle);
            }
        }
        evicted
    }

    /// Marks a connection proven; it replaces (evicts) any older proven one for the same peer.
    pub fn prove(&mut self, id: ConnId) -> Vec<H> {
        let Some(e) = self.conns.get_mut(&id) else {
            return Vec::new();
        };
        e.proven = true;
        let peer = e.peer.clone();
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(other, e)| **other != id && e.proven && e.peer == peer)
            .map(|(other, _)| *other)
            .collect();
        stale
            .into_iter()
            .filter_map(|s| self.conns.remove(&s).map(|e| e.handle))
            .collect()
    }

    /// Evicts every connection claiming `peer` (the peer was removed or its link rebuilt, so
    /// their frames would enter the device from a socket that is no longer its endpoint).
    pub fn evict_peer(&mut self, peer: &str) -> Vec<H> {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, e)| e.peer.as_deref() == Some(peer))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.conns.remove(&id).map(|e| e.handle))
            .collect()
    }

    /// Forgets a connection that ended; returns its handle if it was still registered.
    pub fn close(&mut self, id: ConnId) -> Option<H> {
        self.conns.remove(&id).map(|e| e.handle)
    }

    /// Whether a connection is still admitted.
    pub fn contains(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    pub fn is_proven(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|e| e.proven)
    }

    /// Connections claiming `peer`.
    pub fn peer_count(&self, peer: &str) -> usize {
        self.conns
            .values()
            .filter(|e| e.peer.as_deref() == Some(peer))
            .count()
    }

    pub fn counts(&self) -> IngressCounts {
        IngressCounts {
            total: self.conns.len(),
            proven: self.conns.values().filter(|e| e.proven).count(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(total: usize, per_peer: usize) -> IngressLimits {
        IngressLimits {
            max_total: total,
            max_per_peer: per_peer,
            ..IngressLimits::default()
        }
    }

    /// Handles are the connection numbers, so tests can see who was evicted.
    fn open(a: &mut Admission<u32>, tag: u32, peer: Option<&str>) -> (ConnId, Vec<u32>) {
        let (id, mut ev) = a.open(tag).unwrap();
        if let Some(p) = peer {
            ev.extend(a.claim(id, p));
        }
        (id, ev)
    }

    #[test]
    fn a_flood_claiming_a_peer_never_evicts_its_proven_connection() {
        let mut a = Admission::new(limits(100, 3));
        let (real, _) = open(&mut a, 0, Some("a"));
        assert!(a.prove(real).is_empty());
        let mut evicted = Vec::new();
        for tag in 1..=2000 {
            evicted.extend(open(&mut a, tag, Some("a")).1);
        }
        assert!(a.contains(real) && a.is_proven(real));
        assert_eq!(a.peer_count("a"), 3);
        // Oldest unproven first: everyone but the last two attackers went, in order.
        assert_eq!(evicted, (1..=1998).collect::<Vec<_>>());
    }

    #[test]
    fn per_peer_cap_evicts_the_oldest_unproven_and_spares_other_peers() {
        let mut a = Admission::new(limits(100, 2));
        let (b1, _) = open(&mut a, 1, Some("b"));
        let (_, _) = open(&mut a, 2, Some("a"));
        let (_, _) = open(&mut a, 3, Some("a"));
        let (_, ev) = open(&mut a, 4, Some("a"));
        assert_eq!(ev, vec![2]);
        assert!(a.contains(b1));
        assert_eq!(a.peer_count("a"), 2);
    }

    #[test]
    fn a_new_connection_replaces_the_proven_one_only_once_it_proves_itself() {
        let mut a = Admission::new(limits(100, 4));
        let (old, _) = open(&mut a, 1, Some("a"));
        a.prove(old);
        let (new, ev) = open(&mut a, 2, Some("a"));
        assert!(ev.is_empty() && a.contains(old));
        assert_eq!(a.prove(new), vec![1]);
        assert!(!a.contains(old) && a.is_proven(new));
        assert_eq!(
            a.counts(),
            IngressCounts {
                total: 1,
                proven: 1
            }
        );
    }

    #[test]
    fn total_cap_evicts_unproven_and_handshaking_but_refuses_when_all_are_proven() {
        let mut a = Admission::new(limits(3, 4));
        let (pa, _) = open(&mut a, 1, Some("a"));
        a.prove(pa);
        let (hs, _) = open(&mut a, 2, None); // still handshaking
        let (_, _) = open(&mut a, 3, Some("b"));
        let (_, ev) = open(&mut a, 4, Some("c"));
        assert_eq!(ev, vec![2]);
        assert!(!a.contains(hs) && a.contains(pa));
        let mut b = Admission::new(limits(2, 4));
        for (tag, peer) in [(1, "a"), (2, "b")] {
            let (id, _) = open(&mut b, tag, Some(peer));
            b.prove(id);
        }
        assert_eq!(b.open(3).unwrap_err(), Full(2));
    }

    #[test]
    fn evicting_a_peer_closes_only_its_connections() {
        let mut a = Admission::new(limits(10, 4));
        let (pa, _) = open(&mut a, 1, Some("a"));
        a.prove(pa);
        open(&mut a, 2, Some("a"));
        let (pb, _) = open(&mut a, 3, Some("b"));
        assert_eq!(a.evict_peer("a"), vec![1, 2]);
        assert!(a.contains(pb));
        assert_eq!(
            a.counts(),
            IngressCounts {
                total: 1,
                proven: 0
            }
        );
    }

    #[test]
    fn closing_frees_the_slot() {
        let mut a = Admission::new(limits(1, 1));
        let (id, _) = open(&mut a, 1, Some("a"));
        a.prove(id);
        assert!(a.open(2).is_err());
        assert_eq!(a.close(id), Some(1));
        assert_eq!(a.close(id), None);
        assert!(a.open(3).is_ok());
    }
}
