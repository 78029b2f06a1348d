//! Chain fixtures shared by the Indexer's tests and the node's intake tests (which include this
//! file by path): in-process devtees and members registered through the real attestor path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::IMessageFacet;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_indexer::pb::{self, indexer_client::IndexerClient};
use attestmesh_indexer::{Config, Indexer};
use tokio_stream::StreamExt;

use alloy_primitives::{Address, B256, U256};
use attestmesh_chain::deploy::Artifacts;
use attestmesh_chain::deploy::{self, Infra};
use attestmesh_chain::devstack::{self, ClusterSpec, Devchain};
use attestmesh_core::ids::{DSTACK_ATTESTOR_ID, member_id};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::devtee::{Devtee, DevteeConfig};
use attestmesh_tee::dstack::DstackAttestor;
use attestmesh_tee::kms;

/// An in-process devtee on its own socket, stopped when the sender drops.
pub async fn devtee(socket: &Path, app_id: Address) -> tokio::sync::oneshot::Sender<()> {
    let d = Devtee::bind(DevteeConfig::dev(socket, app_id))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(d.run(async move {
        let _ = rx.await;
    }));
    tx
}

/// The mesh of [`dev_cluster`]'s cluster.
pub const DEV_CIDR: u32 = 0x0a0d_0000;

/// A fresh anvil with the infrastructure and one development cluster owned by `accounts[1]`,
/// trusting the devtee KMS root; returns the chain, its artifacts, the infrastructure and the
/// cluster. (`accounts[2]` is free to submit registrations.)
pub async fn dev_cluster() -> (Devchain, Artifacts, Infra, Address) {
    let repo = devstack::repo_root(env!("CARGO_MANIFEST_DIR"));
    let artifacts = devstack::artifacts(&repo, &[]).unwrap();
    let chain = Devchain::start(&repo).await.unwrap();
    let spec = ClusterSpec {
        owner: chain.accounts[1],
        cidr: MeshCidr::new(DEV_CIDR, 16).unwrap(),
        kms_roots: vec![kms::DEV_KMS_ROOT_ADDRESS],
        salt: B256::repeat_byte(1),
    };
    let (infra, cluster) = chain
        .deploy_dev_cluster(&artifacts, attestmesh_chain::deploy::ENTRY_POINT_V07, &spec)
        .await
        .unwrap();
    (chain, artifacts, infra, cluster)
}

/// For each salt: deploys a ClusterMember in `cluster`, starts its in-process devtee on
/// `<dir>/m<i>.sock`, registers it (sent by `submitter`) and impersonates it, funded, so it can
/// send. Returns the devtees' stop handles and `(member contract, member id)` per salt.
pub async fn register_members(
    chain: &Devchain,
    infra: &Infra,
    cluster: Address,
    submitter: Address,
    dir: &Path,
    salts: &[u8],
) -> (Vec<tokio::sync::oneshot::Sender<()>>, Vec<(Address, B256)>) {
    let rpc = &chain.rpc;
    let mut tees = Vec::new();
    let mut members = Vec::new();
    for (i, salt) in salts.iter().enumerate() {
        let m = deploy::deploy_member(
            rpc,
            chain.deployer(),
            infra,
            cluster,
            B256::repeat_byte(*salt),
        )
        .await
        .unwrap();
        let sock = dir.join(format!("m{i}.sock"));
        tees.push(devtee(&sock, m).await);
        let att = DstackAttestor::new(GuestAgentClient::new(&sock));
        let derived = att.derive_keys().await.unwrap();
        let call = att.registration_call(&derived, cluster, m).unwrap();
        assert!(
            rpc.transact(submitter, Some(cluster), &call)
                .await
                .unwrap()
                .success
        );
        chain
            .impersonate(m, U256::from(100u128 * 10u128.pow(18)))
            .await
            .unwrap();
        members.push((m, member_id(cluster, m, DSTACK_ATTESTOR_ID)));
    }
    (tees, members)
}

pub struct Running {
    pub grpc: String,
    pub http: std::net::SocketAddr,
    pub pubkey: B256,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}
