//! Attack tests of the agent's intake (DESIGN §1 invariant 5): every push that fails
//! verification tears the subscription down, no WakeUp leaves the intake for it, and the intake
//! re-reads the registry and subscribes again. Real anvil, real contracts, real devtee, real
//! Indexers and a real malicious gRPC server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intake_common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::B256;
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::push::{PushError, repro_params_json};
use attestmesh_node::intake::Rejection;
use intake_common::*;

/// Forged: the registry names an endpoint whose Indexer signs with a different TEE key (another
/// devtee app id). Every push fails against the registry key; nothing wakes the agent. When the
/// owner fixes the record, the intake follows and the same event wakes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_pushes_from_an_unregistered_key_are_rejected() {
    let w = world().await;
    let good = w.indexer(0x1d, "good", None).await;
    let rogue = w.indexer(0x2e, "rogue", None).await;
    assert_ne!(
        good.pubkey, rogue.pubkey,
        "different TEE identity, different key"
    );
    // The rogue endpoint with the good key: everything the rogue signs is a forgery.
    w.set_registry(&rogue.grpc, good.pubkey).await;
    let mut it = start_intake(w.intake_config());
    assert!(eventually(Duration::from_secs(10), || it.get(|s| &s.sessions) >= 1).await);
    let blk = w.send_a_to_b(0x41).await;
    assert!(
        eventually(Duration::from_secs(10), || it
            .get(|s| &s.adversarial_teardowns)
            >= 2)
        .await,
        "rejected, torn down, resubscribed, rejected again (replay from the resume block)"
    );
    assert_eq!(
        *it.stats.last_rejection.lock().unwrap(),
        Some(Rejection::Push(PushError::BadSignature))
    );
    assert!(it.get(|s| &s.sessions) >= 2, "resubscribed after teardown");
    assert!(it.get(|s| &s.registry_reads) >= 2, "re-read the registry");
    assert!(
        it.next_wake(Duration::from_millis(300)).await.is_none(),
        "no WakeUp for a forgery"
    );
    assert_eq!(it.get(|s| &s.pushes_verified), 0);

    // The owner points the registry at the honest Indexer: the intake follows and the resume
    // cursor (never advanced by rejected pushes) replays the message.
    w.set_registry(&good.grpc, good.pubkey).await;
    let wk = it
        .next_wake(Duration::from_secs(10))
        .await
        .expect("wake via the good Indexer");
    assert_eq!(wk.block_number, blk);
    it.stop().await;
    good.shutdown().await;
    rogue.shutdown().await;
}

