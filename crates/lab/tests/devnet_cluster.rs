//! Devnet lab tests (root) of a whole cluster through the agents' real interfaces: the shared
//! CSK that never touches the chain, a sealed message from A to B, TCP between mesh IPs, a node
//! joining later, a crashed agent detected and recovered, and all agents restarted at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod devnet_common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use alloy_primitives::{B256, hex, keccak256};
use attestmesh_lab::devnet::{self, Devnet};
use attestmesh_proto::agent::{
    GetClusterSharedKeyRequest, GetSelfRequest, ListPeersRequest, SendMessageRequest,
    SubscribeMessagesRequest, SubscribePeerEventsRequest, peer_event,
};
use devnet_common::{SERIAL, TestDevnet, client, prerequisites, progress, runtime, up};

async fn csk(dn: &Devnet, i: usize) -> Vec<u8> {
    let mut c = client(&dn.state.nodes[i].agent_socket).await;
    let k = c
        .get_cluster_shared_key(GetClusterSharedKeyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(k.key.len(), 32);
    assert_eq!(keccak256(&k.key).as_slice(), k.commitment.as_slice());
    k.key
}

/// Every transaction input and every log (topics and data) from genesis to head, hex-encoded:
/// where a leaked key would have to appear.
async fn chain_bytes(dn: &Devnet) -> String {
    let rpc = dn.rpc();
    let head = rpc.block_number().await.unwrap();
    let mut all = String::new();
    for n in 0..=head {
        let b: serde_json::Value = rpc
            .call(
                "eth_getBlockByNumber",
                serde_json::json!([format!("{n:#x}"), true]),
            )
            .await
            .unwrap();
        for tx in b["transactions"].as_array().unwrap() {
            all.push_str(tx["input"].as_str().unwrap_or_default());
        }
    }
    let logs: Vec<serde_json::Value> = rpc
        .call(
            "eth_getLogs",
            serde_json::json!([{"fromBlock": "0x0", "toBlock": format!("{head:#x}")}]),
        )
        .await
        .unwrap();
    assert!(!logs.is_empty());
    for l in &logs {
        all.push_str(l["data"].as_str().unwrap_or_default());
        for t in l["topics"].as_array().unwrap() {
            all.push_str(t.as_str().unwrap_or_default());
        }
    }
    all.to_ascii_lowercase()
}

/// `MemberRegistered` events of the cluster.
async fn registrations(dn: &Devnet) -> usize {
    let topic = keccak256("MemberRegistered(bytes32,address,bytes32,bytes32,bytes32,bytes32)");
    let logs: Vec<serde_json::Value> = dn
        .rpc()
        .call(
            "eth_getLogs",
            serde_json::json!([{
                "fromBlock": "0x0",
                "toBlock": "latest",
                "address": dn.state.contracts.cluster,
                "topics": [topic],
            }]),
        )
        .await
        .unwrap();
    logs.len()
}

/// Waits until every listed node sees all the others live (healthy alone can be reached with
/// no live peer, e.g. right after every agent restarted). Returns how long it took.
async fn wait_all_live(dn: &Devnet, nodes: &[usize], limit: Duration) -> Duration {
    let t0 = Instant::now();
    let want = nodes.len() as u64 - 1;
    loop {
        let mut ok = true;
        for &i in nodes {
            let live = dn.health(i).and_then(|(_, v)| v["live_peers"].as_u64());
            ok &= live == Some(want);
        }
        if ok {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "not every node sees {want} live peers within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn mesh_ip(dn: &Devnet, i: usize) -> Ipv4Addr {
    let (_, v) = dn.health(i).expect("health");
    v["mesh_ip"].as_str().unwrap().parse().unwrap()
}

/// A TCP round trip from node `from` to a listener on node `to`'s mesh IP, through WireGuard
/// over the gateway bridge (the only path between node namespaces).
fn tcp_between(dn: &Devnet, from: usize, to: usize) {
    let ip = mesh_ip(dn, to);
    let at = SocketAddr::from((ip, 47000 + to as u16));
    let listener = devnet::listen_in_ns(&dn.state.nodes[to].ns, at).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf.map(|b| b.to_ascii_uppercase())).unwrap();
    });
    let mut s =
        devnet::connect_in_ns(&dn.state.nodes[from].ns, at, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"HELLO");
    server.join().unwrap();
}

#[test]
fn csk_messages_tcp_join_crash_and_restart() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime().block_on(csk_messages_tcp_join_crash_and_restart_async());
}

