//! The chain follower (DESIGN §9.1): polls always, from a durable cursor, acts only on blocks
//! buried under `CONFIRMATIONS`, and rewinds on a reorg.
//!
//! The decisions (which range next, does it extend our chain, how far to rewind, which events
//! were already delivered) are `attestmesh_core::follower`'s; this is the I/O shell around it.
//! Each poll re-reads the cluster's state with views at the confirmed block (head −
//! `CONFIRMATIONS`, the depth events are acted on) and publishes it (membership, keys and
//! commitment drive the mesh and the CSK), then fetches `MessageSent` logs addressed to this
//! node in the confirmed ranges the core hands out and delivers them opened.
//!
//! Wake-ups make it poll at once instead of waiting for the interval: our own submissions (a
//! [`Notify`]) and verified Indexer pushes ([`WakeUp`], DESIGN §9.2). A wake-up carries only a
//! block number and is used only as "poll now, until our own RPC shows that block"; what is
//! delivered always comes from our own `eth_getLogs`, so a lying Indexer can at worst make us
//! poll early.

use std::sync::Arc;
use std::time::Duration;

use crate::intake::WakeUp;
use alloy_primitives::B256;
use attestmesh_chain::cluster::{ClusterReader, ReadError};
use attestmesh_core::follower::{
    BlockRef, Checkpoint, Dedupe, Fetched, Follower as Core, FollowerError,
};
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::chainview::{open_message, owner_sender_id, read_view_at};
use crate::state::{Metrics, Shared, now_unix_ms};
use crate::statedir::StateDir;

/// File name of the cursor in the state directory.
pub const CURSOR_FILE: &str = "follower-cursor.json";
/// Blocks to step back when a reorg reaches below every block hash the follower still holds (the
/// fork point is unknown then): deeper than any reorg Base or a dev chain produces; re-delivery
/// is deduplicated by envelope id.
pub const REORG_REWIND: u64 = 64;
/// Range boundaries whose hashes are kept for precise reorg detection.
pub const RECENT_BLOCKS: usize = 256;
/// Largest block range of one `eth_getLogs` (public RPCs cap ranges).
pub const MAX_LOG_RANGE: u64 = 2_000;
/// Envelopes remembered for de-duplication across rewinds.
const SEEN_CAPACITY: usize = 8_192;
/// After a wake-up for a block our RPC does not show yet (it lags the Indexer's, or the block is
/// not confirmed yet), re-poll this often…
const WAKE_RETRY: Duration = Duration::from_millis(250);
/// …at most this many times; after that the regular interval takes over. Bounded so an Indexer
/// announcing far-future blocks cannot keep us polling fast.
const WAKE_RETRIES: u32 = 40;

/// The persisted cursor: the last block whose logs were processed, and its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub block: u64,
    pub hash: B256,
}

impl From<Checkpoint> for Cursor {
    fn from(c: Checkpoint) -> Self {
        Self {
            block: c.number,
            hash: c.hash,
        }
    }
}

impl From<Cursor> for Checkpoint {
    fn from(c: Cursor) -> Self {
        Self {
            number: c.block,
            hash: c.hash,
        }
    }
}

/// Follower settings.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    pub poll_interval: Duration,
    pub confirmations: u64,
}

/// Why one poll failed; the next poll retries.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Chain(#[from] ReadError),
    #[error("the RPC node does not have block {0} it reported as part of the chain")]
    MissingBlock(u64),
    #[error("the RPC node answered inconsistently: {0}")]
    Inconsistent(#[from] FollowerError),
    #[error("block {0} changed while its range was being read; re-reading next poll")]
    Moved(u64),
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
    /// `None` until the first poll decides where to start (persisted cursor or "from now").
    core: Option<Core>,
    seen: Dedupe<(B256, B256)>,
    wake: Arc<Notify>,
    wakeups: Option<mpsc::Receiver<WakeUp>>,
}

