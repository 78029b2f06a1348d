//! Attack tests for issue 11 hole 3 (Indexer exhaustion): an outsider opens many subscriptions or
//! asks for deep replays. Real anvil, the real contracts, an in-process Indexer on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use alloy_primitives::{Address, B256};
use attestmesh_chain::devstack::Devchain;
use attestmesh_indexer::Config;
use attestmesh_indexer::pb::{Hello, indexer_client::IndexerClient};
use common::{
    Running, dev_cluster, devtee, http_get, metric, next_push, register_members, send_msg,
    start_indexer, try_subscribe, wait_indexed,
};
use tokio_stream::StreamExt;

struct World {
    chain: Devchain,
    cluster: Address,
    /// (member contract, member id) of A and B.
    a: (Address, B256),
    b: (Address, B256),
    ix: Running,
    _tees: Vec<tokio::sync::oneshot::Sender<()>>,
    _ix_tee: tokio::sync::oneshot::Sender<()>,
    _tmp: tempfile::TempDir,
}

async fn world(tune: impl FnOnce(&mut Config)) -> World {
    let (chain, _artifacts, infra, cluster) = dev_cluster().await;
    let submitter = chain.accounts[2];
    let tmp = tempfile::tempdir().unwrap();
    let (tees, members) =
        register_members(&chain, &infra, cluster, submitter, tmp.path(), &[2, 3]).await;
    let ix_sock = tmp.path().join("indexer.sock");
    let ix_tee = devtee(&ix_sock, Address::repeat_byte(0x1d)).await;
    let mut cfg = Config::new(
        chain.url().to_string(),
        infra.diamond_factory,
        tmp.path().join("state"),
        ix_sock,
    );
    cfg.poll_interval = Duration::from_millis(20);
    tune(&mut cfg);
    let ix = start_indexer(cfg).await;
    wait_indexed(&chain.rpc, ix.http).await;
    World {
        chain,
        cluster,
        a: members[0],
        b: members[1],
        ix,
        _tees: tees,
        _ix_tee: ix_tee,
        _tmp: tmp,
    }
}

fn assert_exhausted(
    r: Result<tonic::Streaming<attestmesh_indexer::pb::Push>, tonic::Status>,
    cap: &str,
) {
    match r {
        Ok(_) => panic!("subscription over the {cap} cap was accepted"),
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert!(
                s.message().contains(cap),
                "message names the cap: {}",
                s.message()
            );
        }
    }
}

/// (a) One member opens N+1 subscriptions: the extra one is refused, the first N keep streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_indexer_subscriptions_per_member_capped() {
    let w = world(|c| c.max_subscriptions_per_member = 3).await;
    let (cluster, idb) = (w.cluster, w.b.1);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(try_subscribe(&w.ix.grpc, cluster, idb, 0).await.unwrap());
    }
    assert_exhausted(
        try_subscribe(&w.ix.grpc, cluster, idb, 0).await,
        "max_subscriptions_per_member",
    );
    // Another member is not affected by B's cap.
    let _a = try_subscribe(&w.ix.grpc, cluster, w.a.1, 0).await.unwrap();
    let blk = send_msg(&w.chain.rpc, cluster, w.a.0, idb, 0x42, 64).await;
    for s in held.iter_mut() {
        assert_eq!(
            next_push(s).await.block_number,
            blk,
            "the first N still stream"
        );
    }
    // A dropped subscription frees its slot.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        match try_subscribe(&w.ix.grpc, cluster, idb, 0).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "a freed slot is reusable");
    let (_, m) = http_get(w.ix.http, "/metrics").await;
    assert!(metric(&m, "attestmesh_indexer_subscriptions_refused_total") >= 1);
    w.ix.shutdown().await;
}

