//! The chain follower's sans-IO core (DESIGN §9.1): which block range to fetch next, when a
//! fetched range is confirmed enough to act on, and when a reorg forces a rewind.
//!
//! The shell asks [`Follower::next_range`] with the current head, runs `eth_getLogs` plus the
//! headers of that range, and hands the headers to [`Follower::on_fetched`]. Blocks are hashed
//! and linked by `parent_hash`; if the first fetched block does not extend the last block we
//! recorded, the chain reorganised under us and we rewind (the logs of that range are discarded
//! and re-fetched). Current state is always read with views, so a rewind only re-delivers events.

use std::collections::BTreeMap;

use alloy_primitives::B256;

/// What the follower needs of a block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
}

/// An inclusive block range to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: u64,
    pub to: u64,
}

/// Result of handing over a fetched range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The range extends our chain: act on its logs; the cursor moved past it.
    Advanced { next: u64 },
    /// The range does not extend our chain: discard its logs; fetching resumes at `next`.
    Reorg { next: u64 },
}

/// A fetched range the follower cannot use (a buggy or lying RPC node); typed so the shell can
/// switch endpoints instead of acting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FollowerError {
    #[error("headers do not cover the requested range {from}..={to}")]
    Incomplete { from: u64, to: u64 },
    #[error("block {0}'s parent hash does not match block {1}'s hash inside one response")]
    NotLinked(u64, u64),
}

#[derive(Debug, Clone)]
pub struct Follower {
    next: u64,
    confirmations: u64,
    max_range: u64,
    keep: usize,
    recent: BTreeMap<u64, B256>,
}

impl Follower {
    /// `start` is the durable cursor (next block to fetch). `keep` recent hashes bound how deep a
    /// reorg can be detected precisely; deeper ones rewind block by block to the oldest kept.
    pub fn new(start: u64, confirmations: u64, max_range: u64, keep: usize) -> Self {
        Self {
            next: start,
            confirmations,
            max_range: max_range.max(1),
            keep: keep.max(1),
            recent: BTreeMap::new(),
        }
    }

    /// The durable cursor to persist.
    pub fn cursor(&self) -> u64 {
        self.next
    }

    /// The next range to fetch, given the chain head; `None` while nothing is confirmed yet.
    pub fn next_range(&self, head: u64) -> Option<Range> {
        let safe = head.checked_sub(self.confirmations)?;
        if safe < self.next {
            return None;
        }
        let to = safe.min(self.next.saturating_add(self.max_range - 1));
        Some(Range {
            from: self.next,
            to,
        })
    }

    /// Checks a fetched range's headers (ascending, one per block) against what we recorded.
    pub fn on_fetched(
        &mut self,
        range: Range,
        headers: &[BlockRef],
    ) -> Result<Fetched, FollowerError> {
        let span = usize::try_from(range.to.saturating_sub(range.from) + 1).unwrap_or(usize::MAX);
        let complete = range.from == self.next
            && range.to >= range.from
            && headers.len() == span
            && headers.iter().zip(range.from..).all(|(h, n)| h.number == n);
        if !complete {
            return Err(FollowerError::Incomplete {
                from: range.from,
                to: range.to,
            });
        }
        for w in headers.windows(2) {
            if w[1].parent_hash != w[0].hash {
                return Err(FollowerError::NotLinked(w[1].number, w[0].number));
            }
        }
        let first = headers[0];
        if let Some(prev) = first.number.checked_sub(1)
            && let Some(known) = self.recent.get(&prev)
            && *known != first.parent_hash
        {
            // Our block `prev` is gone: forget it and re-fetch from it. Repeated rewinds walk
            // back until a fetched block extends a hash we still agree on.
            self.recent.split_off(&prev);
            self.next = prev;
            return Ok(Fetched::Reorg { next: self.next });
        }
        for h in headers {
            self.recent.insert(h.number, h.hash);
        }
        while self.recent.len() > self.keep {
            self.recent.pop_first();
        }
        self.next = range.to + 1;
        Ok(Fetched::Advanced { next: self.next })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    /// A simulated chain: block hash = keccak(fork tag ‖ number ‖ parent).
    fn chain(len: u64, fork_at: u64, tag: u8, base: &[BlockRef]) -> Vec<BlockRef> {
        let mut v: Vec<BlockRef> = base.iter().take(fork_at as usize).copied().collect();
        for n in fork_at..len {
            let parent = if n == 0 {
                B256::ZERO
            } else {
                v[(n - 1) as usize].hash
            };
            let mut pre = vec![tag];
            pre.extend_from_slice(&n.to_be_bytes());
            pre.extend_from_slice(parent.as_slice());
            v.push(BlockRef {
                number: n,
                hash: keccak256(&pre),
                parent_hash: parent,
            });
        }
        v
    }

    fn fetch(f: &mut Follower, c: &[BlockRef]) -> Option<Fetched> {
        let head = c.last().unwrap().number;
        let r = f.next_range(head)?;
        Some(
            f.on_fetched(r, &c[r.from as usize..=r.to as usize])
                .unwrap(),
        )
    }

    #[test]
    fn ranges_respect_confirmations_and_cap() {
        let f = Follower::new(10, 2, 5, 64);
        assert_eq!(f.next_range(11), None);
        assert_eq!(f.next_range(12), Some(Range { from: 10, to: 10 }));
        assert_eq!(f.next_range(100), Some(Range { from: 10, to: 14 }));
        assert_eq!(Follower::new(0, 3, 5, 8).next_range(2), None);
    }

    #[test]
    fn reorg_is_detected_and_rewound() {
        let a = chain(20, 0, 1, &[]);
        let mut f = Follower::new(0, 0, 4, 64);
        while f.cursor() < 20 {
            assert!(matches!(fetch(&mut f, &a), Some(Fetched::Advanced { .. })));
        }
        // Blocks 17.. replaced by another fork, which is longer.
        let b = chain(24, 17, 2, &a);
        let mut rewinds = 0;
        loop {
            match fetch(&mut f, &b) {
                Some(Fetched::Reorg { .. }) => rewinds += 1,
                Some(Fetched::Advanced { .. }) => {}
                None => break,
            }
        }
        assert_eq!(rewinds, 3, "walks back 19, 18, 17");
        assert_eq!(f.cursor(), 24);
        assert_eq!(f.recent.get(&23), Some(&b[23].hash));
        assert_eq!(f.recent.get(&17), Some(&b[17].hash));
    }

    #[test]
    fn bad_responses_are_typed_errors() {
        let a = chain(10, 0, 1, &[]);
        let mut f = Follower::new(0, 0, 4, 64);
        let r = f.next_range(9).unwrap();
        assert!(matches!(
            f.on_fetched(r, &a[0..2]),
            Err(FollowerError::Incomplete { .. })
        ));
        let mut bad = a[0..4].to_vec();
        bad[2].parent_hash = B256::ZERO;
        assert_eq!(f.on_fetched(r, &bad), Err(FollowerError::NotLinked(2, 1)));
        assert_eq!(f.cursor(), 0);
    }
}
