//! The Indexer's follower against a simulated chain (`attestmesh_chain::sim`): discovery from the
//! factory, signed pushes to the right subscriber, provider log caps, and a restart from the
//! state file — the real `Follower`, without anvil's timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes};
use attestmesh_chain::bindings::{IClusterDiamondFactory, IMessageFacet};
use attestmesh_chain::read::{ChainReader, Log, LogFilter};
use attestmesh_chain::sim::SimChain;
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_indexer::follower::Follower;
use attestmesh_indexer::hub::{Hub, Limits, PushStream};
use attestmesh_indexer::state::{self, State};
use attestmesh_indexer::{Config, Shared, pb};
use futures_util::StreamExt;

const FACTORY: Address = Address::repeat_byte(0xfa);
const CLUSTER: Address = Address::repeat_byte(0xc1);

fn shared(chain: Arc<SimChain>) -> Arc<Shared> {
    let key = Ed25519Secret::from_seed([5; 32]);
    Arc::new(Shared {
        chain,
        pubkey: key.public(),
        key,
        attestation: pb::Attestation::default(),
        hub: Hub::new(
            64,
            None,
            Limits {
                per_member: 4,
                total: 16,
            },
        ),
        head: AtomicU64::new(0),
        head_known: AtomicBool::new(false),
        cluster_count: AtomicU64::new(0),
        logs_indexed: AtomicU64::new(0),
        rpc_errors: AtomicU64::new(0),
        healthy_lag_blocks: 10,
        batch_size: 4,
        max_replay_blocks: 1000,
    })
}

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::new(
        "http://127.0.0.1:1".into(),
        FACTORY,
        dir.to_path_buf(),
        dir.join("unused.sock"),
    );
    cfg.batch_size = 4;
    cfg
}

fn fresh() -> State {
    State {
        factory: FACTORY,
        next_block: 0,
        clusters: Vec::new(),
    }
}

/// The chain's own log behind `p`, as the follower should have signed it.
async fn chain_log(chain: &SimChain, p: &pb::Push) -> Log {
    let filter = LogFilter::new(&[CLUSTER], p.block_number, p.block_number);
    let logs = ChainReader::logs(chain, &filter).await.unwrap();
    logs.into_iter()
        .find(|l| l.log_index == p.log_index)
        .expect("the pushed log is on the chain")
}

/// The factory's `ClusterDeployed` for [`CLUSTER`], in the next block.
fn deploy_cluster(chain: &SimChain) {
    chain.emit(
        FACTORY,
        &IClusterDiamondFactory::ClusterDeployed {
            cluster: CLUSTER,
            clusterOwner: Address::repeat_byte(0x0e),
            salt: B256::ZERO,
        },
    );
}

fn message(chain: &SimChain, recipient: B256, envelope: u8) {
    chain.emit(
        CLUSTER,
        &IMessageFacet::MessageSent {
            senderMemberId: B256::repeat_byte(0xaa),
            recipientMemberId: recipient,
            envelopeId: B256::repeat_byte(envelope),
            ciphertext: Bytes::from(vec![envelope; 40]),
        },
    );
}

/// Steps until the follower has caught up with the chain.
async fn catch_up(f: &mut Follower) {
    while f.step().await.unwrap() {}
}

async fn next(stream: &mut PushStream) -> pb::Push {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a push")
        .expect("stream open")
        .expect("not an error")
}

#[tokio::test]
async fn discovers_clusters_and_pushes_signed_logs_to_their_recipient_only() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(SimChain::new());
    let sh = shared(chain.clone());
    let me = B256::repeat_byte(0x02);
    let (reg, _) = sh.hub.subscribe(CLUSTER, me, 0).unwrap();
    let mut stream = PushStream::new(reg, None, pb::Attestation::default());

    deploy_cluster(&chain);
    message(&chain, me, 0x01);
    chain.mine();
    message(&chain, B256::repeat_byte(0x03), 0x02);
    chain.mine_n(9);
    message(&chain, me, 0x03);
    chain.mine();

    let mut f = Follower::new(sh.clone(), &config(dir.path()), 0, fresh());
    catch_up(&mut f).await;
    assert_eq!(sh.cluster_count.load(Ordering::Relaxed), 1);

    for envelope in [0x01u8, 0x03] {
        let p = next(&mut stream).await;
        let ev = p.event.as_ref().unwrap();
        assert_eq!(ev.topics[3], B256::repeat_byte(envelope).to_vec());
        chain_log(&chain, &p)
            .await
            .push_body()
            .verify(&sh.pubkey, &p.signature)
            .expect("the push signs exactly the chain's log with the Indexer key");
    }
    let saved = state::load(dir.path(), FACTORY).unwrap().unwrap();
    assert_eq!(saved.clusters, vec![CLUSTER]);
    assert_eq!(saved.next_block, chain.tip().number + 1);
}

#[tokio::test]
async fn a_capped_provider_and_a_restart_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(SimChain::new());
    let me = B256::repeat_byte(0x02);
    deploy_cluster(&chain);
    chain.mine();
    for i in 0..3u8 {
        message(&chain, me, i);
        message(&chain, me, 0x10 + i);
        chain.mine();
    }
    // At most two results per request: every wider range is refused and split down to single
    // blocks (each holds exactly two).
    chain.limit_logs(None, Some(2));

    let sh = shared(chain.clone());
    let (reg, _) = sh.hub.subscribe(CLUSTER, me, 0).unwrap();
    let mut stream = PushStream::new(reg, None, pb::Attestation::default());
    let mut f = Follower::new(sh.clone(), &config(dir.path()), 0, fresh());
    catch_up(&mut f).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next(&mut stream).await.event.unwrap().topics[3][31]);
    }
    assert_eq!(seen, vec![0, 0x10, 1, 0x11, 2, 0x12]);

    // A restart from the state file continues after the last indexed block.
    message(&chain, me, 0x20);
    chain.mine();
    let sh2 = shared(chain.clone());
    let (reg2, _) = sh2.hub.subscribe(CLUSTER, me, 0).unwrap();
    let mut stream2 = PushStream::new(reg2, None, pb::Attestation::default());
    let st = state::load(dir.path(), FACTORY).unwrap().unwrap();
    let mut f2 = Follower::new(sh2.clone(), &config(dir.path()), 0, st);
    catch_up(&mut f2).await;
    let p = next(&mut stream2).await;
    assert_eq!(p.event.unwrap().topics[3][31], 0x20, "only the new log");
    assert_eq!(sh2.logs_indexed.load(Ordering::Relaxed), 1);
}
