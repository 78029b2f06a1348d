//! The chain follower: discovers clusters from the factory's `ClusterDeployed` logs and pages
//! every cluster's logs with `eth_getLogs`, signing one push per log.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use alloy_sol_types::SolEvent;
use attestmesh_chain::bindings::{IClusterDiamondFactory, IMessageFacet};
use attestmesh_chain::read::{Log, LogFilter, logs_split};
use attestmesh_chain::rpc::RpcError;
use attestmesh_core::backoff::{Backoff, BackoffPolicy};

use crate::hub::Outgoing;
use crate::state::{self, State};
use crate::{Config, Shared, pb};

/// `eth_getLogs` over `[from, to]` for `addresses`, optionally only `topic0`, in chain order,
/// however many addresses and however busy the range ([`logs_split`]).
pub async fn get_logs(
    shared: &Shared,
    addresses: &[Address],
    topic0: Option<B256>,
    from: u64,
    to: u64,
) -> Result<Vec<Log>, RpcError> {
    let mut filter = LogFilter::new(addresses, from, to);
    if let Some(t) = topic0 {
        filter = filter.topic(0, &[t]);
    }
    logs_split(shared.chain.as_ref(), &filter).await
}

/// Signs one cluster log into a push and decides who receives it.
pub fn outgoing(shared: &Shared, log: &Log) -> Option<Outgoing> {
    let cluster = log.address;
    let body = log.push_body();
    let signature = match body.sign(&shared.key) {
        Ok(s) => s,
        Err(e) => {
            // Only a log with more than four topics could get here; no EVM emits one.
            tracing::warn!(error = %e, "unsignable log skipped");
            return None;
        }
    };
    let recipient = match log.topics.first() {
        Some(t) if *t == IMessageFacet::MessageSent::SIGNATURE_HASH => Some(*log.topics.get(2)?),
        _ => None,
    };
    Some(Outgoing {
        cluster,
        block_number: body.block_number,
        recipient,
        push: pb::Push {
            cluster: cluster.to_vec(),
            block_number: body.block_number,
            block_hash: body.block_hash.to_vec(),
            tx_hash: body.tx_hash.to_vec(),
            log_index: body.log_index,
            event: Some(pb::Log {
                address: body.address.to_vec(),
                topics: body.topics.iter().map(|t| t.to_vec()).collect(),
                data: body.data,
            }),
            repro: Some(pb::Repro {
                method: body.repro_method,
                params_json: body.repro_params_json,
            }),
            signature: signature.to_vec(),
            attestation: None,
        },
    })
}

pub struct Follower {
    shared: Arc<Shared>,
    factory: Address,
    state_dir: std::path::PathBuf,
    batch_size: u64,
    poll: Duration,
    confirmations: u64,
    state: State,
}

impl Follower {
    /// `confirmations` is the resolved depth (the configured one or the chain's default).
    pub fn new(shared: Arc<Shared>, cfg: &Config, confirmations: u64, state: State) -> Self {
        Self {
            shared,
            factory: cfg.cluster_factory,
            state_dir: cfg.state_dir.clone(),
            batch_size: cfg.batch_size,
            poll: cfg.poll_interval,
            confirmations,
            state,
        }
    }

    /// Indexes until `stop` flips. Errors are logged and retried with backoff: the chain is the
    /// source of truth and will still be there.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        // The first retry after 400 ms (or the poll interval, if shorter), doubling to 30 s.
        let initial = self.poll.min(Duration::from_millis(200)) * 2;
        let mut backoff = Backoff::new(BackoffPolicy::forever(initial, Duration::from_secs(30)));
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.step().await {
                Ok(true) => {
                    backoff.reset();
                    continue;
                }
                Ok(false) => self.poll,
                Err(e) => {
                    self.shared.rpc_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "indexing step failed; retrying");
                    backoff.next_delay().unwrap_or(self.poll)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One batch. `Ok(true)` if more is ready right away.
    pub async fn step(&mut self) -> Result<bool, crate::IndexerError> {
        let head = self.shared.chain.head().await?;
        self.shared.head.store(head, Ordering::Relaxed);
        self.shared.head_known.store(true, Ordering::Relaxed);
        let safe = head.saturating_sub(self.confirmations);
        let from = self.state.next_block;
        if from > safe {
            return Ok(false);
        }
        let to = safe.min(from.saturating_add(self.batch_size - 1));
        // Discovery first: a cluster deployed in this range has its own logs in this range too.
        let deployed = get_logs(
            &self.shared,
            &[self.factory],
            Some(IClusterDiamondFactory::ClusterDeployed::SIGNATURE_HASH),
            from,
            to,
        )
        .await?;
        let mut clusters = self.state.clusters.clone();
        for l in &deployed {
            if let Some(t) = l.topics.get(1) {
                let c = Address::from_slice(&t[12..]);
                if !clusters.contains(&c) {
                    tracing::info!(cluster = %c, block = l.block_number, "cluster discovered");
                    clusters.push(c);
                }
            }
        }
        let logs = if clusters.is_empty() {
            Vec::new()
        } else {
            get_logs(&self.shared, &clusters, None, from, to).await?
        };
        let batch: Vec<Outgoing> = logs
            .iter()
            .filter_map(|l| outgoing(&self.shared, l))
            .collect();
        self.shared.hub.publish(&batch, to);
        self.shared
            .logs_indexed
            .fetch_add(logs.len() as u64, Ordering::Relaxed);
        self.shared
            .cluster_count
            .store(clusters.len() as u64, Ordering::Relaxed);
        self.state.clusters = clusters;
        self.state.next_block = to + 1;
        state::save(&self.state_dir, &self.state)?;
        Ok(to < safe)
    }
}
