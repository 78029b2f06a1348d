//! The cluster view is read at the confirmed block (DESIGN §9.1): members and the CSK commitment
//! must agree with what the follower acts on, never with an unconfirmed head a reorg may undo.
//! The chain is a small fake JSON-RPC server that answers differently at `latest` and at the
//! confirmed block, so the test sees which one the agent read.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::SolCall as _;
use attestmesh_chain::bindings::{IAttestFacet, MemberRecord};
use attestmesh_chain::cluster::ClusterReader;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_node::follower::{Follower, FollowerConfig};
use attestmesh_node::state::Shared;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

const HEAD: u64 = 10;
const CONFIRMATIONS: u64 = 2;
const CONFIRMED: u64 = HEAD - CONFIRMATIONS;

fn block_hash(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

fn record(n: u8) -> MemberRecord {
    MemberRecord {
        attestorId: B256::repeat_byte(0xd5),
        memberContract: Address::repeat_byte(n),
        xPubKey: B256::repeat_byte(n),
        wgPubKey: B256::repeat_byte(n ^ 0x40),
        edPubKey: B256::repeat_byte(n ^ 0x20),
        registeredAt: u64::from(n),
    }
}

/// What the fake chain holds: at the confirmed block one member and commitment C; at the
/// unconfirmed head (`latest`) a second member and commitment L, which a reorg may undo.
fn state_at(confirmed: bool) -> (Vec<MemberRecord>, B256) {
    if confirmed {
        (vec![record(1)], B256::repeat_byte(0xcc))
    } else {
        (vec![record(1), record(2)], B256::repeat_byte(0x11))
    }
}

/// Whether an `eth_call` block parameter names the confirmed block (by number or EIP-1898
/// hash); `None` for anything else but `latest`.
fn names_confirmed(tag: &Value) -> Option<bool> {
    if tag == "latest" {
        return Some(false);
    }
    let confirmed_number = json!(format!("{CONFIRMED:#x}"));
    let by_hash = tag
        .get("blockHash")
        .is_some_and(|h| h == &json!(block_hash(CONFIRMED)));
    let by_number = tag == &confirmed_number || tag.get("blockNumber") == Some(&confirmed_number);
    (by_hash || by_number).then_some(true)
}

fn answer(method: &str, params: &Value, tags: &Mutex<Vec<Value>>) -> Result<Value, String> {
    match method {
        "eth_blockNumber" => Ok(json!(format!("{HEAD:#x}"))),
        "eth_getBlockByNumber" => {
            let n: U256 = serde_json::from_value(params[0].clone()).map_err(|e| e.to_string())?;
            let n = n.to::<u64>();
            Ok(json!({
                "number": format!("{n:#x}"),
                "hash": block_hash(n),
                "parentHash": block_hash(n.wrapping_sub(1)),
            }))
        }
        "eth_call" => {
            let tag = params.get(1).cloned().unwrap_or(json!("latest"));
            tags.lock().unwrap().push(tag.clone());
            let confirmed = names_confirmed(&tag).ok_or(format!("unknown block {tag}"))?;
            let input = params[0]
                .get("input")
                .or_else(|| params[0].get("data"))
                .and_then(Value::as_str)
                .ok_or("no input")?;
            let input = alloy_primitives::hex::decode(input).map_err(|e| e.to_string())?;
            let (members, commitment) = state_at(confirmed);
            let out = match input.get(..4) {
                Some(s) if s == IAttestFacet::listMembersCall::SELECTOR => {
                    IAttestFacet::listMembersCall::abi_encode_returns(&members)
                }
                Some(s) if s == IAttestFacet::cskCommitmentCall::SELECTOR => {
                    IAttestFacet::cskCommitmentCall::abi_encode_returns(&commitment)
                }
                _ => return Err("unexpected call".into()),
            };
            Ok(json!(alloy_primitives::hex::encode_prefixed(out)))
        }
        "eth_getLogs" => Ok(json!([])),
        other => Err(format!("unexpected method {other}")),
    }
}

/// Serves the fake chain on loopback until the test ends; returns its URL and the block
/// parameters of every `eth_call` it saw.
async fn fake_chain() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tags = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&tags);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tags = Arc::clone(&tags);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tags = Arc::clone(&tags);
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            let method = v["method"].as_str().unwrap_or_default().to_string();
                            let reply = match answer(&method, &v["params"], &tags) {
                                Ok(r) => json!({"jsonrpc": "2.0", "id": v["id"], "result": r}),
                                Err(e) => json!({"jsonrpc": "2.0", "id": v["id"],
                                "error": {"code": -32000, "message": e}}),
                            };
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                reply.to_string(),
                            ))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

/// Hole 6: the follower publishes the view of the confirmed block (head − CONFIRMATIONS), the
/// same depth it acts on for events; the unconfirmed member and commitment at `latest` are not
/// in it.
#[tokio::test]
async fn attack_cluster_view_is_read_at_the_confirmed_block() {
    let (url, tags) = fake_chain().await;
    let cluster = Address::repeat_byte(0xc1);
    let rpc = Arc::new(RpcClient::new(&url).unwrap());
    let reader = ClusterReader::new(rpc, cluster);
    let shared = Arc::new(Shared::new());
    let mut follower = Follower::new(
        reader,
        Arc::clone(&shared),
        MeshCidr::new(0x0a0d_0000, 16).unwrap(),
        B256::repeat_byte(0xee),
        X25519Secret::from_seed([1; 32]),
        FollowerConfig {
            poll_interval: Duration::from_secs(60),
            confirmations: CONFIRMATIONS,
        },
        None,
    );
    follower.poll_once().await.unwrap();
    let view = shared.cluster().unwrap();
    let (members, commitment) = state_at(true);
    assert_eq!(
        view.commitment, commitment,
        "commitment of the confirmed block"
    );
    assert_eq!(
        view.members.len(),
        members.len(),
        "members of the confirmed block"
    );
    assert_eq!(
        view.block, CONFIRMED,
        "the view names the block it was read at"
    );
    let tags = tags.lock().unwrap().clone();
    assert!(!tags.is_empty());
    for t in &tags {
        assert_eq!(names_confirmed(t), Some(true), "eth_call at {t}");
    }
}