/// (b) Many members (ids need not be registered: pushes are public) fill the total cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_indexer_total_subscriptions_capped() {
    let w = world(|c| {
        c.max_subscriptions_per_member = 2;
        c.max_subscriptions = 4;
    })
    .await;
    let cluster = w.cluster;
    let mut held = vec![try_subscribe(&w.ix.grpc, cluster, w.b.1, 0).await.unwrap()];
    for i in 0..3u8 {
        held.push(
            try_subscribe(&w.ix.grpc, cluster, B256::repeat_byte(0xe0 + i), 0)
                .await
                .unwrap(),
        );
    }
    assert_exhausted(
        try_subscribe(&w.ix.grpc, cluster, B256::repeat_byte(0xf0), 0).await,
        "max_subscriptions",
    );
    let blk = send_msg(&w.chain.rpc, cluster, w.a.0, w.b.1, 0x43, 64).await;
    assert_eq!(
        next_push(&mut held[0]).await.block_number,
        blk,
        "B still streams"
    );
    w.ix.shutdown().await;
}

/// (c) A `from_block` further back than the replay-depth cap is refused before any chain read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_indexer_deep_replay_refused() {
    let w = world(|c| c.max_replay_blocks = 5).await;
    let (_, before) = http_get(w.ix.http, "/metrics").await;
    assert_exhausted(
        try_subscribe(&w.ix.grpc, w.cluster, w.b.1, 1).await,
        "max_replay_blocks",
    );
    let (_, after) = http_get(w.ix.http, "/metrics").await;
    assert_eq!(
        metric(&before, "attestmesh_indexer_replay_pages_total"),
        metric(&after, "attestmesh_indexer_replay_pages_total"),
        "a refused replay reads nothing"
    );
    w.ix.shutdown().await;
}

/// (d) A replay over many blocks streams page by page: the first push arrives while most pages are
/// still unread, and a client that stops reading stops the paging (back-pressure), so the
/// Indexer never holds the whole range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_indexer_replay_streams_with_backpressure() {
    const BLOCKS: u64 = 40;
    let w = world(|c| c.batch_size = 1).await;
    let (cluster, idb) = (w.cluster, w.b.1);
    // BLOCKS blocks with one 64 KiB message each: ~2.6 MiB of pushes, far more than the HTTP/2
    // window plus the server's send buffers (hyper buffers up to 400 KiB per stream) hold for a
    // client that does not read.
    let mut first = None;
    for i in 0..BLOCKS {
        let b = send_msg(&w.chain.rpc, cluster, w.a.0, idb, i as u8, 64 * 1024).await;
        first.get_or_insert(b);
    }
    let first = first.unwrap();
    wait_indexed(&w.chain.rpc, w.ix.http).await;
    // A client advertising HTTP/2's default 64 KiB windows (tonic's client grants 2 MiB): what
    // it does not read, the server cannot send.
    let ch = tonic::transport::Endpoint::from_shared(w.ix.grpc.clone())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut s = IndexerClient::new(ch)
        .subscribe(Hello {
            cluster: cluster.to_vec(),
            member_id: idb.to_vec(),
            from_block: first,
        })
        .await
        .unwrap()
        .into_inner();
    let p = next_push(&mut s).await;
    assert_eq!(p.block_number, first);
    let (_, m) = http_get(w.ix.http, "/metrics").await;
    let at_first = metric(&m, "attestmesh_indexer_replay_pages_total");
    assert!(
        at_first < BLOCKS / 2,
        "first push only after {at_first} of {BLOCKS} pages were read"
    );
    // Not reading: paging stalls well short of the range.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, m) = http_get(w.ix.http, "/metrics").await;
    let stalled = metric(&m, "attestmesh_indexer_replay_pages_total");
    eprintln!(
        "replay pages read: {at_first} at the first push, {stalled} while not reading, of {BLOCKS}"
    );
    assert!(
        stalled < BLOCKS / 2,
        "{stalled} of {BLOCKS} pages read for a client that stopped reading"
    );
    // Reading resumes the replay; every block arrives once, in order.
    let mut blocks = vec![p.block_number];
    while blocks.len() < BLOCKS as usize {
        let p = tokio::time::timeout(Duration::from_secs(15), s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        blocks.push(p.block_number);
    }
    let want: Vec<u64> = (first..first + BLOCKS).collect();
    assert_eq!(blocks, want);
    let (_, m) = http_get(w.ix.http, "/metrics").await;
    assert!(metric(&m, "attestmesh_indexer_replay_pages_total") >= BLOCKS);
    w.ix.shutdown().await;
}
