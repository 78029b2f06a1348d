//! Getting the Cluster Shared Key (DESIGN §8): the I/O around `attestmesh_core::csk`.
//!
//! - Originator (`listMembers()[0]`): derive from the TEE, commit `keccak256(csk)` once through the
//!   submission path; after a restart re-derive and check against the commitment (fail closed on
//!   a mismatch: serving a different key would split the cluster).
//! - Everyone else: use the encrypted cache if it matches the current commitment, otherwise pull
//!   from peers over PeerControl in the core's candidate order, up to 8 at once, accepting only a
//!   key that hashes to the commitment; retry with jittered backoff forever.
//! - With a state directory the verified key is cached sealed under the `state` key.
//! - Once held, the key is kept only while the chain view commits to it ([`CskContext::maintain`]):
//!   a reorg that changes the commitment makes the node drop it and acquire again.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use alloy_sol_types::SolCall as _;
use attestmesh_chain::bindings::IAttestFacet;
use attestmesh_core::backoff::{Backoff, BackoffPolicy};
use attestmesh_core::csk::{
    self, CacheContext, CacheOutcome, MAX_PARALLEL_PULLS, OriginatorDecision,
};
use attestmesh_core::keys::{SymmetricKey, X25519Secret};
use tokio::task::JoinSet;

use crate::peer::{self, PullError, PullTimeouts};
use crate::ports::{SubmitError, Submitter};
use crate::state::{ClusterView, Metrics, Shared};
use crate::statedir::StateDir;

/// Cache file name in the state directory.
pub const CACHE_FILE: &str = "csk.cache";

/// Why the agent cannot hold a CSK at all (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum CskError {
    #[error(
        "the CSK derived from the TEE hashes to {derived}, but the chain's commitment is {on_chain}: the originator's code or KMS identity changed; refusing to serve a different key"
    )]
    OriginatorMismatch { on_chain: B256, derived: B256 },
    #[error("committing the CSK was rejected: {0}")]
    CommitRejected(SubmitError),
}

/// What the CSK task needs.
pub struct CskContext {
    pub shared: Arc<Shared>,
    pub me: B256,
    pub my_ip: IpAddr,
    pub x25519: X25519Secret,
    pub derived_csk: SymmetricKey,
    pub state_key: SymmetricKey,
    pub state: Option<StateDir>,
    pub submitter: Arc<dyn Submitter>,
    pub peer_control_port: u16,
    /// Poked after our own commit so the follower re-reads the commitment at once.
    pub wake_follower: Arc<tokio::sync::Notify>,
}

/// CSK commit and pull retries: 250 ms doubling to 8 s, until the CSK is held.
const RETRY_FOREVER: BackoffPolicy =
    BackoffPolicy::forever(Duration::from_millis(250), Duration::from_secs(8));

impl CskContext {
    fn view(&self) -> Option<Arc<ClusterView>> {
        self.shared.cluster()
    }

    /// Waits for the next published chain view.
    async fn next_view(&self, rx: &mut tokio::sync::watch::Receiver<Option<Arc<ClusterView>>>) {
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    }

    /// Runs until the CSK is held (returns it) or the agent must fail closed.
    pub async fn acquire(&self) -> Result<SymmetricKey, CskError> {
        let mut rx = self.shared.watch_cluster();
        let mut backoff = Backoff::new(RETRY_FOREVER);
        loop {
            let Some(view) = self.view() else {
                self.next_view(&mut rx).await;
                continue;
            };
            let commitment = (!view.commitment.is_zero()).then_some(view.commitment);
            let originator = view.originator().map(|m| m.id);
            if originator == Some(self.me) {
                match csk::originator_decision(&self.derived_csk, commitment.as_ref()) {
                    OriginatorDecision::Ok => return Ok(self.hold(self.derived_csk.clone(), &view)),
                    OriginatorDecision::Mismatch { on_chain, derived } => {
                        return Err(CskError::OriginatorMismatch { on_chain, derived });
                    }
                    OriginatorDecision::Commit(c) => {
                        let call =
                            IAttestFacet::setCskCommitmentCall { commitment: c }.abi_encode();
                        match self.submitter.submit(call).await {
                            Ok(s) => {
                                tracing::info!(commitment = %c, tx = %s.tx_hash, "CSK commitment set");
                                self.wake_follower.notify_one();
                            }
                            // Somebody (an earlier run of ours) committed meanwhile: re-read.
                            Err(SubmitError::Rejected {
                                contract_error: Some(ref c),
                                ..
                            }) if c.is::<IAttestFacet::CskCommitmentAlreadySet>() => {
                                self.wake_follower.notify_one();
                            }
                            Err(e @ SubmitError::Rejected { .. }) => {
                                Metrics::inc(&self.shared.metrics.submissions_failed);
                                return Err(CskError::CommitRejected(e));
                            }
                            Err(e) => {
                                Metrics::inc(&self.shared.metrics.submissions_failed);
                                tracing::warn!(error = %e, "committing the CSK failed; retrying");
                                crate::retry::pause(&mut backoff).await;
                            }
                        }
                        // The commitment is acted on once the follower reads it back.
                        self.next_view(&mut rx).await;
                        continue;
                    }
                }
            }
            let Some(commitment) = commitment else {
                tracing::debug!("no CSK commitment on chain yet; waiting for the originator");
                self.next_view(&mut rx).await;
                continue;
            };
            if let Some(k) = self.read_cache(&view, &commitment) {
                tracing::info!("CSK restored from the encrypted cache");
                return Ok(self.hold(k, &view));
            }
            match self.pull_once(&view, commitment).await {
                Some(k) => {
                    tracing::info!("CSK pulled from a peer and verified against the commitment");
                    return Ok(self.hold(k, &view));
                }
                None => {
                    crate::retry::pause(&mut backoff).await;
                }
            }
        }
    }

