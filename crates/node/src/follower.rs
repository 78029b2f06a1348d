//! The chain follower (DESIGN §9.1): polls always, from a durable cursor, acts only on blocks
//! buried under `CONFIRMATIONS`, and rewinds when the block under its cursor changed (a reorg).
//!
//! Each poll re-reads the cluster's current state with views and publishes it (membership, keys
//! and commitment drive the mesh and the CSK), then fetches `MessageSent` logs addressed to this
//! node in `(cursor, head - confirmations]` and delivers them opened. A wake-up (an Indexer push,
//! or our own submission) makes it poll at once instead of waiting for the interval.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::chainview::{ChainError, ClusterReader, open_message, owner_sender_id};
use crate::state::{Metrics, Shared, now_unix_ms};
use crate::statedir::StateDir;

/// File name of the cursor in the state directory.
pub const CURSOR_FILE: &str = "follower-cursor.json";
/// Blocks to step back when the block under the cursor changed: deeper than any reorg Base or a
/// dev chain produces, and re-delivery is deduplicated by envelope id.
pub const REORG_REWIND: u64 = 64;
/// Largest block range of one `eth_getLogs` (public RPCs cap ranges).
pub const MAX_LOG_RANGE: u64 = 2_000;
/// Envelopes remembered for de-duplication across rewinds.
const SEEN_CAPACITY: usize = 8_192;

/// The last block whose logs were processed, and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub block: u64,
    pub hash: B256,
}

/// What the follower does with a cursor given the chain's answer for that block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorCheck {
    /// The block is unchanged: continue after it.
    Continue(u64),
    /// The block changed or vanished: re-scan from this block.
    Rewind(u64),
}

/// Pure reorg decision.
pub fn check_cursor(cursor: &Cursor, chain_hash: Option<B256>) -> CursorCheck {
    if chain_hash == Some(cursor.hash) {
        CursorCheck::Continue(cursor.block + 1)
    } else {
        CursorCheck::Rewind(cursor.block.saturating_sub(REORG_REWIND).max(1))
    }
}

/// Follower settings.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    pub poll_interval: Duration,
    pub confirmations: u64,
}

/// The follower task's state.
pub struct Follower {
    reader: ClusterReader,
    shared: Arc<Shared>,
    cidr: MeshCidr,
    me: B256,
    x25519: X25519Secret,
    cfg: FollowerConfig,
    state: Option<StateDir>,
    cursor: Option<Cursor>,
    seen: HashSet<(B256, B256)>,
    seen_order: VecDeque<(B256, B256)>,
    wake: Arc<Notify>,
}

impl Follower {
    pub fn new(
        reader: ClusterReader,
        shared: Arc<Shared>,
        cidr: MeshCidr,
        me: B256,
        x25519: X25519Secret,
        cfg: FollowerConfig,
        state: Option<StateDir>,
    ) -> Self {
        let cursor = state.as_ref().and_then(|s| match s.read(CURSOR_FILE) {
            Ok(Some(bytes)) => match serde_json::from_slice::<Cursor>(&bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable follower cursor");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the follower cursor");
                None
            }
        });
        Self {
            reader,
            shared,
            cidr,
            me,
            x25519,
            cfg,
            state,
            cursor,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notifying this makes the follower poll now.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor
    }

    /// Polls until `shutdown`. Errors are logged and counted; the next poll retries.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            Metrics::inc(&self.shared.metrics.chain_polls);
            if let Err(e) = self.poll_once().await {
                Metrics::inc(&self.shared.metrics.chain_poll_errors);
                tracing::warn!(error = %e, "chain poll failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One poll: refresh the view, then process confirmed logs after the cursor.
    pub async fn poll_once(&mut self) -> Result<(), ChainError> {
        let view = self.reader.read_view(self.cidr).await?;
        let head = view.block;
        self.shared.set_cluster(view, now_unix_ms());
        let safe = head.saturating_sub(self.cfg.confirmations);
        let from = match self.cursor {
            None => {
                // First run without a cursor: start at the confirmed head ("from now"); apps
                // that need older messages ask SubscribeMessages for a from_block.
                self.save_cursor(safe).await?;
                self.shared.update_status(|s| s.chain_head = safe);
                return Ok(());
            }
            Some(c) => match check_cursor(&c, self.reader.block_hash(c.block).await?) {
                CursorCheck::Continue(next) => next,
                CursorCheck::Rewind(next) => {
                    Metrics::inc(&self.shared.metrics.reorgs);
                    tracing::warn!(
                        cursor = c.block,
                        rewind_to = next,
                        "block under the cursor changed: reorg, rewinding"
                    );
                    next
                }
            },
        };
        if from > safe {
            return Ok(());
        }
        let owner = self.reader.cluster_owner().await.ok().map(owner_sender_id);
        let mut start = from;
        while start <= safe {
            let end = safe.min(start + MAX_LOG_RANGE - 1);
            let logs = self.reader.message_logs(self.me, start, end).await?;
            let me = self.me;
            for log in logs.iter().filter(|l| !l.removed && l.recipient == me) {
                let key = (log.sender, log.envelope_id);
                if self.seen.contains(&key) {
                    continue;
                }
                if let Some(msg) = open_message(&self.shared, &self.x25519, owner, log) {
                    self.remember(key);
                    tracing::info!(sender = %msg.sender, envelope = %msg.envelope_id, block = msg.block_number, "message received");
                    self.shared.deliver(msg);
                }
            }
            self.save_cursor(end).await?;
            start = end + 1;
        }
        self.shared.update_status(|s| s.chain_head = safe);
        Ok(())
    }

    fn remember(&mut self, key: (B256, B256)) {
        if self.seen.insert(key) {
            self.seen_order.push_back(key);
            if self.seen_order.len() > SEEN_CAPACITY
                && let Some(old) = self.seen_order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }

    async fn save_cursor(&mut self, block: u64) -> Result<(), ChainError> {
        let hash = self.reader.block_hash(block).await?.unwrap_or_default();
        let c = Cursor { block, hash };
        self.cursor = Some(c);
        if let Some(dir) = &self.state {
            // The cursor is public data; a failed write costs a re-scan after restart, nothing more.
            match serde_json::to_vec(&c) {
                Ok(bytes) => {
                    if let Err(e) = dir.write(CURSOR_FILE, &bytes) {
                        tracing::warn!(error = %e, "cannot persist the follower cursor");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode the follower cursor"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_continues_on_same_hash_and_rewinds_on_change() {
        let c = Cursor {
            block: 100,
            hash: B256::repeat_byte(1),
        };
        assert_eq!(
            check_cursor(&c, Some(B256::repeat_byte(1))),
            CursorCheck::Continue(101)
        );
        assert_eq!(
            check_cursor(&c, Some(B256::repeat_byte(2))),
            CursorCheck::Rewind(100 - REORG_REWIND)
        );
        assert_eq!(
            check_cursor(&c, None),
            CursorCheck::Rewind(100 - REORG_REWIND)
        );
        let low = Cursor {
            block: 3,
            hash: B256::ZERO,
        };
        assert_eq!(check_cursor(&low, None), CursorCheck::Rewind(1));
    }
}
