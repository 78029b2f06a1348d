//! Issue 11 hole 3, last part: one cluster that emits more logs than an `eth_getLogs` answer may
//! carry must not stall the Indexer for every other cluster. Real anvil behind a capped JSON-RPC
//! endpoint (a provider's "query returned more than N results"), an in-process Indexer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_chain::deploy::{self};
use attestmesh_chain::devstack::dev_cluster_args;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_indexer::Config;
use attestmesh_tee::kms;
use common::{
    capped_rpc, dev_cluster, devtee, next_push, register_members, send_msg, start_indexer,
    subscribe, wait_indexed,
};

/// The provider's cap on logs per answer.
const LIMIT: usize = 20;
/// Messages the noisy cluster sends, one block each: three times what one answer may carry.
const NOISE: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_indexer_noisy_cluster_does_not_stall_others() {
    let (chain, _artifacts, infra, quiet) = dev_cluster().await;
    let (owner, submitter) = (chain.accounts[1], chain.accounts[2]);
    let noisy = deploy::deploy_cluster(
        &chain.rpc,
        chain.deployer(),
        &infra,
        dev_cluster_args(
            owner,
            MeshCidr::new(0x0a0e_0000, 16).unwrap(),
            infra.member_factory,
            vec![kms::DEV_KMS_ROOT_ADDRESS],
        ),
        B256::repeat_byte(2),
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (dq, dn) = (tmp.path().join("quiet"), tmp.path().join("noisy"));
    std::fs::create_dir_all(&dq).unwrap();
    std::fs::create_dir_all(&dn).unwrap();
    let (_tq, q) = register_members(&chain, &infra, quiet, submitter, &dq, &[2, 3]).await;
    let (_tn, n) = register_members(&chain, &infra, noisy, submitter, &dn, &[4, 5]).await;

    let mut noise_blocks = Vec::new();
    for i in 0..NOISE {
        noise_blocks.push(send_msg(&chain.rpc, noisy, n[0].0, n[1].1, i as u8, 32).await);
    }
    let quiet_block = send_msg(&chain.rpc, quiet, q[0].0, q[1].1, 0xee, 32).await;

    let capped = capped_rpc(chain.url(), LIMIT).await;
    let ix_sock = tmp.path().join("indexer.sock");
    let _ix_tee = devtee(&ix_sock, Address::repeat_byte(0x1d)).await;
    let mut cfg = Config::new(
        capped.url.clone(),
        infra.diamond_factory,
        tmp.path().join("state"),
        ix_sock,
    );
    cfg.poll_interval = Duration::from_millis(20);
    // One batch spans the whole chain: without splitting, every batch is refused.
    cfg.batch_size = 1000;
    let ix = start_indexer(cfg).await;
    wait_indexed(&chain.rpc, ix.http).await;
    assert!(
        capped.refused.load(Ordering::Relaxed) > 0,
        "the provider's cap was never hit: the test proves nothing"
    );

    // The quiet cluster's message arrives (replayed through the same capped endpoint).
    let mut qs = subscribe(&ix.grpc, quiet, q[1].1, quiet_block).await;
    let p = next_push(&mut qs).await;
    assert_eq!(p.block_number, quiet_block);
    assert_eq!(p.cluster, quiet.to_vec());

    // The noisy cluster's messages all arrive, each once, in order.
    let msg_topic = keccak256("MessageSent(bytes32,bytes32,bytes32,bytes)");
    let mut ns = subscribe(&ix.grpc, noisy, n[1].1, noise_blocks[0]).await;
    let mut got = Vec::new();
    while got.len() < NOISE {
        let p = next_push(&mut ns).await;
        let ev = p.event.as_ref().unwrap();
        if ev.topics.first().map(|t| t.as_slice()) == Some(msg_topic.as_slice()) {
            got.push(p.block_number);
        }
    }
    assert_eq!(got, noise_blocks, "nothing lost, nothing duplicated");
    ix.shutdown().await;
}