    /// Holds `key` while the chain commits to it. When a later (confirmed) view commits to
    /// something else — a reorg replaced or removed the commitment the key was checked against —
    /// drops it and acquires again, so this node never keeps using or serving a key the cluster
    /// does not share. Returns only to fail closed.
    pub async fn maintain(
        &self,
        mut key: SymmetricKey,
    ) -> Result<std::convert::Infallible, CskError> {
        let mut rx = self.shared.watch_cluster();
        loop {
            let held = key.commitment();
            let superseded = rx
                .wait_for(|v| v.as_ref().is_some_and(|v| v.commitment != held))
                .await
                .map(|v| v.as_ref().map(|v| v.commitment).unwrap_or_default());
            let Ok(on_chain) = superseded else {
                // `Shared` outlives every task; without views there is nothing to re-check.
                return std::future::pending().await;
            };
            tracing::warn!(
                %held,
                %on_chain,
                "the chain no longer commits to the CSK held here (reorg?): dropping it and re-acquiring"
            );
            self.shared.drop_csk();
            key = self.acquire().await?;
            tracing::info!(commitment = %key.commitment(), "CSK re-acquired");
        }
    }

    fn hold(&self, key: SymmetricKey, view: &ClusterView) -> SymmetricKey {
        if let Some(dir) = &self.state {
            let mut nonce = [0u8; 24];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            let ctx = CacheContext {
                cluster: view.cluster,
                member_id: self.me,
            };
            match csk::seal_cache(&self.state_key, &ctx, &key, &nonce) {
                Ok(bytes) => {
                    if let Err(e) = dir.write(CACHE_FILE, &bytes) {
                        tracing::warn!(error = %e, "cannot write the CSK cache");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot seal the CSK cache"),
            }
        }
        self.shared.set_csk(key.clone());
        key
    }

    fn read_cache(&self, view: &ClusterView, commitment: &B256) -> Option<SymmetricKey> {
        let dir = self.state.as_ref()?;
        let bytes = match dir.read(CACHE_FILE) {
            Ok(b) => b?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the CSK cache");
                return None;
            }
        };
        let ctx = CacheContext {
            cluster: view.cluster,
            member_id: self.me,
        };
        match csk::open_cache(&self.state_key, &ctx, Some(commitment), &bytes) {
            Ok(CacheOutcome::Hit(k)) => Some(k),
            Ok(CacheOutcome::Ignored(why)) => {
                tracing::info!(
                    ?why,
                    "CSK cache does not match the current chain state; ignored"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "CSK cache is corrupt or forged; ignored");
                None
            }
        }
    }

    /// One round over the candidates, [`MAX_PARALLEL_PULLS`] at a time; first valid answer wins.
    async fn pull_once(&self, view: &ClusterView, commitment: B256) -> Option<SymmetricKey> {
        let live: Vec<B256> = self
            .shared
            .liveness()
            .into_iter()
            .filter(|(_, l)| l.live)
            .map(|(id, _)| id)
            .collect();
        let members: Vec<B256> = view
            .members
            .iter()
            .filter(|m| m.routable)
            .map(|m| m.id)
            .collect();
        let order =
            csk::pull_candidates(&self.me, view.originator().map(|m| &m.id), &live, &members);
        for wave in order.chunks(MAX_PARALLEL_PULLS) {
            let mut set = JoinSet::new();
            for id in wave {
                let Some(m) = view.member(id) else { continue };
                let addr = SocketAddr::new(IpAddr::V4(m.mesh_ip), self.peer_control_port);
                let x = self.x25519.clone();
                let (me, local) = (self.me, self.my_ip);
                set.spawn(async move {
                    peer::request_csk(
                        addr,
                        Some(local),
                        me,
                        &x,
                        commitment,
                        PullTimeouts::default(),
                    )
                    .await
                });
            }
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(Ok(k)) => return Some(k),
                    Ok(Err(e @ PullError::Bogus { .. })) => {
                        Metrics::inc(&self.shared.metrics.csk_bogus_answers);
                        tracing::warn!(error = %e, "bogus CSK answer rejected");
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "CSK pull attempt failed"),
                    Err(e) => tracing::warn!(error = %e, "CSK pull task failed"),
                }
            }
        }
        None
    }
}
