//! The chain follower's sans-IO core (DESIGN §9.1): which block range to fetch next, when a
//! fetched range is confirmed enough to act on, when a reorg forces a rewind, and which delivered
//! events a rewind would repeat.
//!
//! The shell asks [`Follower::next_range`] with the current head, runs `eth_getLogs` plus headers
//! of that range, and hands the headers to [`Follower::on_fetched`]. Blocks are hashed and linked
//! by `parent_hash`; if the first fetched block does not extend the last block we recorded, the
//! chain reorganised under us and we rewind (the logs of that range are discarded and re-fetched).
//! Current state is always read with views, so a rewind only re-delivers events, and
//! [`Dedupe`] makes re-delivery invisible to the app.
//!
//! Headers may be *sparse*: the shell may hand over only the first and last block of a range.
//! Checking every header would cost one RPC call per block, which a node catching up on thousands
//! of blocks cannot afford; the boundary headers are enough because a block hash commits to all
//! of its ancestors. The price is coarser rewinds (range by range instead of block by block).
//!
//! The durable cursor is a [`Checkpoint`] (last block acted on and its hash), so a reorg that
//! happened while the agent was down is detected on the first fetch after a restart.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::Hash;

use alloy_primitives::B256;

/// What the follower needs of a block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
}

/// The last block acted on and its hash: the durable cursor the shell persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub number: u64,
    pub hash: B256,
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
    rewind: u64,
    recent: BTreeMap<u64, B256>,
}

impl Follower {
    /// `start` is the next block to fetch. `keep` recent hashes bound how deep a reorg can be
    /// detected precisely; past them the follower steps back blindly (see [`Self::with_rewind`]).
    pub fn new(start: u64, confirmations: u64, max_range: u64, keep: usize) -> Self {
        let keep = keep.max(1);
        Self {
            next: start,
            confirmations,
            max_range: max_range.max(1),
            keep,
            rewind: u64::try_from(keep).unwrap_or(u64::MAX),
            recent: BTreeMap::new(),
        }
    }

    /// Resumes after `cp` (a persisted [`Self::checkpoint`]): fetching continues at the block
    /// after it, and the first fetch is checked against its hash, so a reorg that happened while
    /// the agent was down is not silently accepted.
    pub fn resume(cp: Checkpoint, confirmations: u64, max_range: u64, keep: usize) -> Self {
        let mut f = Self::new(cp.number.saturating_add(1), confirmations, max_range, keep);
        f.recent.insert(cp.number, cp.hash);
        f
    }

    /// How many blocks to step back when a reorg reaches below every hash we still hold (after a
    /// restart we hold one). The fork point is unknown then, so we re-scan a window deeper than
    /// any reorg the chain produces; re-delivered events are removed by [`Dedupe`].
    pub fn with_rewind(mut self, depth: u64) -> Self {
        self.rewind = depth;
        self
    }

    /// The next block to fetch.
    pub fn cursor(&self) -> u64 {
        self.next
    }

