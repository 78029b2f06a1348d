//! gRPC `Indexer.Subscribe`.

use std::collections::VecDeque;
use std::sync::Arc;

use alloy_primitives::{Address, B256};
use attestmesh_core::push::fixed;
use tonic::{Request, Response, Status};

use crate::follower::{get_logs, outgoing};
use crate::hub::PushStream;
use crate::{Shared, pb};

pub struct IndexerService {
    shared: Arc<Shared>,
}

impl IndexerService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Everything concerning (cluster, member) in `[from, to]`, read from the chain and signed
    /// like live pushes.
    async fn replay(
        &self,
        cluster: Address,
        member: B256,
        from: u64,
        to: u64,
    ) -> Result<VecDeque<pb::Push>, Status> {
        let mut out = VecDeque::new();
        let mut start = from;
        while start <= to {
            let end = to.min(start.saturating_add(self.shared.batch_size - 1));
            let logs = get_logs(&self.shared.rpc, &[cluster], None, start, end)
                .await
                .map_err(|e| Status::unavailable(format!("replay from the chain failed: {e}")))?;
            for l in &logs {
                if let Some(o) = outgoing(&self.shared, l)
                    && o.concerns(cluster, member)
                {
                    out.push_back(o.push);
                }
            }
            if end == u64::MAX {
                break;
            }
            start = end + 1;
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl pb::indexer_server::Indexer for IndexerService {
    type SubscribeStream = PushStream;

    /// Registers first, then replays `[from_block, height-at-registration]` from the chain, so the
    /// replay and the live stream meet without a gap. The subscriber is not checked for
    /// membership: pushes are public chain data, and the one routing rule that matters
    /// (MessageSent only to its recipient) is applied by member id.
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
        let (reg, height) = self.shared.hub.subscribe(cluster, member, hello.from_block);
        let mut replay = VecDeque::new();
        if hello.from_block > 0
            && let Some(h) = height
            && hello.from_block <= h
        {
            if h - hello.from_block >= self.shared.max_replay_blocks {
                return Err(Status::out_of_range(format!(
                    "from_block {} is more than {} blocks behind the indexed height {h}",
                    hello.from_block, self.shared.max_replay_blocks
                )));
            }
            replay = self.replay(cluster, member, hello.from_block, h).await?;
        }
        tracing::debug!(%cluster, %member, from_block = hello.from_block, replay = replay.len(), "subscribed");
        Ok(Response::new(PushStream::new(
            reg,
            replay,
            self.shared.attestation.clone(),
        )))
    }
}
