//! The chain follower: discovers clusters from the factory's `ClusterDeployed` logs and pages
//! every cluster's logs with `eth_getLogs`, signing one push per log.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U64, keccak256};
use attestmesh_chain::rpc::{RpcClient, RpcError, fetch_halving};
use attestmesh_core::push::{PushBody, REPRO_METHOD, repro_params_json};
use serde::Deserialize;

use crate::hub::Outgoing;
use crate::state::{self, State};
use crate::{Config, Shared, pb};

/// topic0 of `ClusterDeployed(address indexed cluster, address indexed clusterOwner, bytes32 salt)`.
pub fn cluster_deployed_topic() -> B256 {
    keccak256("ClusterDeployed(address,address,bytes32)")
}

/// topic0 of `MessageSent(bytes32 indexed sender, bytes32 indexed recipient, bytes32 indexed
/// envelopeId, bytes ciphertext)`; topic2 is the recipient member id.
pub fn message_sent_topic() -> B256 {
    keccak256("MessageSent(bytes32,bytes32,bytes32,bytes)")
}

/// Addresses per `eth_getLogs` call: nodes cap filter sizes; a factory with many clusters is
/// queried in several calls per block range.
const ADDRESS_CHUNK: usize = 200;

/// A log as `eth_getLogs` returns it. Every field is required: a pending log (nulls) is not
/// indexable and fails decoding, which retries the batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RpcLog {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    pub block_number: U64,
    pub block_hash: B256,
    pub transaction_hash: B256,
    pub log_index: U64,
    #[serde(default)]
    pub removed: bool,
}

impl RpcLog {
    /// The push this log becomes (DESIGN §9.2): every field from the log, and the canonical
    /// `eth_getLogs` repro stub that returns exactly this log from any RPC node.
    pub fn push_body(&self) -> PushBody {
        PushBody {
            cluster: self.address,
            block_number: self.block_number.to(),
            block_hash: self.block_hash,
            tx_hash: self.transaction_hash,
            log_index: self.log_index.to(),
            address: self.address,
            topics: self.topics.clone(),
            data: self.data.to_vec(),
            repro_method: REPRO_METHOD.to_string(),
            repro_params_json: repro_params_json(self.address, self.block_hash, &self.topics),
        }
    }
}

/// `eth_getLogs` over `[from, to]` for `addresses` (chunked), optionally only `topic0`, merged in
/// chain order.
///
/// A request the provider refuses as too large (too many results or bytes: one busy cluster
/// can cause it) is halved down to single blocks ([`fetch_halving`]); a single block still too
/// large for a chunk of addresses is retried with half the addresses, so one noisy cluster never
/// stalls the others. Only one address's single block over the provider's cap fails the call.
pub async fn get_logs(
    rpc: &RpcClient,
    addresses: &[Address],
    topic0: Option<B256>,
    from: u64,
    to: u64,
) -> Result<Vec<RpcLog>, RpcError> {
    let mut all = Vec::new();
    let mut groups: Vec<&[Address]> = addresses.chunks(ADDRESS_CHUNK).rev().collect();
    while let Some(group) = groups.pop() {
        let fetched = fetch_halving(from, to, RpcError::is_range_too_large, |f, t| {
            get_logs_once(rpc, group, topic0, f, t)
        })
        .await;
        match fetched {
            Ok(mut logs) => all.append(&mut logs),
            Err(e) if e.is_range_too_large() && group.len() > 1 => {
                let (first, second) = group.split_at(group.len() / 2);
                groups.push(second);
                groups.push(first);
            }
            Err(e) => return Err(e),
        }
    }
    all.sort_by_key(|l| (l.block_number, l.log_index));
    Ok(all)
}

/// One `eth_getLogs` call, pending (`removed`) logs dropped.
async fn get_logs_once(
    rpc: &RpcClient,
    addresses: &[Address],
    topic0: Option<B256>,
    from: u64,
    to: u64,
) -> Result<Vec<RpcLog>, RpcError> {
    let mut filter = serde_json::json!({
        "fromBlock": format!("{from:#x}"),
        "toBlock": format!("{to:#x}"),
        "address": addresses,
    });
    if let Some(t) = topic0 {
        filter["topics"] = serde_json::json!([t]);
    }
    let logs: Vec<RpcLog> = rpc.call("eth_getLogs", serde_json::json!([filter])).await?;
    Ok(logs.into_iter().filter(|l| !l.removed).collect())
}

/// Signs one cluster log into a push and decides who receives it.
pub fn outgoing(shared: &Shared, log: &RpcLog) -> Option<Outgoing> {
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
        Some(t) if *t == message_sent_topic() => Some(*log.topics.get(2)?),
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
    pub fn new(shared: Arc<Shared>, cfg: &Config, state: State) -> Self {
        Self {
            shared,
            factory: cfg.cluster_factory,
            state_dir: cfg.state_dir.clone(),
            batch_size: cfg.batch_size,
            poll: cfg.poll_interval,
            confirmations: cfg.confirmations,
            state,
        }
    }

    /// Indexes until `stop` flips. Errors are logged and retried with backoff: the chain is the
    /// source of truth and will still be there.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = self.poll.min(Duration::from_millis(200));
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.step().await {
                Ok(true) => {
                    backoff = self.poll.min(Duration::from_millis(200));
                    continue;
                }
                Ok(false) => self.poll,
                Err(e) => {
                    self.shared.rpc_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "indexing step failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One batch. `Ok(true)` if more is ready right away.
    async fn step(&mut self) -> Result<bool, crate::IndexerError> {
        let rpc = &self.shared.rpc;
        let head = rpc.block_number().await?;
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
            rpc,
            &[self.factory],
            Some(cluster_deployed_topic()),
            from,
            to,
        )
        .await?;
        let mut clusters = self.state.clusters.clone();
        for l in &deployed {
            if let Some(t) = l.topics.get(1) {
                let c = Address::from_slice(&t[12..]);
                if !clusters.contains(&c) {
                    tracing::info!(cluster = %c, block = l.block_number.to::<u64>(), "cluster discovered");
                    clusters.push(c);
                }
            }
        }
        let logs = if clusters.is_empty() {
            Vec::new()
        } else {
            get_logs(rpc, &clusters, None, from, to).await?
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