/// A malicious server that holds the registry key (the strongest attacker short of the chain):
/// tampered fields, another cluster's re-signed content, malformed pushes, a push without
/// attestation and a lying repro stub are each rejected; the honest control push is accepted,
/// so the rejections are due to the attacks, not to the harness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_foreign_malformed_and_lying_pushes_are_rejected() {
    let w = world().await;
    let key = Arc::new(Ed25519Secret::from_seed([0x5a; 32]));
    let blk = w.send_a_to_b(0x51).await;
    let logs = w.messages_to_b(blk, blk).await;
    assert_eq!(logs.len(), 1);
    let real = body_of(&logs[0]);
    // A second, real cluster: its content re-signed with the registry key.
    let other_cluster = {
        let args = attestmesh_chain::bindings::ClusterInitArgs {
            clusterOwner: w.registry_owner,
            meshCidrIp: 0x0a0e_0000,
            meshPrefix: 16,
            memberFactory: w.infra.member_factory,
            kmsRoots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
            composeHashes: vec![],
            devices: vec![],
            appIds: vec![],
            allowAnyDevice: true,
            requireTcbUpToDate: false,
        };
        let deployer = w.rpc.accounts().await.unwrap()[0];
        attestmesh_chain::deploy::deploy_cluster(
            &w.rpc,
            deployer,
            &w.infra,
            args,
            B256::repeat_byte(9),
        )
        .await
        .unwrap()
    };

    type Attack = (
        &'static str,
        Box<
            dyn Fn(
                    &Ed25519Secret,
                    &attestmesh_core::push::PushBody,
                ) -> Vec<attestmesh_proto::indexer::Push>
                + Send
                + Sync,
        >,
        fn(&Rejection) -> bool,
    );
    let attacks: Vec<Attack> = vec![
        (
            "tampered: signed, then block_number changed",
            Box::new(|k, b| {
                let mut p = signed_first(b, k);
                p.block_number += 1;
                vec![p]
            }),
            |r| *r == Rejection::Push(PushError::BadSignature),
        ),
        (
            "tampered: signed, then the recipient topic changed",
            Box::new(|k, b| {
                let mut p = signed_first(b, k);
                p.event.as_mut().unwrap().topics[2] = B256::repeat_byte(0xee).to_vec();
                vec![p]
            }),
            |r| *r == Rejection::Push(PushError::BadSignature),
        ),
        (
            "foreign cluster: another cluster's log, validly re-signed",
            Box::new(move |k, b| {
                let mut f = b.clone();
                f.cluster = other_cluster;
                f.address = other_cluster;
                f.repro_params_json = repro_params_json(other_cluster, f.block_hash, &f.topics);
                vec![signed_first(&f, k)]
            }),
            |r| matches!(r, Rejection::ForeignCluster { .. }),
        ),
        (
            "malformed: 31-byte block hash",
            Box::new(|k, b| {
                let mut p = signed_first(b, k);
                p.block_hash.pop();
                vec![p]
            }),
            |r| matches!(r, Rejection::Push(PushError::FieldLength { .. })),
        ),
        (
            "malformed: no event",
            Box::new(|k, b| {
                let mut p = signed_first(b, k);
                p.event = None;
                vec![p]
            }),
            |r| matches!(r, Rejection::Malformed(_)),
        ),
        (
            "non-canonical repro stub, validly signed",
            Box::new(|k, b| {
                let mut f = b.clone();
                f.repro_params_json = format!("[{{\"address\":\"{}\"}}]", f.cluster);
                vec![signed_first(&f, k)]
            }),
            |r| *r == Rejection::NonCanonicalRepro,
        ),
        (
            "first push without attestation",
            Box::new(|k, b| {
                let mut p = signed_first(b, k);
                p.attestation = None;
                vec![p]
            }),
            |r| *r == Rejection::MissingAttestation,
        ),
        (
            "attestation binding another key",
            Box::new(|k, b| {
                let mut p = signed_first(b, k);
                p.attestation = Some(simulated_attestation(&B256::repeat_byte(3)));
                vec![p]
            }),
            |r| *r == Rejection::UnboundAttestation,
        ),
        (
            "lying repro: real block, invented transaction (caught by sampling)",
            Box::new(|k, b| {
                let mut f = b.clone();
                f.tx_hash = B256::repeat_byte(0x99);
                vec![signed_first(&f, k)]
            }),
            |r| *r == Rejection::ReproLied,
        ),
    ];

    let real2 = real.clone();
    let k2 = key.clone();
    let (evil, endpoint) = evil_indexer(Arc::new(move |_| vec![signed_first(&real2, &k2)])).await;
    w.set_registry(&endpoint, key.public()).await;

    // Control: the honest push from this very server is accepted and wakes the agent.
    let mut cfg = w.intake_config();
    cfg.from_block = blk;
    cfg.repro_sample_rate = 1.0;
    let mut it = start_intake(cfg.clone());
    let wk = it
        .next_wake(Duration::from_secs(10))
        .await
        .expect("control push wakes");
    assert_eq!(wk.block_number, blk);
    assert_eq!(
        it.get(|s| &s.repro_checks),
        1,
        "sampled against our own RPC"
    );
    assert_eq!(it.get(|s| &s.adversarial_teardowns), 0);
    it.stop().await;

    for (name, make, expect) in attacks {
        let k = key.clone();
        let r = real.clone();
        let pushes = make(&k, &r);
        *evil.script.lock().unwrap() = Arc::new(move |_| pushes.clone());
        let subs_before = evil.subscribes.load(Ordering::Relaxed);
        let mut it = start_intake(cfg.clone());
        assert!(
            eventually(Duration::from_secs(10), || it
                .get(|s| &s.adversarial_teardowns)
                >= 2)
            .await,
            "{name}: not torn down twice"
        );
        let rej = it.stats.last_rejection.lock().unwrap().clone().unwrap();
        assert!(expect(&rej), "{name}: rejected for the wrong reason: {rej}");
        assert!(
            evil.subscribes.load(Ordering::Relaxed) >= subs_before + 2,
            "{name}: resubscribed"
        );
        assert!(
            it.get(|s| &s.registry_reads) >= 2,
            "{name}: registry re-read"
        );
        assert!(it.wakes.try_recv().is_err(), "{name}: a WakeUp leaked");
        assert_eq!(it.get(|s| &s.wakeups_sent), 0, "{name}: woke the agent");
        eprintln!(
            "{name}: rejected ({rej}), {} teardowns",
            it.get(|s| &s.adversarial_teardowns)
        );
        it.stop().await;
    }
}
