//! The real service on 127.0.0.1:0: ERC-7677 methods, error mapping, webhook verification,
//! the daily cap across a restart, and that the produced signature verifies.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, Bytes, U256};
use attestmesh_core::userop::{
    PAYMASTER_DATA_OFFSET, SPONSOR_PAYMASTER_AND_DATA_LEN, SponsorPaymasterData,
    sponsor_paymaster_hash,
};
use attestmesh_sponsor::policy::Policy;
use attestmesh_sponsor::server::STUB_SIGNATURE;
use attestmesh_sponsor::{
    CounterStore, RpcChainView, Service, ServiceConfig, SponsorSigner, WebhookSecret,
};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes as HBytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const WHSEC: &str = "whsec_dGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcy1sb25nIQ==";

struct Running {
    addr: std::net::SocketAddr,
    state: Arc<MemState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    async fn start(db: &Path, cap: u32, webhook: bool, state: Arc<MemState>) -> Self {
        Self::start_with(db, cap, webhook, state, ServiceConfig::new(PAYMASTER)).await
    }

    async fn start_with(
        db: &Path,
        cap: u32,
        webhook: bool,
        state: Arc<MemState>,
        cfg: ServiceConfig,
    ) -> Self {
        let store = Arc::new(CounterStore::open(db).expect("open db"));
        let policy = Policy::new(policy_config(cap), MemView(state.clone()), store);
        let signer = SponsorSigner::from_hex(SIGNER_KEY).expect("key");
        let secret = webhook.then(|| WebhookSecret::parse(WHSEC).expect("secret"));
        // Unlimited: these tests make many requests from one address (tests/attack.rs checks
        // the limit).
        let svc = Arc::new(Service::new(policy, signer, secret, cfg).with_rate_limit(None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(attestmesh_sponsor::serve(listener, svc, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("server exited cleanly");
        }
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Vec<u8>>,
    ) -> (u16, String) {
        request(self.addr, "POST", path, headers, body.into()).await
    }

    async fn rpc(&self, method: &str, params: Value) -> (u16, Value) {
        let body =
            json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string();
        let (s, b) = self.post("/", &[], body).await;
        (s, serde_json::from_str(&b).expect("json answer"))
    }
}

async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<HBytes>>();
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let resp = client
        .request(b.body(Full::new(HBytes::from(body))).expect("request"))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn params(op: &attestmesh_core::userop::UserOperation) -> Value {
    json!([
        op_json(op),
        entry_point().to_string(),
        format!("{CHAIN_ID:#x}"),
        {}
    ])
}

/// `chmod 600`, as a signer key file must be.
fn private(path: &Path) {
    std::fs::set_permissions(
        path,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod 600");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn stub_data_has_final_shape_and_is_not_final() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Running::start(&dir.path().join("db"), 5, false, MemState::fixture()).await;
    let (status, v) = srv
        .rpc("pm_getPaymasterStubData", params(&good_op(0)))
        .await;
    assert_eq!(status, 200, "{v}");
    let r = &v["result"];
    assert_eq!(v["id"], 7);
    assert_eq!(r["isFinal"], false);
    assert_eq!(
        r["paymaster"]
            .as_str()
            .expect("pm")
            .parse::<Address>()
            .expect("addr"),
        PAYMASTER
    );
    assert_eq!(r["paymasterVerificationGasLimit"], "0x186a0");
    assert_eq!(r["paymasterPostOpGasLimit"], "0x0");
    let data = attestmesh_sponsor::wire::bytes("d", &r["paymasterData"]).expect("hex");
    let parsed = SponsorPaymasterData::decode(&data).expect("77 bytes");
    assert_eq!(parsed.signature, STUB_SIGNATURE);
    assert!(parsed.valid_until > now() && parsed.valid_until <= now() + 601);
    // Stubs charge nothing: a cap of 5 is not touched by many stub calls.
    for _ in 0..8 {
        assert_eq!(
            srv.rpc("pm_getPaymasterStubData", params(&good_op(0)))
                .await
                .0,
            200
        );
    }
    let (_, m) = request(srv.addr, "GET", "/metrics", &[], vec![]).await;
    assert!(m.contains("attestmesh_sponsor_decisions_total{method=\"pm_getPaymasterStubData\",reason=\"sponsored\"} 9"), "{m}");
    srv.stop().await;
}

#[tokio::test]
async fn paymaster_data_signature_recovers_to_the_sponsor_signer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Running::start(&dir.path().join("db"), 5, false, MemState::fixture()).await;
    let signer = SponsorSigner::from_hex(SIGNER_KEY).expect("key").address();

    for (label, mut op) in [
        ("no paymaster fields yet", good_op(3)),
        ("estimated paymaster gas", good_op(4)),
    ] {
        if label == "estimated paymaster gas" {
            op.paymaster = Some(PAYMASTER);
            op.paymaster_verification_gas_limit = 55_555;
            op.paymaster_post_op_gas_limit = 0;
        }
        let (status, v) = srv.rpc("pm_getPaymasterData", params(&op)).await;
        assert_eq!(status, 200, "{v}");
        let r = &v["result"];
        assert!(r.get("isFinal").is_none());
        let vgl = attestmesh_sponsor::wire::quantity_u128("v", &r["paymasterVerificationGasLimit"])
            .expect("q");
        let pogl =
            attestmesh_sponsor::wire::quantity_u128("p", &r["paymasterPostOpGasLimit"]).expect("q");
        if op.paymaster.is_some() {
            assert_eq!(vgl, 55_555, "the wallet's estimate is what gets signed");
        }
        // Assemble the operation exactly as the wallet will submit it.
        op.paymaster = Some(PAYMASTER);
        op.paymaster_verification_gas_limit = vgl;
        op.paymaster_post_op_gas_limit = pogl;
        op.paymaster_data = attestmesh_sponsor::wire::bytes("d", &r["paymasterData"]).expect("hex");
        op.signature = Bytes::from(vec![0x11; 65]); // the account's signature is not covered
        let packed = op.pack();
        assert_eq!(
            packed.paymaster_and_data.len(),
            SPONSOR_PAYMASTER_AND_DATA_LEN
        );
        let pm = SponsorPaymasterData::decode(&packed.paymaster_and_data[PAYMASTER_DATA_OFFSET..])
            .expect("decode");
        assert_ne!(pm.signature, STUB_SIGNATURE);
        let hash =
            sponsor_paymaster_hash(&packed, CHAIN_ID, PAYMASTER, pm.valid_until, pm.valid_after)
                .expect("hash");
        assert_eq!(
            attestmesh_sponsor::signer::recover(hash, &pm.signature),
            Some(signer),
            "{label}"
        );
        let s = U256::from_be_slice(&pm.signature[32..64]);
        let half_n = U256::from_str_radix(
            "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0",
            16,
        )
        .expect("n/2");
        assert!(s <= half_n, "low s");
        // Any change to a covered field breaks it.
        let mut tampered = op.clone();
        tampered.call_gas_limit += 1;
        let h2 = sponsor_paymaster_hash(
            &tampered.pack(),
            CHAIN_ID,
            PAYMASTER,
            pm.valid_until,
            pm.valid_after,
        )
        .expect("hash");
        assert_ne!(
            attestmesh_sponsor::signer::recover(h2, &pm.signature),
            Some(signer)
        );
    }
    srv.stop().await;
}

fn params_with_context(op: &attestmesh_core::userop::UserOperation, context: Value) -> Value {
    json!([
        op_json(op),
        entry_point().to_string(),
        format!("{CHAIN_ID:#x}"),
        context
    ])
}

/// A sponsor configured with a sponsorship policy id (as a hosted paymaster's policy) serves only
/// requests whose ERC-7677 context names it, on both methods, before charging anything.
#[tokio::test]
async fn required_policy_id_is_checked_in_the_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServiceConfig::new(PAYMASTER);
    cfg.sponsorship_policy_id = Some("sp_attestmesh".into());
    let srv = Running::start_with(&dir.path().join("db"), 2, false, MemState::fixture(), cfg).await;
    let good = json!({"sponsorshipPolicyId": "sp_attestmesh"});
    for method in ["pm_getPaymasterStubData", "pm_getPaymasterData"] {
        for context in [
            json!({}),
            Value::Null,
            json!({"sponsorshipPolicyId": "sp_other"}),
            json!({"policyId": "sp_attestmesh"}),
        ] {
            let (status, v) = srv
                .rpc(method, params_with_context(&good_op(0), context.clone()))
                .await;
            assert_eq!(status, 200, "{method} {context}: {v}");
            assert_eq!(v["error"]["code"], -32003, "{method} {context}: {v}");
            assert_eq!(
                v["error"]["data"]["reason"], "sponsorship_policy_mismatch",
                "{method} {context}: {v}"
            );
        }
        let (status, v) = srv
            .rpc(
                method,
                params_with_context(&good_op(0), json!({"sponsorshipPolicyId": 7})),
            )
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["data"]["field"], "context.sponsorshipPolicyId");
    }
    // Extra context fields are the client's business.
    let (_, v) = srv
        .rpc(
            "pm_getPaymasterStubData",
            params_with_context(
                &good_op(0),
                json!({"sponsorshipPolicyId": "sp_attestmesh", "note": "x"}),
            ),
        )
        .await;
    assert!(v["result"]["paymasterData"].is_string(), "{v}");
    // The denials charged nothing: the daily cap of 2 still allows two signed operations.
    for nonce in 0..2 {
        let (status, v) = srv
            .rpc(
                "pm_getPaymasterData",
                params_with_context(&good_op(nonce), good.clone()),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert!(v["result"]["paymasterData"].is_string(), "{v}");
    }
    let (_, v) = srv
        .rpc(
            "pm_getPaymasterData",
            params_with_context(&good_op(2), good.clone()),
        )
        .await;
    assert_eq!(v["error"]["data"]["reason"], "daily_cap_exceeded", "{v}");
    srv.stop().await;
}

#[tokio::test]
async fn denials_bad_json_and_malformed_user_ops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Running::start(&dir.path().join("db"), 5, false, MemState::fixture()).await;

    let stranger = op(STRANGER, 0, execute(CLUSTER_A, 0, &set_csk(1)));
    let (status, v) = srv.rpc("pm_getPaymasterData", params(&stranger)).await;
    assert_eq!(status, 200);
    assert_eq!(v["error"]["code"], -32003);
    assert_eq!(v["error"]["data"]["reason"], "sender_not_member");
    let foreign = op(NODE_A, 0, execute(CLUSTER_B, 0, &set_csk(1)));
    let (_, v) = srv.rpc("pm_getPaymasterStubData", params(&foreign)).await;
    assert_eq!(v["error"]["data"]["reason"], "target_not_sender_cluster");

    let (status, body) = srv.post("/", &[], "{not json").await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);

