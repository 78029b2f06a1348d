//! The intake over an Indexer's life: omission (the agent's own polling still converges),
//! restart (the intake reconnects and resumes, nothing missed) and registry rotation (intakes
//! follow the owner's new record). Real anvil, contracts, devtee, Indexers on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intake_common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::push::PushError;
use attestmesh_node::intake::{Rejection, verify_push};
use attestmesh_proto::indexer::{self as pb, indexer_client::IndexerClient};
use intake_common::*;

/// An Indexer that accepts the subscription and withholds every event. Nothing in the pushes can
/// reveal an omission, so the intake stays subscribed; the agent's own poll (model, 1 s here,
/// 10 s by default) still sees the message within one interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omission_is_covered_by_the_agents_own_polling() {
    let w = world().await;
    let key = Ed25519Secret::from_seed([0x6b; 32]);
    let (evil, endpoint) = evil_indexer(Arc::new(|_| Vec::new())).await;
    w.set_registry(&endpoint, key.public()).await;
    let mut it = start_intake(w.intake_config());
    assert!(
        eventually(Duration::from_secs(10), || evil
            .subscribes
            .load(Ordering::Relaxed)
            >= 1)
        .await
    );
    let interval = Duration::from_secs(1);
    let wakes = std::mem::replace(&mut it.wakes, tokio::sync::mpsc::channel(1).1);
    let mut seen = model_agent_poller(w.url(), w.cluster, w.b.1, interval, Some(wakes)).await;
    for env in [0x61u8, 0x62, 0x63] {
        let blk = w.send_a_to_b(env).await;
        let mined = Instant::now();
        let s = tokio::time::timeout(interval * 3, seen.recv())
            .await
            .expect("the poll sees the withheld message")
            .unwrap();
        let after = s.at.saturating_duration_since(mined);
        eprintln!("withheld message in block {blk} seen by polling {after:?} after it was mined");
        assert_eq!((s.block, s.via), (blk, Via::Poll));
        assert!(
            after <= interval + Duration::from_millis(300),
            "{after:?} > one poll interval"
        );
    }
    assert_eq!(it.get(|s| &s.wakeups_sent), 0);
    assert_eq!(
        it.get(|s| &s.adversarial_teardowns),
        0,
        "omission is undetectable from pushes"
    );
    it.stop().await;
}

/// The Indexer stops while messages keep coming, then restarts on the same address with its
/// state and TEE: the intake reconnects (backoff), resumes from its last verified block, and
/// every MessageSent — during and after the outage — produces a WakeUp with its block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_restart_reconnects_and_misses_nothing() {
    let w = world().await;
    let ix = w.indexer(0x1d, "ix", None).await;
    let (addr, key) = (ix.grpc_addr, ix.pubkey);
    w.set_registry(&ix.grpc, key).await;
    let mut it = start_intake(w.intake_config());
    assert!(eventually(Duration::from_secs(10), || it.get(|s| &s.sessions) >= 1).await);
    let b1 = w.send_a_to_b(0x71).await;
    assert_eq!(
        it.next_wake(Duration::from_secs(10))
            .await
            .unwrap()
            .block_number,
        b1
    );

    let tee = ix.shutdown().await;
    let down = [w.send_a_to_b(0x72).await, w.send_a_to_b(0x73).await];
    assert!(
        eventually(Duration::from_secs(10), || it
            .get(|s| &s.transport_teardowns)
            >= 1)
        .await
    );
    // A few failed reconnects (each one a transport teardown) before the Indexer is back.
    assert!(
        eventually(Duration::from_secs(10), || it
            .get(|s| &s.transport_teardowns)
            >= 3)
        .await,
        "the intake kept redialling the stopped Indexer"
    );
    let ix = w.indexer(0x1d, "ix", Some(addr)).await;
    assert_eq!(ix.pubkey, key, "same TEE identity, same key");
    for b in down {
        assert_eq!(
            it.next_wake(Duration::from_secs(15))
                .await
                .expect("outage message woken")
                .block_number,
            b
        );
    }
    for env in [0x74u8, 0x75, 0x76] {
        let b = w.send_a_to_b(env).await;
        assert_eq!(
            it.next_wake(Duration::from_secs(10))
                .await
                .unwrap()
                .block_number,
            b
        );
    }
    assert!(it.get(|s| &s.sessions) >= 2);
    assert_eq!(it.get(|s| &s.adversarial_teardowns), 0);
    eprintln!(
        "restart: {} sessions, {} transport teardowns",
        it.get(|s| &s.sessions),
        it.get(|s| &s.transport_teardowns)
    );
    it.stop().await;
    ix.shutdown().await;
    drop(tee);
}

/// The owner rotates the registry to a new Indexer with a new key while the old one keeps
/// running: the intake notices on its next registry read, subscribes to the new one, and the
/// old Indexer's pushes no longer verify against the registry key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_rotation_is_followed() {
    let w = world().await;
    let old = w.indexer(0x1d, "old", None).await;
    let new = w.indexer(0x2e, "new", None).await;
    assert_ne!(old.pubkey, new.pubkey);
    w.set_registry(&old.grpc, old.pubkey).await;
    let mut it = start_intake(w.intake_config());
    let b1 = w.send_a_to_b(0x81).await;
    assert_eq!(
        it.next_wake(Duration::from_secs(10))
            .await
            .unwrap()
            .block_number,
        b1
    );
    assert_eq!(*it.stats.current_key.lock().unwrap(), Some(old.pubkey));

    // A direct subscriber to the old Indexer, to hold one of its post-rotation pushes.
    let mut c = IndexerClient::connect(old.grpc.clone()).await.unwrap();
    let mut direct = c
        .subscribe(pb::Hello {
            cluster: w.cluster.to_vec(),
            member_id: w.b.1.to_vec(),
            from_block: 0,
        })
        .await
        .unwrap()
        .into_inner();

    w.set_registry(&new.grpc, new.pubkey).await;
    assert!(
        eventually(Duration::from_secs(10), || it.get(|s| &s.rotations) >= 1).await,
        "intake noticed the new record"
    );
    assert!(
        eventually(Duration::from_secs(10), || *it
            .stats
            .current_key
            .lock()
            .unwrap()
            == Some(new.pubkey))
        .await
    );
    let b2 = w.send_a_to_b(0x82).await;
    assert_eq!(
        it.next_wake(Duration::from_secs(10))
            .await
            .unwrap()
            .block_number,
        b2
    );
    assert_eq!(it.get(|s| &s.adversarial_teardowns), 0);

    let p = tokio::time::timeout(Duration::from_secs(10), direct.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(p.block_number, b2);
    assert!(
        verify_push(&p, &old.pubkey, w.cluster).is_ok(),
        "genuinely the old Indexer's push"
    );
    assert_eq!(
        verify_push(&p, &new.pubkey, w.cluster).unwrap_err(),
        Rejection::Push(PushError::BadSignature),
        "the old Indexer's pushes fail against the rotated registry key"
    );
    it.stop().await;
    old.shutdown().await;
    new.shutdown().await;
}
