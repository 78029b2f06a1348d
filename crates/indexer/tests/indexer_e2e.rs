//! The Indexer end to end: real anvil + the real contracts + devtee (the dstack guest-agent
//! emulator on a real unix socket) + the Indexer's real gRPC and HTTP servers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, hex, keccak256};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::push::{PushBody, fixed, report_data_binds};
use attestmesh_indexer::pb;
use attestmesh_indexer::{Config, state};
use common::{
    dev_cluster, devtee, http_get, next_push, register_members, send_msg, start_indexer, subscribe,
    wait_indexed,
};
use tokio_stream::StreamExt;

/// Verifies a push exactly as an agent would and returns its body.
fn verify(p: &pb::Push, key: &B256) -> PushBody {
    let ev = p.event.as_ref().unwrap();
    let repro = p.repro.as_ref().unwrap();
    let body = PushBody {
        cluster: Address::from(fixed::<20>("cluster", &p.cluster).unwrap()),
        block_number: p.block_number,
        block_hash: B256::from(fixed::<32>("block_hash", &p.block_hash).unwrap()),
        tx_hash: B256::from(fixed::<32>("tx_hash", &p.tx_hash).unwrap()),
        log_index: p.log_index,
        address: Address::from(fixed::<20>("address", &ev.address).unwrap()),
        topics: ev.topics.iter().map(|t| B256::from_slice(t)).collect(),
        data: ev.data.clone(),
        repro_method: repro.method.clone(),
        repro_params_json: repro.params_json.clone(),
    };
    body.verify(key, &p.signature).unwrap();
    body
}

