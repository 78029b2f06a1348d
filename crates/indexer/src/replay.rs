//! The replay of a `from_block` resume, page by page (issue 11 hole 3).
//!
//! A page is one `eth_getLogs` over `batch_size` blocks. The next page is read only once every
//! push of the previous one has been taken by the response stream, and the response stream is
//! polled only as fast as HTTP/2 flow control lets the client receive. So an Indexer holds at
//! most one page per replay, however far back `from_block` reaches, and a client that stops
//! reading stops costing RPC calls.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use alloy_primitives::{Address, B256};
use futures_util::StreamExt;
use tonic::Status;

use crate::Shared;
use crate::follower::{get_logs, outgoing};
use crate::hub::ReplayStream;

/// Everything concerning (cluster, member) in `[from, to]`, read from the chain and signed like
/// live pushes, as a lazy stream.
pub fn replay(
    shared: Arc<Shared>,
    cluster: Address,
    member: B256,
    from: u64,
    to: u64,
) -> ReplayStream {
    let pages = futures_util::stream::unfold(Some(from), move |next| {
        let shared = shared.clone();
        async move {
            let start = next?;
            let end = to.min(start.saturating_add(shared.batch_size.max(1) - 1));
            let page = match get_logs(&shared, &[cluster], None, start, end).await {
                Ok(logs) => {
                    shared
                        .hub
                        .counters
                        .replay_pages
                        .fetch_add(1, Ordering::Relaxed);
                    logs.iter()
                        .filter_map(|l| outgoing(&shared, l))
                        .filter(|o| o.concerns(cluster, member))
                        .map(|o| Ok(o.push))
                        .collect::<Vec<_>>()
                }
                // The stream ends after the error: the agent resubscribes from its last block.
                Err(e) => {
                    return Some((
                        vec![Err(Status::unavailable(format!(
                            "replay from the chain failed: {e}"
                        )))],
                        None,
                    ));
                }
            };
            let next = (end < to).then(|| end + 1);
            Some((page, next))
        }
    });
    Box::pin(pages.flat_map(futures_util::stream::iter))
}