    /// The durable cursor to persist: the last block acted on, if the follower is not in the
    /// middle of a rewind (persisting then would forget the reorg across a restart; the older
    /// checkpoint on disk re-detects it instead).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let (&number, &hash) = self.recent.last_key_value()?;
        (number.checked_add(1) == Some(self.next)).then_some(Checkpoint { number, hash })
    }

    /// The highest block events may be acted on at this head (`head - confirmations`).
    pub fn safe_head(&self, head: u64) -> Option<u64> {
        head.checked_sub(self.confirmations)
    }

    /// The next range to fetch, given the chain head; `None` while nothing is confirmed yet.
    pub fn next_range(&self, head: u64) -> Option<Range> {
        let safe = self.safe_head(head)?;
        if safe < self.next {
            return None;
        }
        let to = safe.min(self.next.saturating_add(self.max_range - 1));
        Some(Range {
            from: self.next,
            to,
        })
    }

    /// Checks a fetched range's headers against what we recorded. `headers` ascend strictly,
    /// start at `range.from` and end at `range.to`; blocks in between are optional, and where two
    /// consecutive blocks are both present they must link.
    pub fn on_fetched(
        &mut self,
        range: Range,
        headers: &[BlockRef],
    ) -> Result<Fetched, FollowerError> {
        let incomplete = FollowerError::Incomplete {
            from: range.from,
            to: range.to,
        };
        let (Some(first), Some(last)) = (headers.first().copied(), headers.last().copied()) else {
            return Err(incomplete);
        };
        let complete = range.from == self.next
            && range.to >= range.from
            && first.number == range.from
            && last.number == range.to
            && headers.windows(2).all(|w| w[0].number < w[1].number);
        if !complete {
            return Err(incomplete);
        }
        for w in headers.windows(2) {
            if w[1].number == w[0].number + 1 && w[1].parent_hash != w[0].hash {
                return Err(FollowerError::NotLinked(w[1].number, w[0].number));
            }
        }
        if let Some(prev) = first.number.checked_sub(1)
            && let Some(known) = self.recent.get(&prev)
            && *known != first.parent_hash
        {
            // Our block `prev` is gone: forget it and everything after, and re-fetch from just
            // after the newest block we still hold. Repeated rewinds walk back until a fetched
            // block extends a hash we still agree on; with none left, step back blindly.
            self.recent.split_off(&prev);
            self.next = match self.recent.last_key_value() {
                Some((&n, _)) => n + 1,
                None => prev.saturating_sub(self.rewind),
            };
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

/// A bounded "seen before" set of delivered events (e.g. `(sender, envelope id)`), so rewinds
/// after a reorg and overlapping re-scans never hand the app the same event twice. Bounded
/// because an agent runs for months; the oldest entries go first, and they are far older than any
/// rewind window.
#[derive(Debug, Clone)]
pub struct Dedupe<K> {
    set: HashSet<K>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone> Dedupe<K> {
    pub fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.set.contains(k)
    }

    /// Records `k`; `true` if it was not seen before.
    pub fn insert(&mut self, k: K) -> bool {
        if !self.set.insert(k.clone()) {
            return false;
        }
        self.order.push_back(k);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
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

    /// Boundary headers only (what the agent fetches): the first and last block of a range.
    fn ends(c: &[BlockRef], r: Range) -> Vec<BlockRef> {
        if r.from == r.to {
            vec![c[r.from as usize]]
        } else {
            vec![c[r.from as usize], c[r.to as usize]]
        }
    }

    #[test]
    fn resumed_checkpoint_continues_on_same_hash_and_rewinds_blindly_on_change() {
        let a = chain(200, 0, 1, &[]);
        let cp = Checkpoint {
            number: 100,
            hash: a[100].hash,
        };
        let mut f = Follower::resume(cp, 0, 10, 64).with_rewind(64);
        assert_eq!(f.cursor(), 101);
        assert_eq!(f.checkpoint(), Some(cp));
        let r = f.next_range(150).unwrap();
        assert_eq!(r, Range { from: 101, to: 110 });
        assert_eq!(
            f.on_fetched(r, &ends(&a, r)),
            Ok(Fetched::Advanced { next: 111 })
        );
        assert_eq!(
            f.checkpoint(),
            Some(Checkpoint {
                number: 110,
                hash: a[110].hash
            })
        );

        // The chain changed under the checkpoint while we were down: block 100 is gone, and we
        // hold no older hash, so the fork point is unknown: step back the whole rewind window.
        let b = chain(200, 90, 2, &a);
        let mut g = Follower::resume(cp, 0, 10, 64).with_rewind(64);
        let r = g.next_range(150).unwrap();
        assert_eq!(
            g.on_fetched(r, &ends(&b, r)),
            Ok(Fetched::Reorg { next: 100 - 64 })
        );
        assert_eq!(g.checkpoint(), None, "nothing to persist mid-rewind");
        // The blind re-scan is accepted (nothing left to compare) and then tracked normally.
        let r = g.next_range(150).unwrap();
        assert_eq!(r.from, 36);
        assert!(matches!(
            g.on_fetched(r, &ends(&b, r)),
            Ok(Fetched::Advanced { .. })
        ));

        // Near genesis the rewind saturates.
        let mut low = Follower::resume(
            Checkpoint {
                number: 3,
                hash: B256::ZERO,
            },
            0,
            10,
            64,
        );
        let r = low.next_range(9).unwrap();
        assert_eq!(
            low.on_fetched(r, &ends(&a, r)),
            Ok(Fetched::Reorg { next: 0 })
        );
    }

    #[test]
    fn sparse_headers_detect_reorgs_range_by_range() {
        let a = chain(40, 0, 1, &[]);
        let mut f = Follower::new(0, 0, 10, 64);
        while let Some(r) = f.next_range(29) {
            assert!(matches!(
                f.on_fetched(r, &ends(&a, r)),
                Ok(Fetched::Advanced { .. })
            ));
        }
        assert_eq!(f.cursor(), 30);
        // Fork inside the last range (20..=29): its end block is gone, so the follower steps back
        // to just after the newest boundary it still trusts (block 20) and re-fetches from there.
        let b = chain(40, 25, 2, &a);
        let r = f.next_range(39).unwrap();
        assert_eq!(
            f.on_fetched(r, &ends(&b, r)),
            Ok(Fetched::Reorg { next: 21 })
        );
        let r = f.next_range(39).unwrap();
        assert_eq!(r, Range { from: 21, to: 30 });
        assert!(matches!(
            f.on_fetched(r, &ends(&b, r)),
            Ok(Fetched::Advanced { next: 31 })
        ));
        assert_eq!(
            f.checkpoint(),
            Some(Checkpoint {
                number: 30,
                hash: b[30].hash
            })
        );
        // Unordered or boundary-less answers are refused.
        let r = f.next_range(39).unwrap();
        assert!(matches!(
            f.on_fetched(r, &[b[39], b[31]]),
            Err(FollowerError::Incomplete { .. })
        ));
        assert!(matches!(
            f.on_fetched(r, &[]),
            Err(FollowerError::Incomplete { .. })
        ));
    }

    #[test]
    fn dedupe_is_bounded_and_forgets_the_oldest() {
        let mut d = Dedupe::new(3);
        assert!(d.is_empty());
        assert!(d.insert(1));
        assert!(!d.insert(1));
        assert!(d.insert(2));
        assert!(d.insert(3));
        assert!(d.insert(4));
        assert_eq!(d.len(), 3);
        assert!(!d.contains(&1), "oldest evicted");
        assert!(d.contains(&4));
        assert!(d.insert(1));
    }
}
