//! Attack tests of issue 11 against the real HTTP service (in-memory chain view): a caller that
//! already passes the provenance checks must still not be able to make the sponsor sign
//! unbounded gas values, spend more than a daily wei budget, or flood the JSON-RPC endpoint.

mod common;

use std::path::Path;
use std::sync::Arc;

use alloy_primitives::U256;
use attestmesh_core::userop::UserOperation;
use attestmesh_sponsor::policy::Policy;
use attestmesh_sponsor::{CounterStore, Service, ServiceConfig, SponsorSigner};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes as HBytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

struct Running {
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(db: &Path, cap: u32, rate_limited: bool) -> Running {
    let store = Arc::new(CounterStore::open(db).expect("open db"));
    let cfg = policy_config(cap);
    let policy = Policy::new(cfg, MemView(MemState::fixture()), store);
    let signer = SponsorSigner::from_hex(SIGNER_KEY).expect("key");
    let svc = Service::new(policy, signer, None, ServiceConfig::new(PAYMASTER));
    let svc = if rate_limited {
        svc
    } else {
        svc.with_rate_limit(None)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(attestmesh_sponsor::serve(
        listener,
        Arc::new(svc),
        async move {
            let _ = rx.await;
        },
    ));
    Running { addr, _stop: tx }
}

async fn rpc(addr: std::net::SocketAddr, method: &str, params: Value) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<HBytes>>();
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/"))
        .body(Full::new(HBytes::from(body)))
        .expect("request");
    let resp = client.request(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn params(op: &UserOperation) -> Value {
    json!([
        op_json(op),
        entry_point().to_string(),
        format!("{CHAIN_ID:#x}"),
        {}
    ])
}

fn reason(answer: &Value) -> Option<&str> {
    answer["error"]["data"]["reason"].as_str()
}

#[tokio::test]
async fn attack_sponsor_signs_unbounded_gas_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(&dir.path().join("db"), 1000, false).await;
    let mut base = good_op(0);
    base.paymaster = Some(PAYMASTER);
    base.paymaster_verification_gas_limit = 100_000;
    type Tweak = fn(&mut UserOperation);
    let cases: Vec<(&str, Tweak)> = vec![
        ("call_gas_limit_too_high", |o| o.call_gas_limit = 10_000_000),
        ("verification_gas_limit_too_high", |o| {
            o.verification_gas_limit = 5_000_000
        }),
        ("paymaster_verification_gas_limit_too_high", |o| {
            o.paymaster_verification_gas_limit = 3_000_000
        }),
        ("paymaster_post_op_gas_limit_too_high", |o| {
            o.paymaster_post_op_gas_limit = 2_000_000
        }),
        ("pre_verification_gas_too_high", |o| {
            o.pre_verification_gas = U256::from(4_000_000u64)
        }),
        ("max_priority_fee_too_high", |o| {
            o.max_priority_fee_per_gas = 1_000_000_000_000;
            o.max_fee_per_gas = 1_000_000_000_000;
        }),
        ("max_fee_too_high", |o| {
            o.max_fee_per_gas = 1_000_000_000_000
        }),
    ];
    for (i, (want, tweak)) in cases.iter().enumerate() {
        let mut op = base.clone();
        op.nonce = U256::from(i);
        tweak(&mut op);
        let (status, answer) = rpc(s.addr, "pm_getPaymasterData", params(&op)).await;
        assert!(
            answer["result"]["paymasterData"].is_null(),
            "{want}: the sponsor signed it: {status} {answer}"
        );
        assert_eq!(reason(&answer), Some(*want), "{answer}");
        // The stub refuses the same values (a wallet learns early, nothing is charged).
        let (_, stub) = rpc(s.addr, "pm_getPaymasterStubData", params(&op)).await;
        assert_eq!(reason(&stub), Some(*want), "stub: {stub}");
    }
    // Within the bounds: signed.
    let (status, answer) = rpc(s.addr, "pm_getPaymasterData", params(&base)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"]["paymasterData"].is_string(), "{answer}");
}

#[tokio::test]
async fn attack_daily_wei_budget_per_sender() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A cap high enough that only wei can stop the sender.
    let s = start(&dir.path().join("db"), 1000, false).await;
    // Each op at the most the fee bound allows (3 × (1 + 1) gwei): 235 000 gas × 6 gwei =
    // 1.41e15 wei; the default budget of 0.05 ETH per sender per day fits 35 of them.
    let mut spent = 0u32;
    let mut denied = None;
    for nonce in 0..60u64 {
        let mut op = good_op(nonce);
        op.max_fee_per_gas = 6_000_000_000;
        let (_, answer) = rpc(s.addr, "pm_getPaymasterData", params(&op)).await;
        if answer["result"]["paymasterData"].is_string() {
            spent += 1;
        } else {
            denied = Some(answer);
            break;
        }
    }
    let denied = denied.unwrap_or_else(|| panic!("all 60 ops signed: no wei budget"));
    assert_eq!(
        reason(&denied),
        Some("daily_sender_budget_exceeded"),
        "{denied}"
    );
    assert_eq!(denied["error"]["code"], -32005, "{denied}");
    assert_eq!(spent, 35, "0.05 ETH / 1.41e15 wei per op");
    // Another sender of the same cluster is not affected by this sender's budget.
    let other = op(APP_A, 0, execute(CLUSTER_A, 0, &set_csk(1)));
    let (status, answer) = rpc(s.addr, "pm_getPaymasterData", params(&other)).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn attack_rpc_flood_from_one_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(&dir.path().join("db"), 1000, true).await;
    let mut limited = None;
    let mut ok = 0;
    for _ in 0..100 {
        let (status, answer) = rpc(s.addr, "pm_supportedEntryPoints", json!([])).await;
        if status == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(status, 200, "{answer}");
        ok += 1;
    }
    let answer = limited.unwrap_or_else(|| panic!("100 requests in a burst, none refused"));
    assert!(ok >= 40, "the burst of 40 is served first, got {ok}");
    assert_eq!(answer["error"]["code"], -32005, "{answer}");
    assert_eq!(reason(&answer), Some("rate_limited"));
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit")),
        "{answer}"
    );
}
