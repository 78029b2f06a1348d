//! The node's side of [`attestmesh_core::backoff`]: the schedules are sans-IO, this sleeps them
//! out on tokio's clock (a paused one in tests).
//!
//! Every node retry runs on a [`BackoffPolicy::forever`] schedule: what bounds it is the stop
//! flag or the shutdown signal of the task, never a time budget.

use std::time::Duration;

use attestmesh_core::backoff::{Backoff, BackoffPolicy};

/// Transient chain and boot failures: 250 ms doubling to 10 s.
pub(crate) const TRANSIENT: BackoffPolicy =
    BackoffPolicy::forever(Duration::from_millis(250), Duration::from_secs(10));

/// Sleeps the next delay of `b`; returns at once if a bounded schedule is spent.
pub(crate) async fn pause(b: &mut Backoff) {
    if let Some(d) = b.next_delay() {
        tokio::time::sleep(d).await;
    }
}