pub async fn start_indexer(cfg: Config) -> Running {
    let ix = Indexer::bind(cfg).await.unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let r = (
        format!("http://{}", ix.grpc_addr),
        ix.http_addr,
        ix.pubkey(),
    );
    let task = tokio::spawn(async move {
        ix.run(async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        grpc: r.0,
        http: r.1,
        pubkey: r.2,
        stop,
        task,
    }
}
impl Running {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf[9..12].parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}

pub async fn wait_indexed(rpc: &RpcClient, http: std::net::SocketAddr) {
    let head = rpc.block_number().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = http_get(http, "/healthz").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if code == 200 && v["indexed"].as_u64().is_some_and(|i| i >= head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "indexer did not catch up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn subscribe(
    grpc: &str,
    cluster: Address,
    member: B256,
    from_block: u64,
) -> tonic::Streaming<pb::Push> {
    try_subscribe(grpc, cluster, member, from_block)
        .await
        .unwrap()
}

/// `Subscribe` on its own connection; the server's refusal, if any, as the status.
pub async fn try_subscribe(
    grpc: &str,
    cluster: Address,
    member: B256,
    from_block: u64,
) -> Result<tonic::Streaming<pb::Push>, tonic::Status> {
    let mut c = IndexerClient::connect(grpc.to_string()).await.unwrap();
    c.subscribe(pb::Hello {
        cluster: cluster.to_vec(),
        member_id: member.to_vec(),
        from_block,
    })
    .await
    .map(|r| r.into_inner())
}

/// The value of an unlabelled counter or gauge in a `/metrics` body.
pub fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

pub async fn next_push(s: &mut tonic::Streaming<pb::Push>) -> pb::Push {
    tokio::time::timeout(Duration::from_secs(15), s.next())
        .await
        .expect("push in time")
        .unwrap()
        .unwrap()
}

/// Sends `MessageFacet.send` as `from` (a member contract, impersonated on anvil).
pub async fn send_msg(
    rpc: &RpcClient,
    cluster: Address,
    from: Address,
    to: B256,
    env: u8,
    len: usize,
) -> u64 {
    let call = IMessageFacet::sendCall {
        recipientMemberId: to,
        envelopeId: B256::repeat_byte(env),
        ciphertext: vec![env; len].into(),
    };
    rpc.transact(from, Some(cluster), &call.abi_encode())
        .await
        .unwrap()
        .block_number
}

// ---------------------------------------------------------------------------------------------
// A JSON-RPC endpoint with a provider's result cap: forwards every call to anvil, but refuses an
// `eth_getLogs` whose answer holds more than `limit` logs with the error geth and Infura return
// (code -32005, "query returned more than N results").

/// The capped endpoint's URL and how many `eth_getLogs` it refused.
pub struct CappedRpc {
    pub url: String,
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CappedRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn capped_rpc(upstream: &str, limit: usize) -> CappedRpc {
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let rpc = RpcClient::new(upstream).unwrap();
    let refused = std::sync::Arc::new(AtomicU64::new(0));
    let count = refused.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (rpc, count) = (rpc.clone(), count.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (rpc, count) = (rpc.clone(), count.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let call: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            let method = call["method"].as_str().unwrap_or_default().to_string();
                            let answer = match rpc
                                .call::<serde_json::Value>(&method, call["params"].clone())
                                .await
                            {
                                Ok(v)
                                    if method == "eth_getLogs"
                                        && v.as_array().is_some_and(|a| a.len() > limit) =>
                                {
                                    count.fetch_add(1, Ordering::Relaxed);
                                    serde_json::json!({"jsonrpc": "2.0", "id": call["id"], "error": {
                                        "code": -32005,
                                        "message": format!("query returned more than {limit} results"),
                                    }})
                                }
                                Ok(v) => {
                                    serde_json::json!({"jsonrpc": "2.0", "id": call["id"], "result": v})
                                }
                                Err(attestmesh_chain::rpc::RpcError::Rpc {
                                    code, message, ..
                                }) => {
                                    serde_json::json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": code, "message": message}})
                                }
                                Err(e) => {
                                    serde_json::json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32603, "message": e.to_string()}})
                                }
                            };
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(answer.to_string()),
                            ));
                            resp.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, hyper::Error>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    CappedRpc { url, refused, task }
}
