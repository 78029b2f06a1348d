//! End to end with the attested Indexer (DESIGN §9.2, issue 7 part 2): the single-node stack of
//! `e2e_single`, plus an IndexerRegistry record and a real Indexer (in-process, its own devtee).
//!
//! The agent polls the chain only every 30 s here, so a `MessageSent` that reaches the app within
//! a few seconds can only have come through the push path: the Indexer's signed push, verified by
//! the agent's intake against the registry key, woke the follower, which re-read the chain itself.
//! The message is sent by the cluster owner straight to the contract, so nothing on the agent's
//! side (its own submissions also wake the follower) can explain the early delivery.
//!
//! Needs root (TUN + netlink) and `npm ci` (anvil, alto); skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, Bytes};
use alloy_sol_types::SolCall;
use attestmesh_chain::deploy::{self, Artifacts};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_indexer::{Config as IndexerConfig, Indexer};
use attestmesh_node::chainview::owner_sender_id;
use attestmesh_proto::agent as pb;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::devtee::{self, Devtee, DevteeConfig};
use common::{app_client, config, http_get, repo, should_run, stack, start_agent, wait_healthy};
use tokio_stream::StreamExt as _;

/// The value of an unlabelled Prometheus sample, 0 if absent.
fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

async fn spawn_devtee(socket: &std::path::Path, app: Address) -> tokio::sync::oneshot::Sender<()> {
    let d = Devtee::bind(DevteeConfig::dev(socket, app)).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(d.run(async move {
        let _ = rx.await;
    }));
    tx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_indexer_push_delivers_a_message_long_before_the_next_poll() {
    if !should_run() {
        return;
    }
    // A CIDR no other test uses, so the host-namespace route cannot clash.
    let cidr = MeshCidr::new(0x0ad6_0000, 16).unwrap();
    let s = stack(cidr).await;

    // The Indexer: its own devtee identity (hence key), following every cluster of the factory.
    let ix_sock = s.dir.path().join("indexer-tee.sock");
    let ix_tee = spawn_devtee(&ix_sock, Address::repeat_byte(0x1d)).await;
    let mut icfg = IndexerConfig::new(
        s.rpc_url.clone(),
        s.cluster_factory,
        s.dir.path().join("indexer-state"),
        ix_sock,
    );
    icfg.poll_interval = Duration::from_millis(100);
    let ix = Indexer::bind(icfg).await.unwrap();
    let (endpoint, ix_key) = (format!("http://{}", ix.grpc_addr), ix.pubkey());
    let (ix_stop, ix_rx) = tokio::sync::oneshot::channel::<()>();
    let ix_task = tokio::spawn(async move {
        ix.run(async move {
            let _ = ix_rx.await;
        })
        .await
        .unwrap();
    });

    // Its registry record, owned by the cluster owner.
    let artifacts = Artifacts::new(repo().join("artifacts"));
    let mut ctor = vec![0u8; 12];
    ctor.extend_from_slice(s.owner.as_slice());
    let reg = deploy::deploy(&s.rpc, s.deployer, &artifacts, "IndexerRegistry", &ctor)
        .await
        .unwrap();
    let data = attestmesh_ops::indexer::set_indexer_calldata(
        &endpoint,
        devtee::default_compose_hash(),
        ix_key,
    );
    // Explicit gas: `updatedAt = block.timestamp` makes the estimate short by an SSTORE when the
    // transaction lands in a later second (see the indexer's intake fixtures).
    let tx: B256 = s
        .rpc
        .call(
            "eth_sendTransaction",
            serde_json::json!([{
                "from": s.owner,
                "to": reg,
                "input": Bytes::from(data),
                "gas": "0x7a120",
            }]),
        )
        .await
        .unwrap();
    let r = s
        .rpc
        .wait_receipt(tx, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(r.success, "setIndexer reverted");

    // The agent: polling only every 30 s, intake on.
    let tee_sock = s.dir.path().join("dstack.sock");
    let tee = spawn_devtee(&tee_sock, s.member).await;
    let keys =
        attestmesh_tee::DstackAttestor::new(attestmesh_tee::GuestAgentClient::new(&tee_sock))
            .derive_keys()
            .await
            .unwrap()
            .keys;
    let iface = format!("ami{}", std::process::id() % 100_000);
    let mut cfg = config(&s, &tee_sock, &iface);
    cfg.poll_interval = Duration::from_secs(30);
    cfg.indexer_registry = Some(reg);
    let socket = cfg.agent_socket.clone();
    let agent = start_agent(cfg).await;
    wait_healthy(&agent, Duration::from_secs(120)).await;
    let my_id = attestmesh_core::ids::member_id(
        s.cluster,
        s.member,
        attestmesh_core::ids::DSTACK_ATTESTOR_ID,
    );

    // The intake is subscribed (it verified the Indexer's attestation against the registry key
    // on the first push, or will on the next).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(agent.health, "/metrics").await;
        if metric(&body, "attestmesh_indexer_subscriptions_total") >= 1 {
            assert_eq!(metric(&body, "attestmesh_indexer_intake_enabled"), 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "intake never subscribed:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut app = app_client(socket.clone()).await;
    let mut inbox = app
        .subscribe_messages(pb::SubscribeMessagesRequest { from_block: 0 })
        .await
        .unwrap()
        .into_inner();
    // Two messages: after the first wake-up poll the 30 s timer restarts, so the second cannot
    // ride on a regular poll either.
    for i in 0..2u8 {
        let text = format!("owner command {i}");
        // An owner command is bound like any message: the sender is the owner's sender id.
        let envelope_id = B256::repeat_byte(0x40 + i);
        let bound = attestmesh_core::message::Envelope {
            cluster: s.cluster,
            sender: owner_sender_id(s.owner),
            recipient: my_id,
            envelope_id,
        };
        let sealed = attestmesh_core::message::seal(
            &keys.x25519.public(),
            &bound,
            text.as_bytes(),
            &mut rand_core::OsRng,
        )
        .unwrap();
        let call = attestmesh_chain::bindings::IMessageFacet::sendOwnerCommandCall {
            recipientMemberId: my_id,
            envelopeId: envelope_id,
            ciphertext: sealed.into(),
        };
        let receipt = s
            .rpc
            .transact(s.owner, Some(s.cluster), &call.abi_encode())
            .await
            .unwrap();
        assert!(receipt.success, "sendOwnerCommand reverted");
        let t0 = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .expect("delivered within 5 s although the agent polls every 30 s: the push woke it")
            .unwrap()
            .unwrap();
        eprintln!(
            "message {i} (block {}) delivered {:?} after its receipt",
            receipt.block_number,
            t0.elapsed()
        );
        assert_eq!(got.plaintext, text.as_bytes());
        assert_eq!(got.sender_member_id, owner_sender_id(s.owner).to_vec());
        assert_eq!(got.block_number, receipt.block_number);
    }

    let (_, body) = http_get(agent.health, "/metrics").await;
    assert!(
        metric(&body, "attestmesh_indexer_pushes_verified_total") >= 2,
        "{body}"
    );
    assert!(
        metric(&body, "attestmesh_indexer_wakeups_total") >= 1,
        "{body}"
    );
    assert_eq!(
        metric(
            &body,
            "attestmesh_indexer_teardowns_total{reason=\"adversarial\"}"
        ),
        0,
        "{body}"
    );
    drop((inbox, app));

    agent.stop.send(()).unwrap();
    agent.task.await.unwrap().unwrap();
    assert!(!socket.exists(), "socket removed");
    let _ = ix_stop.send(());
    tokio::time::timeout(Duration::from_secs(10), ix_task)
        .await
        .unwrap()
        .unwrap();
    let _ = ix_tee.send(());
    let _ = tee.send(());
}