/// Runs the repro stub against anvil: it must return exactly this log.
async fn check_repro(rpc: &RpcClient, b: &PushBody) {
    let params: serde_json::Value = serde_json::from_str(&b.repro_params_json).unwrap();
    let logs: Vec<serde_json::Value> = rpc.call(&b.repro_method, params).await.unwrap();
    assert_eq!(logs.len(), 1, "{}", b.repro_params_json);
    let l = &logs[0];
    assert_eq!(
        l["transactionHash"].as_str().unwrap(),
        hex::encode_prefixed(b.tx_hash)
    );
    assert_eq!(
        u64::from_str_radix(l["logIndex"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap(),
        b.log_index
    );
    assert_eq!(hex::decode(l["data"].as_str().unwrap()).unwrap(), b.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_pushes_signed_wakeups_end_to_end() {
    let (chain, _artifacts, infra, cluster) = dev_cluster().await;
    let rpc = chain.rpc.clone();
    let submitter = chain.accounts[2];
    let tmp = tempfile::tempdir().unwrap();
    let (_tees, members) =
        register_members(&chain, &infra, cluster, submitter, tmp.path(), &[2, 3]).await;
    let ((ma, ida), (mb, idb)) = (members[0], members[1]);

    // The Indexer's own TEE.
    let ix_sock = tmp.path().join("indexer.sock");
    let _ix_tee = devtee(&ix_sock, Address::repeat_byte(0x1d)).await;
    let state_dir = tmp.path().join("state");
    let mut cfg = Config::new(
        chain.url().to_string(),
        infra.diamond_factory,
        state_dir.clone(),
        ix_sock.clone(),
    );
    cfg.batch_size = 5; // several pages even on this short chain
    cfg.poll_interval = Duration::from_millis(50);
    cfg.channel_capacity = 16;
    let ix = start_indexer(cfg.clone()).await;
    wait_indexed(&rpc, ix.http).await;
    let key = ix.pubkey;

    // A subscribes from block 1: the replay holds the cluster's setup and both registrations.
    let mut a = subscribe(&ix.grpc, cluster, ida, 1).await;
    let first = next_push(&mut a).await;
    let att = first
        .attestation
        .as_ref()
        .expect("first push carries the attestation");
    let report = attestmesh_tee::quote::report_data(&att.quote, true).expect("devtee quote");
    let report_data = report.report_data;
    // Its event log proves the compose hash the registry records as its code id.
    assert_eq!(
        attestmesh_tee::quote::compose_hash(&report, &att.event_log).expect("event log"),
        attestmesh_tee::devtee::default_compose_hash()
    );
    assert!(
        report_data_binds(&report_data, &key),
        "quote binds the push key"
    );
    let mut seen_registered = 0;
    let reg_topic = keccak256("MemberRegistered(bytes32,address,bytes32,bytes32,bytes32,bytes32)");
    let mut p = first;
    loop {
        let b = verify(&p, &key);
        assert_eq!(b.cluster, cluster);
        check_repro(&rpc, &b).await;
        if b.topics.first() == Some(&reg_topic) {
            seen_registered += 1;
            if seen_registered == 2 {
                break;
            }
        }
        p = next_push(&mut a).await;
        assert!(
            p.attestation.is_none(),
            "only the first push carries the attestation"
        );
    }

    // Live: B subscribes; A sends to B. B gets it, A does not.
    let mut b = subscribe(&ix.grpc, cluster, idb, 0).await;
    let t0 = Instant::now();
    let blk = send_msg(&rpc, cluster, ma, idb, 0x77, 64).await;
    let pb_ = next_push(&mut b).await;
    let latency = t0.elapsed();
    assert!(pb_.attestation.is_some());
    let body = verify(&pb_, &key);
    assert_eq!(body.block_number, blk);
    assert_eq!(body.topics[2], idb);
    check_repro(&rpc, &body).await;
    eprintln!("push latency (tx send → push received, loopback, 50 ms poll): {latency:?}");
    // Then B sends to A: A's next push must be that one, proving it never saw the A→B message.
    let blk2 = send_msg(&rpc, cluster, mb, ida, 0x78, 64).await;
    // (A may first drain the rest of its replay, e.g. DstackMemberRegistered.)
    let msg_topic = keccak256("MessageSent(bytes32,bytes32,bytes32,bytes)");
    let ba = loop {
        let pa = next_push(&mut a).await;
        let ba = verify(&pa, &key);
        if ba.topics.first() == Some(&msg_topic) {
            break ba;
        }
    };
    assert_eq!(
        (ba.block_number, ba.topics[2]),
        (blk2, ida),
        "A never receives B's MessageSent"
    );

    // Restart: progress resumes from the state file; B reconnects from its last block + 1 and
    // gets the message sent while the Indexer was down.
    ix.shutdown().await;
    drop(b);
    let st = state::load(&state_dir, infra.diamond_factory)
        .unwrap()
        .unwrap();
    assert!(st.next_block > blk2 && st.clusters == vec![cluster]);
    let blk3 = send_msg(&rpc, cluster, ma, idb, 0x79, 64).await;
    let mut cfg2 = cfg.clone();
    cfg2.start_block = 0; // ignored: the state file wins
    cfg2.channel_capacity = 8;
    let ix = start_indexer(cfg2).await;
    assert_eq!(ix.pubkey, key, "the TEE re-derives the same key");
    wait_indexed(&rpc, ix.http).await;
    let mut b = subscribe(&ix.grpc, cluster, idb, blk + 1).await;
    let p3 = next_push(&mut b).await;
    assert!(p3.attestation.is_some());
    let b3 = verify(&p3, &key);
    assert_eq!(
        (b3.block_number, b3.topics[2]),
        (blk3, idb),
        "nothing missed across the restart"
    );

    // A slow subscriber (never reads) is disconnected with RESOURCE_EXHAUSTED, while B keeps up.
    let mut slow = subscribe(&ix.grpc, cluster, idb, 0).await;
    let mut sent = 0;
    let mut disconnected = false;
    while sent < 150 {
        send_msg(
            &rpc,
            cluster,
            ma,
            idb,
            0x80u8.wrapping_add(sent as u8),
            16 * 1024,
        )
        .await;
        sent += 1;
        let p = next_push(&mut b).await;
        verify(&p, &key);
        let (_, m) = http_get(ix.http, "/metrics").await;
        if m.contains("attestmesh_indexer_slow_disconnects_total 1") {
            disconnected = true;
            break;
        }
    }
    assert!(
        disconnected,
        "slow subscriber never disconnected after {sent} pushes"
    );
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .unwrap()
        {
            Some(Ok(_)) => continue,
            Some(Err(s)) => break s,
            None => panic!("stream ended without a status"),
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    eprintln!("slow subscriber disconnected after {sent} 16 KiB pushes");
    let (code, body) = http_get(ix.http, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    ix.shutdown().await;
    let _ = PathBuf::new();
}