    let (status, body) = srv
        .post(
            "/",
            &[],
            r#"{"id":1,"method":"pm_getPaymasterData","params":[]}"#,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("-32600"));

    let mut bad = op_json(&good_op(0));
    bad["callGasLimit"] = json!("0xnothex");
    let (status, v) = srv
        .rpc(
            "pm_getPaymasterData",
            json!([bad, entry_point().to_string(), format!("{CHAIN_ID:#x}"), {}]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], -32602);
    assert_eq!(v["error"]["data"]["field"], "userOp.callGasLimit");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("userOp.callGasLimit")
    );

    let mut missing = op_json(&good_op(0));
    missing.as_object_mut().expect("obj").remove("maxFeePerGas");
    let (status, v) = srv
        .rpc(
            "pm_getPaymasterData",
            json!([
                missing,
                entry_point().to_string(),
                format!("{CHAIN_ID:#x}"),
                {}
            ]),
        )
        .await;
    assert_eq!(
        (status, v["error"]["data"]["field"].clone()),
        (400, json!("userOp.maxFeePerGas"))
    );
    // …but a stub request before gas estimation may omit it.
    let (status, _) = srv
        .rpc(
            "pm_getPaymasterStubData",
            json!([
                missing,
                entry_point().to_string(),
                format!("{CHAIN_ID:#x}"),
                null
            ]),
        )
        .await;
    assert_eq!(status, 200);