fn core_for(cp: Checkpoint, cfg: &FollowerConfig) -> Core {
    Core::resume(cp, cfg.confirmations, MAX_LOG_RANGE, RECENT_BLOCKS).with_rewind(REORG_REWIND)
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
        let core = cursor.map(|c| core_for(c.into(), &cfg));
        Self {
            reader,
            shared,
            cidr,
            me,
            x25519,
            cfg,
            state,
            core,
            seen: Dedupe::new(SEEN_CAPACITY),
            wake: Arc::new(Notify::new()),
            wakeups: None,
        }
    }

    /// Verified Indexer wake-ups (from [`crate::intake::Intake::run`]).
    pub fn with_wakeups(mut self, rx: mpsc::Receiver<WakeUp>) -> Self {
        self.wakeups = Some(rx);
        self
    }

    /// The state this follower publishes to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Notifying this makes the follower poll now.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// The last processed block, once the follower has started.
    pub fn cursor(&self) -> Option<Cursor> {
        self.core
            .as_ref()
            .and_then(Core::checkpoint)
            .map(Cursor::from)
    }

    /// Whether block `n` has been processed (its logs, if any, delivered).
    fn covers(&self, n: u64) -> bool {
        self.core.as_ref().is_some_and(|c| c.cursor() > n)
    }

    /// Polls until `shutdown`. Errors are logged and counted; the next poll retries.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // A wake-up's block not yet covered by a poll, and the fast retries left for it.
        let mut pending: Option<(u64, u32)> = None;
        loop {
            Metrics::inc(&self.shared.metrics.chain_polls);
            if let Err(e) = self.poll_once().await {
                Metrics::inc(&self.shared.metrics.chain_poll_errors);
                tracing::warn!(error = %e, "chain poll failed");
            }
            pending = match pending {
                Some((block, left)) if !self.covers(block) && left > 0 => Some((block, left - 1)),
                Some((block, _)) if !self.covers(block) => {
                    tracing::debug!(
                        block,
                        "woken for a block our RPC does not show yet; back to the interval"
                    );
                    None
                }
                _ => None,
            };
            let retry = async {
                match pending {
                    Some(_) => tokio::time::sleep(WAKE_RETRY).await,
                    None => std::future::pending().await,
                }
            };
            let pushed = async {
                match self.wakeups.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = self.wake.notified() => {}
                _ = retry => {}
                w = pushed => match w {
                    Some(w) => {
                        let mut block = w.block_number;
                        // Coalesce wake-ups queued meanwhile: one poll covers them all.
                        if let Some(rx) = self.wakeups.as_mut() {
                            while let Ok(more) = rx.try_recv() {
                                block = block.max(more.block_number);
                            }
                        }
                        Metrics::inc(&self.shared.metrics.indexer_wakeups);
                        tracing::debug!(block, "Indexer wake-up: polling now");
                        let block = pending.map_or(block, |(p, _)| p.max(block));
                        pending = (!self.covers(block)).then_some((block, WAKE_RETRIES));
                    }
                    None => {
                        // The intake stopped (shutdown); polling alone still converges.
                        self.wakeups = None;
                        continue;
                    }
                },
            }
        }
    }

    /// One poll: refresh the view, then process the confirmed ranges after the cursor.
    pub async fn poll_once(&mut self) -> Result<(), PollError> {
        let head = self.reader.head().await?;
        // Nothing is confirmed yet: no state to act on (the runtime waits for a view).
        let Some(safe) = head.checked_sub(self.cfg.confirmations) else {
            return Ok(());
        };
        // State at the same depth as the events acted on: a reorg above it cannot show us a
        // member or commitment that is then undone (DESIGN §9.1).
        let b = header(&self.reader, safe).await?;
        let view = read_view_at(&self.reader, self.cidr, &b).await?;
        self.shared.set_cluster(view, now_unix_ms());
        let Some(core) = self.core.as_mut() else {
            // First run without a cursor: start at the confirmed head ("from now"); apps that
            // need older messages ask SubscribeMessages for a from_block.
            let core = core_for(
                Checkpoint {
                    number: b.number,
                    hash: b.hash,
                },
                &self.cfg,
            );
            persist(self.state.as_ref(), core.checkpoint());
            self.core = Some(core);
            self.shared.update_status(|s| s.chain_head = safe);
            return Ok(());
        };
        let mut owner: Option<Option<B256>> = None;
        while let Some(r) = core.next_range(head) {
            // `to` before and after the reads: if its hash held, every read in between saw the
            // one chain that hash commits to (a block hash commits to all its ancestors).
            let last = header(&self.reader, r.to).await?;
            let logs = self.reader.message_logs(self.me, r.from, r.to).await?;
            let first = if r.from == r.to {
                last
            } else {
                header(&self.reader, r.from).await?
            };
            if header(&self.reader, r.to).await?.hash != last.hash {
                return Err(PollError::Moved(r.to));
            }
            let headers: &[BlockRef] = if r.from == r.to {
                &[last]
            } else {
                &[first, last]
            };
            match core.on_fetched(r, headers)? {
                Fetched::Reorg { next } => {
                    Metrics::inc(&self.shared.metrics.reorgs);
                    tracing::warn!(
                        from = r.from,
                        rewind_to = next,
                        "chain reorganised under the cursor: rewinding"
                    );
                    continue;
                }
                Fetched::Advanced { .. } => {}
            }
            if owner.is_none() {
                owner = Some(self.reader.cluster_owner().await.ok().map(owner_sender_id));
            }
            let me = self.me;
            for log in logs.iter().filter(|l| l.recipient == me) {
                let key = (log.sender, log.envelope_id);
                if self.seen.contains(&key) {
                    continue;
                }
                if let Some(msg) = open_message(
                    &self.shared,
                    &self.x25519,
                    self.reader.cluster(),
                    owner.flatten(),
                    log,
                ) {
                    self.seen.insert(key);
                    tracing::info!(sender = %msg.sender, envelope = %msg.envelope_id, block = msg.block_number, "message received");
                    self.shared.deliver(msg);
                }
            }
            persist(self.state.as_ref(), core.checkpoint());
        }
        let done = core.cursor().saturating_sub(1);
        self.shared.update_status(|s| s.chain_head = done);
        Ok(())
    }
}

