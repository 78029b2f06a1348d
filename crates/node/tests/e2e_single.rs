//! End to end, one node: real anvil (1 s blocks), EntryPoint v0.7, the AttestMesh contracts,
//! SponsorPaymaster + the sponsor service, alto, devtee, and the agent runtime in-process.
//!
//! A cluster of one is converged, so the agent must reach `healthy` by itself: register through
//! a sponsored bootstrap UserOperation (zero ETH), commit its CSK through another, bring up its
//! WireGuard interface, and serve the app API. Then it messages itself through the chain, shuts
//! down (interface and socket gone), and restarts from the same state without re-registering.
//!
//! Needs root (TUN + netlink) and `npm ci` (anvil, alto); skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use alloy_primitives::U256;
use attestmesh_chain::bindings::IAttestFacet;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_proto::agent as pb;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::devtee::{Devtee, DevteeConfig};
use common::{app_client, config, http_get, read, should_run, stack, start_agent, wait_healthy};
use tokio_stream::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_one_registers_commits_its_csk_and_becomes_healthy() {
    if !should_run() {
        return;
    }
    // A CIDR no other test uses, so the host-namespace route cannot clash.
    let cidr = MeshCidr::new(0x0ad5_0000, 16).unwrap();
    let s = stack(cidr).await;
    let tee_sock = s.dir.path().join("dstack.sock");
    let devtee = Devtee::bind(DevteeConfig::dev(&tee_sock, s.member))
        .await
        .unwrap();
    let (tee_stop, tee_rx) = tokio::sync::oneshot::channel::<()>();
    let tee_task = tokio::spawn(devtee.run(async move {
        let _ = tee_rx.await;
    }));
    let keys =
        attestmesh_tee::DstackAttestor::new(attestmesh_tee::GuestAgentClient::new(&tee_sock))
            .derive_keys()
            .await
            .unwrap()
            .keys;
    assert_eq!(s.rpc.balance(s.member).await.unwrap(), U256::ZERO);
    assert_eq!(
        s.rpc.balance(keys.owner.address()).await.unwrap(),
        U256::ZERO
    );

    let iface = format!("ame{}", std::process::id() % 100_000);
    let cfg = config(&s, &tee_sock, &iface);
    let socket = cfg.agent_socket.clone();
    let agent = start_agent(cfg.clone()).await;
    let (code, _) = http_get(agent.health, "/healthz").await;
    assert_eq!(code, 503, "not healthy while booting");

    let t0 = std::time::Instant::now();
    wait_healthy(&agent, Duration::from_secs(120)).await;
    eprintln!("cluster of one healthy after {:?}", t0.elapsed());

    // On chain: registered with our keys, zero ETH spent by the node, CSK committed.
    assert!(
        read(
            &s.rpc,
            s.cluster,
            IAttestFacet::isClusterMemberCall {
                memberContract: s.member
            }
        )
        .await
    );
    assert_eq!(
        read(&s.rpc, s.cluster, IAttestFacet::cskCommitmentCall {}).await,
        keys.csk.commitment()
    );
    assert_eq!(s.rpc.balance(s.member).await.unwrap(), U256::ZERO);

    let (code, body) = http_get(agent.health, "/healthz").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["phase"], "healthy");
    assert_eq!(v["first_converged"], true);
    assert_eq!(v["csk_acquired"], true);
    assert_eq!(v["member_count"], 1);
    let my_id = attestmesh_core::ids::member_id(
        s.cluster,
        s.member,
        attestmesh_core::ids::DSTACK_ATTESTOR_ID,
    );
    assert_eq!(v["mesh_ip"], cidr.mesh_ip(&my_id).to_string());
    let (code, body) = http_get(agent.health, "/attestation").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("devtee-simulated"));
    assert!(
        Path::new(&format!("/sys/class/net/{iface}")).exists(),
        "interface up"
    );

    // App API: the CSK, and a message to ourselves through the chain (sealed, sponsored).
    let mut app = app_client(socket.clone()).await;
    let k = app
        .get_cluster_shared_key(pb::GetClusterSharedKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.key, keys.csk.as_bytes().to_vec());
    let mut inbox = app
        .subscribe_messages(pb::SubscribeMessagesRequest { from_block: 0 })
        .await
        .unwrap()
        .into_inner();
    let sent = app
        .send_message(pb::SendMessageRequest {
            recipient_member_id: my_id.to_vec(),
            plaintext: b"note to self".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(30), inbox.next())
        .await
        .expect("message delivered within 30 s")
        .unwrap()
        .unwrap();
    assert_eq!(got.plaintext, b"note to self");
    assert_eq!(got.sender_member_id, my_id.to_vec());
    assert_eq!(got.envelope_id, sent.envelope_id);
    assert_eq!(got.tx_hash, sent.tx_hash);
    drop((inbox, app));

    // Graceful shutdown: interface and socket removed.
    agent.stop.send(()).unwrap();
    agent.task.await.unwrap().unwrap();
    assert!(!socket.exists(), "socket removed");
    assert!(
        !Path::new(&format!("/sys/class/net/{iface}")).exists(),
        "interface removed"
    );
    let state_dir = cfg.state_dir.clone().unwrap();
    assert!(state_dir.join("csk.cache").exists());
    // Invariant 6: nothing secret lands in the state directory in the clear (raw or hex).
    let secrets: Vec<Vec<u8>> = vec![
        keys.csk.as_bytes().to_vec(),
        keys.state.as_bytes().to_vec(),
        keys.x25519.to_bytes().to_vec(),
        keys.wireguard.to_bytes().to_vec(),
    ];
    assert_no_plaintext_secrets(&state_dir, &secrets);

    // Restart from the same TEE and state: no re-registration, same keys, healthy again.
    let members_before = read(&s.rpc, s.cluster, IAttestFacet::memberCountCall {}).await;
    let agent = start_agent(cfg.clone()).await;
    wait_healthy(&agent, Duration::from_secs(60)).await;
    assert_eq!(
        read(&s.rpc, s.cluster, IAttestFacet::memberCountCall {}).await,
        members_before
    );
    assert_eq!(agent.shared.csk().unwrap(), keys.csk);
    agent.stop.send(()).unwrap();
    agent.task.await.unwrap().unwrap();
    assert!(!Path::new(&format!("/sys/class/net/{iface}")).exists());

    tee_stop.send(()).unwrap();
    let _ = tee_task.await;
}

/// Fails if any file below `dir` contains one of `secrets` as raw bytes or as (lower or upper
/// case) hex.
fn assert_no_plaintext_secrets(dir: &Path, secrets: &[Vec<u8>]) {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            files += 1;
            for secret in secrets {
                let lower = alloy_primitives::hex::encode(secret);
                for needle in [
                    secret.clone(),
                    lower.clone().into_bytes(),
                    lower.to_uppercase().into_bytes(),
                ] {
                    assert!(
                        !data.windows(needle.len()).any(|w| w == needle.as_slice()),
                        "{} holds a secret in the clear",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(
        files > 0,
        "the state directory is empty; nothing was checked"
    );
}