    let (status, v) = srv
        .rpc(
            "pm_getPaymasterData",
            json!([op_json(&good_op(0)), "0x1234", "0x7a69", {}]),
        )
        .await;
    assert_eq!(
        (status, v["error"]["data"]["field"].clone()),
        (400, json!("entryPoint"))
    );
    let (status, v) = srv
        .rpc(
            "pm_getPaymasterData",
            json!([op_json(&good_op(0)), entry_point().to_string()]),
        )
        .await;
    assert_eq!(
        (status, v["error"]["data"]["field"].clone()),
        (400, json!("params"))
    );

    let (status, v) = srv.rpc("eth_sendUserOperation", json!([])).await;
    assert_eq!((status, v["error"]["code"].clone()), (200, json!(-32601)));
    let (_, v) = srv.rpc("pm_supportedEntryPoints", json!([])).await;
    assert_eq!(
        v["result"][0]
            .as_str()
            .expect("ep")
            .parse::<Address>()
            .expect("addr"),
        entry_point()
    );

    srv.state.down.store(true, Ordering::Relaxed);
    let (status, v) = srv
        .rpc(
            "pm_getPaymasterStubData",
            params(&op(NODE_B, 0, execute(CLUSTER_B, 0, &set_csk(1)))),
        )
        .await;
    assert_eq!((status, v["error"]["code"].clone()), (503, json!(-32002)));