async fn csk_messages_tcp_join_crash_and_restart_async() {
    let Some(exe) = prerequisites(true) else {
        return;
    };
    let mut t: TestDevnet = up(exe, 3, true).await;
    let interval = Duration::from_millis(t.dn.state.heartbeat_interval_ms);

    // 0. As on dstack, every agent reaches the Indexer only through the gateway, over TLS it
    //    terminates under the devnet's CA, and says so in /healthz.
    let endpoint =
        t.dn.state
            .indexer_url
            .clone()
            .expect("the devnet runs an Indexer");
    assert!(
        endpoint.starts_with("https://") && endpoint.ends_with(devnet::GATEWAY_DOMAIN),
        "{endpoint}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..3 {
        loop {
            let sub = t.dn.health(i).map(|(_, v)| v["indexer_subscribed"].clone());
            if sub == Some(serde_json::Value::Bool(true)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} not subscribed to the Indexer at {endpoint}: {sub:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // 1. One CSK everywhere, and none of it on chain.
    let key = csk(&t.dn, 0).await;
    for i in 1..3 {
        assert_eq!(csk(&t.dn, i).await, key, "node {i} holds another CSK");
    }
    let chain = chain_bytes(&t.dn).await;
    assert!(
        !chain.contains(&hex::encode(&key)),
        "the CSK appears on chain"
    );

    // 2. A sealed message from A (n0) to B (n1), received decrypted with A as the sender.
    let (a_id, b_id) = (t.dn.state.nodes[0].member_id, t.dn.state.nodes[1].member_id);
    let mut b = client(&t.dn.state.nodes[1].agent_socket).await;
    let mut inbox = b
        .subscribe_messages(SubscribeMessagesRequest { from_block: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut a = client(&t.dn.state.nodes[0].agent_socket).await;
    let sent = a
        .send_message(SendMessageRequest {
            recipient_member_id: b_id.to_vec(),
            plaintext: b"hello B, this is A".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(60), inbox.message())
        .await
        .expect("B received nothing within 60 s")
        .unwrap()
        .expect("stream ended");
    assert_eq!(got.plaintext, b"hello B, this is A");
    assert_eq!(B256::from_slice(&got.sender_member_id), a_id);
    assert_eq!(got.envelope_id, sent.envelope_id);
    assert!(
        !chain_bytes(&t.dn)
            .await
            .contains(&hex::encode(b"hello B, this is A"))
    );

    // 3. App traffic over TCP between mesh IPs, both directions.
    tcp_between(&t.dn, 0, 1);
    tcp_between(&t.dn, 2, 0);

    // 4. A fourth node joins later and converges; everyone sees it.
    let j = t.dn.add_node().await.unwrap();
    let took =
        t.dn.wait_healthy(&[0, 1, 2, j], Duration::from_secs(120), &progress)
            .await
            .unwrap();
    let live = wait_all_live(&t.dn, &[0, 1, 2, j], Duration::from_secs(60)).await;
    eprintln!("node {j} joined and converged in {took:?}, all peers live after {live:?}");
    assert_eq!(csk(&t.dn, j).await, key);
    tcp_between(&t.dn, j, 1);

    // 5. kill -9 node 1's agent: the others report it down within 3 intervals + 1.
    let regs = registrations(&t.dn).await;
    let mut n1 = client(&t.dn.state.nodes[1].agent_socket).await;
    let self_before = n1.get_self(GetSelfRequest {}).await.unwrap().into_inner();
    let mut events = client(&t.dn.state.nodes[0].agent_socket)
        .await
        .subscribe_peer_events(SubscribePeerEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    t.dn.kill_agent(1).unwrap();
    let killed = Instant::now();
    let limit = interval * 4;
    let down_after = loop {
        let ev = tokio::time::timeout(limit + Duration::from_secs(2), events.message())
            .await
            .expect("no DOWN event")
            .unwrap()
            .expect("event stream ended");
        if ev.kind == peer_event::Kind::Down as i32 && ev.member_id == b_id.to_vec() {
            break killed.elapsed();
        }
    };
    eprintln!("node 1 reported down after {down_after:?} (limit {limit:?})");
    assert!(down_after <= limit, "down after {down_after:?} > {limit:?}");
    // Every other peer detects it on its own clock: node 2 within the same bound.
    let mut c2 = client(&t.dn.state.nodes[2].agent_socket).await;
    loop {
        let peers = c2
            .list_peers(ListPeersRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers;
        let p1 = peers
            .iter()
            .find(|p| {
                p.member
                    .as_ref()
                    .is_some_and(|m| m.member_id == b_id.to_vec())
            })
            .expect("node 1 is still a peer of node 2");
        if !p1.live {
            break;
        }
        assert!(
            killed.elapsed() <= limit,
            "node 2 still sees node 1 live {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restart: same keys, no second registration, the CSK back, healthy.
    t.dn.start_agent(1).unwrap();
    t.dn.wait_healthy(&[1], Duration::from_secs(120), &progress)
        .await
        .unwrap();
    let self_after = client(&t.dn.state.nodes[1].agent_socket)
        .await
        .get_self(GetSelfRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(self_after.wg_pub_key, self_before.wg_pub_key);
    assert_eq!(self_after.x_pub_key, self_before.x_pub_key);
    assert_eq!(self_after.ed_pub_key, self_before.ed_pub_key);
    assert_eq!(self_after.registered_at, self_before.registered_at);
    assert_eq!(
        registrations(&t.dn).await,
        regs,
        "the restarted agent registered again"
    );
    assert_eq!(csk(&t.dn, 1).await, key);
    wait_all_live(&t.dn, &[0, 1, 2, j], Duration::from_secs(60)).await;

    // 6. Every agent restarted at once (SIGKILL, like a host reboot): the cluster recovers.
    let all: Vec<usize> = (0..t.dn.state.nodes.len()).collect();
    for &i in &all {
        t.dn.kill_agent(i).unwrap();
    }
    for &i in &all {
        t.dn.start_agent(i).unwrap();
    }
    let took =
        t.dn.wait_healthy(&all, Duration::from_secs(120), &progress)
            .await
            .unwrap();
    let live = wait_all_live(&t.dn, &all, Duration::from_secs(60)).await;
    eprintln!("all agents restarted; healthy again after {took:?}, all peers live after {live:?}");
    for &i in &all {
        assert_eq!(csk(&t.dn, i).await, key, "node {i} after the full restart");
    }
    assert_eq!(registrations(&t.dn).await, regs);
    tcp_between(&t.dn, 1, 2);
}