/// The header of block `n`, which the node must have (it reported a head at or above `n`).
async fn header(reader: &ClusterReader, n: u64) -> Result<BlockRef, PollError> {
    reader.block(n).await?.ok_or(PollError::MissingBlock(n))
}

/// Writes the cursor. It is public data; a failed write costs a re-scan after restart, nothing
/// more, so it is logged rather than failing the poll.
fn persist(state: Option<&StateDir>, cp: Option<Checkpoint>) {
    let (Some(dir), Some(cp)) = (state, cp) else {
        return;
    };
    match serde_json::to_vec(&Cursor::from(cp)) {
        Ok(bytes) => {
            if let Err(e) = dir.write(CURSOR_FILE, &bytes) {
                tracing::warn!(error = %e, "cannot persist the follower cursor");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode the follower cursor"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The on-disk format is the one earlier agents wrote (`{"block", "hash"}`), so an upgrade
    /// resumes from the old cursor instead of starting "from now" and skipping messages.
    #[test]
    fn cursor_file_format_is_stable() {
        let c = Cursor {
            block: 100,
            hash: B256::repeat_byte(1),
        };
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["block"], 100);
        assert_eq!(json["hash"], B256::repeat_byte(1).to_string());
        let cp = Checkpoint::from(c);
        assert_eq!(Cursor::from(cp), c);
        let core = core_for(
            cp,
            &FollowerConfig {
                poll_interval: Duration::from_secs(1),
                confirmations: 0,
            },
        );
        assert_eq!(core.cursor(), 101);
        assert_eq!(core.checkpoint(), Some(cp));
    }
}