    let (status, health) = request(srv.addr, "GET", "/healthz", &[], vec![]).await;
    assert_eq!(status, 200);
    assert!(health.contains("\"status\":\"ok\""));
    let h: Value = serde_json::from_str(&health).expect("json");
    assert_eq!(
        h["trustedClusters"],
        json!([CLUSTER_A.to_string(), CLUSTER_B.to_string()]),
        "the operator can see what it pays for: {h}"
    );
    let (_, m) = request(srv.addr, "GET", "/metrics", &[], vec![]).await;
    assert!(m.contains("reason=\"sender_not_member\"} 1"), "{m}");
    assert!(m.contains("kind=\"invalid_params\""), "{m}");
    assert!(
        m.contains("attestmesh_sponsor_decision_seconds_count"),
        "{m}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn daily_cap_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("counters.redb");
    let srv = Running::start(&db, 2, false, MemState::fixture()).await;
    for n in 0..2 {
        let (status, v) = srv.rpc("pm_getPaymasterData", params(&good_op(n))).await;
        assert_eq!(status, 200, "{v}");
        assert!(v.get("result").is_some(), "{v}");
    }
    let (_, v) = srv.rpc("pm_getPaymasterData", params(&good_op(2))).await;
    assert_eq!(v["error"]["code"], -32005);
    assert_eq!(v["error"]["data"]["reason"], "daily_cap_exceeded");
    srv.stop().await;

    // Same database file, fresh process state (new cache, new service).
    let srv = Running::start(&db, 2, false, MemState::fixture()).await;
    let (_, v) = srv.rpc("pm_getPaymasterData", params(&good_op(3))).await;
    assert_eq!(v["error"]["data"]["reason"], "daily_cap_exceeded", "{v}");
    let (_, v) = srv
        .rpc("pm_getPaymasterStubData", params(&good_op(3)))
        .await;
    assert_eq!(v["error"]["data"]["reason"], "daily_cap_exceeded", "{v}");
    // A retry of an already-charged nonce is still served.
    let (status, v) = srv.rpc("pm_getPaymasterData", params(&good_op(1))).await;
    assert_eq!(status, 200);
    assert!(v.get("result").is_some(), "{v}");
    srv.stop().await;
}

fn hook_body(op: &attestmesh_core::userop::UserOperation) -> String {
    json!({
        "type": "user_operation.sponsorship.requested",
        "data": {"object": {
            "userOperation": op_json(op),
            "entryPoint": entry_point().to_string(),
            "chainId": CHAIN_ID,
            "sponsorshipPolicyId": "sp_test",
        }}
    })
    .to_string()
}

fn signed(id: &str, ts: u64, body: &str) -> Vec<(&'static str, String)> {
    let sig = WebhookSecret::parse(WHSEC)
        .expect("secret")
        .sign(id, ts, body.as_bytes());
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sig),
    ]
}

