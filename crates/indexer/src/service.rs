//! gRPC `Indexer.Subscribe`.

use std::sync::Arc;

use alloy_primitives::{Address, B256};
use attestmesh_core::push::fixed;
use tonic::{Request, Response, Status};

use crate::hub::PushStream;
use crate::{Shared, pb, replay};

pub struct IndexerService {
    shared: Arc<Shared>,
}

impl IndexerService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// RESOURCE_EXHAUSTED for a `from_block` deeper than the replay cap, tagged (metadata
/// [`pb::CAP_METADATA_KEY`]) so the agent knows to resubscribe live rather than back off.
fn replay_too_deep(from_block: u64, cap: u64, height: u64) -> Status {
    let mut s = Status::resource_exhausted(format!(
        "{}: from_block {from_block} is more than {cap} blocks behind the indexed height {height}; \
         resubscribe live (from_block 0) and read older events from the chain",
        pb::CAP_REPLAY_DEPTH
    ));
    s.metadata_mut().insert(
        pb::CAP_METADATA_KEY,
        tonic::metadata::MetadataValue::from_static(pb::CAP_REPLAY_DEPTH),
    );
    s
}

#[tonic::async_trait]
impl pb::indexer_server::Indexer for IndexerService {
    type SubscribeStream = PushStream;

    /// Registers first, then replays `[from_block, height-at-registration]` from the chain, so the
    /// replay and the live stream meet without a gap. The subscriber is not checked for
    /// membership: pushes are public chain data, and the one routing rule that matters
    /// (MessageSent only to its recipient) is applied by member id. What anyone can ask for is
    /// capped: subscriptions per (cluster, member) and in total ([`crate::hub::Limits`]) and
    /// the replay depth; the replay itself streams page by page ([`replay`]).
    async fn subscribe(&self, req: Request<pb::Hello>) -> Result<Response<PushStream>, Status> {
        let hello = req.into_inner();
        let cluster = Address::from(
            fixed::<20>("cluster", &hello.cluster)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        );
        let member = B256::from(
            fixed::<32>("member_id", &hello.member_id)
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        );
        let (reg, height) = self
            .shared
            .hub
            .subscribe(cluster, member, hello.from_block)?;
        let mut pages = None;
        if hello.from_block > 0
            && let Some(h) = height
            && hello.from_block <= h
        {
            if h - hello.from_block >= self.shared.max_replay_blocks {
                self.shared
                    .hub
                    .counters
                    .refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(replay_too_deep(
                    hello.from_block,
                    self.shared.max_replay_blocks,
                    h,
                ));
            }
            pages = Some(replay::replay(
                self.shared.clone(),
                cluster,
                member,
                hello.from_block,
                h,
            ));
        }
        tracing::debug!(%cluster, %member, from_block = hello.from_block, replay_to = ?height, "subscribed");
        Ok(Response::new(PushStream::new(
            reg,
            pages,
            self.shared.attestation.clone(),
        )))
    }
}