#[tokio::test]
async fn webhook_verifies_signatures_and_applies_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = Running::start(&dir.path().join("db"), 1, true, MemState::fixture()).await;
    let body = hook_body(&good_op(0));

    let (status, a) = srv
        .post("/webhook", &signed("msg_1", now(), &body), body.clone())
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        serde_json::from_str::<Value>(&a).expect("json"),
        json!({"sponsor": true, "reason": "sponsored"})
    );

    // Redelivery of the same message: same answer, not charged again (the cap is 1).
    let (status, again) = srv
        .post("/webhook", &signed("msg_1", now(), &body), body.clone())
        .await;
    assert_eq!((status, again.clone()), (200, a));
    // A new operation is over the cap.
    let body2 = hook_body(&good_op(1));
    let (_, b) = srv
        .post("/webhook", &signed("msg_2", now(), &body2), body2.clone())
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json"),
        json!({"sponsor": false, "reason": "daily_cap_exceeded"})
    );
    let body3 = hook_body(&op(STRANGER, 0, execute(CLUSTER_A, 0, &set_csk(1))));
    let (_, c) = srv
        .post("/webhook", &signed("msg_3", now(), &body3), body3.clone())
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&c).expect("json"),
        json!({"sponsor": false, "reason": "sender_not_member"})
    );

    // Bad signature: body changed after signing.
    let mut h = signed("msg_4", now(), &body);
    let (status, e) = srv
        .post("/webhook", &h, body.replace("sp_test", "sp_evil"))
        .await;
    assert_eq!(status, 401, "{e}");
    // Wrong secret.
    h[2].1 =
        WebhookSecret::parse("whsec_b3RoZXI=")
            .expect("s")
            .sign("msg_4", now(), body.as_bytes());
    assert_eq!(srv.post("/webhook", &h, body.clone()).await.0, 401);
    // Stale and future timestamps, correctly signed.
    let stale = now() - 301;
    assert_eq!(
        srv.post("/webhook", &signed("msg_5", stale, &body), body.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        srv.post(
            "/webhook",
            &signed("msg_6", now() + 400, &body),
            body.clone()
        )
        .await
        .0,
        401
    );
    // Missing headers.
    assert_eq!(srv.post("/webhook", &[], body.clone()).await.0, 401);

    // Verified but malformed payload: 400 naming the field.
    let bad = json!({"type": "user_operation.sponsorship.requested", "data": {"object": {
        "userOperation": {"sender": "0x12"}, "entryPoint": entry_point().to_string(), "chainId": 1}}})
    .to_string();
    let (status, e) = srv
        .post("/webhook", &signed("msg_7", now(), &bad), bad.clone())
        .await;
    assert_eq!(status, 400);
    assert!(e.contains("data.object.userOperation.sender"), "{e}");
    let fin =
        json!({"type": "user_operation.sponsorship.finalized", "data": {"object": {}}}).to_string();
    let (status, e) = srv
        .post("/webhook", &signed("msg_8", now(), &fin), fin.clone())
        .await;
    assert_eq!((status, e.as_str()), (200, r#"{"received":true}"#));
    srv.stop().await;

    // Without a configured secret the endpoint does not exist.
    let srv = Running::start(&dir.path().join("db2"), 1, false, MemState::fixture()).await;
    assert_eq!(
        srv.post("/webhook", &signed("msg_9", now(), &body), body.clone())
            .await
            .0,
        404
    );
    srv.stop().await;
}

/// The real JSON-RPC `ChainView` against a real HTTP JSON-RPC node (answering from the same
/// fixture), including reverts and an unreachable endpoint.
#[tokio::test]
async fn rpc_chain_view_over_http() {
    use attestmesh_sponsor::ChainView;
    let node = FakeNode::start(MemState::fixture(), Duration::ZERO).await;
    let view = RpcChainView::new(
        attestmesh_chain::rpc::RpcClient::new(&node.url())
            .expect("client")
            .with_timeout(Duration::from_secs(2)),
    );
    assert!(
        view.is_our_member(MEMBER_FACTORY, NODE_A)
            .await
            .expect("call")
    );
    assert!(
        !view
            .is_our_member(MEMBER_FACTORY, APP_A)
            .await
            .expect("call")
    );
    assert!(
        !view
            .is_our_member(STRANGER, NODE_A)
            .await
            .expect("no code → false")
    );
    assert_eq!(view.cluster_of(APP_A).await.expect("call"), Some(CLUSTER_A));
    assert_eq!(
        view.cluster_of(STRANGER).await.expect("revert → None"),
        None
    );
    assert!(
        view.is_deployed_cluster(CLUSTER_FACTORY, CLUSTER_A)
            .await
            .expect("call")
    );
    assert!(
        !view
            .is_deployed_cluster(CLUSTER_FACTORY, ROGUE_CLUSTER)
            .await
            .expect("call")
    );
    assert!(
        view.is_allowed_app_id(CLUSTER_A, APP_A)
            .await
            .expect("call")
    );
    assert!(
        !view
            .is_allowed_app_id(CLUSTER_A, UNLISTED_APP)
            .await
            .expect("call")
    );
    let addr = node.addr;
    node.stop().await;
    let dead = RpcChainView::new(
        attestmesh_chain::rpc::RpcClient::new(&format!("http://{addr}"))
            .expect("client")
            .with_timeout(Duration::from_secs(2)),
    );
    assert!(dead.cluster_of(NODE_A).await.is_err());
    assert!(attestmesh_chain::rpc::RpcClient::new("ftp://x").is_err());
}

/// `run` end to end: key file, webhook secret file, db path, RPC check, serve, shut down.
#[tokio::test]
async fn run_starts_from_settings_and_fails_fast_naming_the_setting() {
    let node = FakeNode::start(MemState::fixture(), Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, format!("{SIGNER_KEY}\n")).expect("write key");
    private(&key);
    let secret = dir.path().join("whsec");
    std::fs::write(&secret, WHSEC).expect("write secret");
    let settings = attestmesh_sponsor::Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        rpc_url: node.url(),
        chain_id: CHAIN_ID,
        entry_point: entry_point(),
        paymaster: PAYMASTER,
        member_factory: MEMBER_FACTORY,
        cluster_factory: CLUSTER_FACTORY,
        signer_key_file: key.clone(),
        db_path: dir.path().join("db"),
        daily_cap: 3,
        trust: trusted(),
        bounds: attestmesh_sponsor::GasBounds::default(),
        daily_wei_per_sender: attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_SENDER,
        daily_wei_per_cluster: attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_CLUSTER,
        rate_limit: attestmesh_sponsor::RateLimit::default(),
        webhook_secret_file: Some(secret),
        rpc_timeout: Duration::from_secs(2),
        sponsorship_policy_id: None,
    };

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(attestmesh_sponsor::run(
        settings.clone(),
        move |a| {
            let _ = ready_tx.send(a);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let addr = ready_rx.await.expect("ready");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "pm_getPaymasterData", "params": params(&good_op(0))});
    let (status, answer) = request(addr, "POST", "/", &[], body.to_string().into_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("paymasterData"));
    let _ = stop_tx.send(());
    task.await.expect("join").expect("clean exit");

    let mut wrong_chain = settings.clone();
    wrong_chain.chain_id = 1;
    let e = attestmesh_sponsor::run(wrong_chain, |_| {}, async {})
        .await
        .expect_err("must fail");
    assert!(e.to_string().contains("--chain-id"), "{e}");
    let mut bad_key = settings.clone();
    let bad = dir.path().join("badkey");
    std::fs::write(&bad, "not a key").expect("write");
    private(&bad);
    bad_key.signer_key_file = bad;
    let e = attestmesh_sponsor::run(bad_key, |_| {}, async {})
        .await
        .expect_err("must fail");
    assert!(e.to_string().starts_with("--signer-key-file"), "{e}");
    assert!(!e.to_string().contains("not a key"));
    // Readable by others: refused, naming the file and its mode.
    let mut open_key = settings.clone();
    let shared = dir.path().join("shared.key");
    std::fs::write(&shared, SIGNER_KEY).expect("write");
    std::fs::set_permissions(
        &shared,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .expect("chmod");
    open_key.signer_key_file = shared.clone();
    let e = attestmesh_sponsor::run(open_key, |_| {}, async {})
        .await
        .expect_err("must fail");
    let msg = e.to_string();
    assert!(msg.starts_with("--signer-key-file"), "{msg}");
    assert!(
        msg.contains(&shared.display().to_string()) && msg.contains("0644"),
        "{msg}"
    );
    // No trust set is a configuration error, never "trust every factory cluster".
    let mut no_trust = settings.clone();
    no_trust.trust = attestmesh_sponsor::TrustSet::default();
    let e = attestmesh_sponsor::run(no_trust, |_| {}, async {})
        .await
        .expect_err("must fail");
    assert!(e.to_string().contains("--trusted-cluster"), "{e}");
    let mut no_rpc = settings.clone();
    no_rpc.rpc_url = "http://127.0.0.1:1".into();
    let e = attestmesh_sponsor::run(no_rpc, |_| {}, async {})
        .await
        .expect_err("must fail");
    assert!(e.to_string().starts_with("--rpc-url"), "{e}");
    node.stop().await;
}
