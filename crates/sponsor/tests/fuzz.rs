//! Fuzz targets of the sponsor's decoders (issue 11, shared proptest convention): the
//! UserOperation JSON, the JSON-RPC dispatch through the real router (in process, chain view in
//! memory), the webhook verifier and `decode_execute`. Each feeds arbitrary input and mutations
//! (flip / insert / truncate) of a valid encoding, and checks a property beyond "no panic".

mod common;

use std::sync::Arc;

use alloy_primitives::{Address, Bytes, U256};
use attestmesh_fuzzkit::{config, edit, edits, mutate};
use attestmesh_sponsor::calls::{decode_execute, encode_execute};
use attestmesh_sponsor::policy::Policy;
use attestmesh_sponsor::{
    CounterStore, Service, ServiceConfig, SponsorSigner, WebhookSecret, wire,
};
use common::*;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::Value;
use tower::ServiceExt;

fn arb_op() -> impl Strategy<Value = attestmesh_core::userop::UserOperation> {
    (
        any::<[u8; 20]>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<[u128; 4]>(),
        any::<u64>(),
        proptest::option::of(any::<[u8; 20]>()),
        proptest::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(sender, nonce, cd, gas, pvg, pm, sig)| {
            let mut o = op(Address::from(sender), nonce, Bytes::from(cd));
            [
                o.call_gas_limit,
                o.verification_gas_limit,
                o.max_fee_per_gas,
                o.max_priority_fee_per_gas,
            ] = gas;
            o.pre_verification_gas = U256::from(pvg);
            if let Some(p) = pm {
                o.paymaster = Some(Address::from(p));
                o.paymaster_verification_gas_limit = gas[0] / 3;
                o.paymaster_post_op_gas_limit = gas[1] / 5;
                o.paymaster_data = Bytes::from(vec![0x42; 77]);
            }
            o.signature = Bytes::from(sig);
            o
        })
}

proptest! {
    #![proptest_config(config())]

    /// The unpacked v0.7 JSON: a valid op round-trips; arbitrary or mutated JSON never panics,
    /// and a failure names a field under the prefix.
    #[test]
    fn fuzz_user_operation_json(
        o in arb_op(),
        junk in proptest::collection::vec(any::<u8>(), 0..400),
        ms in edits(),
    ) {
        let v = op_json(&o);
        prop_assert_eq!(wire::user_operation("userOp", &v, true).expect("valid op"), o);
        let text = serde_json::to_vec(&v).expect("json");
        for input in [mutate(text, &ms), junk] {
            if let Ok(val) = serde_json::from_slice::<Value>(&input) {
                match wire::user_operation("userOp", &val, true) {
                    Ok(_) => {}
                    Err(e) => prop_assert!(e.field.starts_with("userOp"), "{e}"),
                }
            }
        }
    }

    /// `decode_execute`: round trip of valid calls; a mutated or arbitrary input that still
    /// decodes re-encodes to a call that decodes to the same thing.
    #[test]
    fn fuzz_decode_execute(
        target in any::<[u8; 20]>(),
        value in any::<u64>(),
        inner in proptest::collection::vec(any::<u8>(), 0..300),
        junk in proptest::collection::vec(any::<u8>(), 0..300),
        ms in edits(),
    ) {
        let cd = encode_execute(Address::from(target), U256::from(value), Bytes::from(inner.clone()));
        let d = decode_execute(&cd).expect("valid execute");
        prop_assert_eq!((d.target, d.value, d.data.to_vec()), (Address::from(target), U256::from(value), inner));
        let mut with_sel = <attestmesh_chain::bindings::IClusterMember::executeCall as alloy_sol_types::SolCall>::SELECTOR.to_vec();
        with_sel.extend_from_slice(&junk);
        for input in [mutate(cd, &ms), junk, with_sel] {
            if let Some(c) = decode_execute(&input) {
                let again = decode_execute(&encode_execute(c.target, c.value, c.data.clone()));
                prop_assert_eq!(again, Some(c));
            }
        }
    }

    /// The Standard Webhooks verifier: a genuine delivery verifies; any change to body, id,
    /// timestamp or signature does not; arbitrary headers never verify.
    #[test]
    fn fuzz_webhook_verify(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        id in "[a-zA-Z0-9_]{1,24}",
        skew in -299i64..=299,
        ms in proptest::collection::vec(edit(), 1..4),
        junk_sig in ".{0,120}",
        junk_ts in ".{0,24}",
    ) {
        let secret = WebhookSecret::parse("whsec_dGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcy1sb25nIQ==").expect("secret");
        let now = 1_750_000_000u64;
        let ts = now.saturating_add_signed(skew);
        let sig = secret.sign(&id, ts, &body);
        let ts_s = ts.to_string();
        prop_assert!(secret.verify(Some(&id), Some(&ts_s), Some(&sig), &body, now).is_ok());
        let bad_body = mutate(body.clone(), &ms);
        if bad_body != body {
            prop_assert!(secret.verify(Some(&id), Some(&ts_s), Some(&sig), &bad_body, now).is_err());
        }
        let bad_sig = String::from_utf8_lossy(&mutate(sig.clone().into_bytes(), &ms)).into_owned();
        // The header is a whitespace-separated list of signatures (Standard Webhooks), so an
        // edit that only adds whitespace around the genuine entry legitimately still verifies.
        if bad_sig != sig && !bad_sig.split_whitespace().any(|e| e == sig) {
            prop_assert!(secret.verify(Some(&id), Some(&ts_s), Some(&bad_sig), &body, now).is_err());
        }
        let bad_id = format!("{id}x");
        prop_assert!(secret.verify(Some(&bad_id), Some(&ts_s), Some(&sig), &body, now).is_err());
        prop_assert!(secret.verify(Some(&id), Some(&junk_ts), Some(&junk_sig), &body, now).is_err());
        prop_assert!(secret.verify(None, Some(&ts_s), Some(&sig), &body, now).is_err());
    }
}

/// The real router over an in-memory chain view: no socket, no network.
fn service() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(CounterStore::open(&dir.path().join("db")).expect("store"));
    let cfg = policy_config(1_000_000);
    let policy = Policy::new(cfg, MemView(MemState::fixture()), store);
    let signer = SponsorSigner::from_hex(SIGNER_KEY).expect("key");
    let svc = Service::new(policy, signer, None, ServiceConfig::new(PAYMASTER));
    (attestmesh_sponsor::router(Arc::new(svc)), dir)
}

fn valid_request(nonce: u64) -> Vec<u8> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "pm_getPaymasterData",
        "params": [op_json(&good_op(nonce)), entry_point().to_string(), format!("{CHAIN_ID:#x}"), {}]});
    serde_json::to_vec(&body).expect("json")
}

/// The JSON-RPC dispatch: whatever the body, the answer is one of the documented statuses with
/// a JSON-RPC 2.0 body holding a result or an error with a documented code, never a 5xx (the
/// chain view and database work), and only a well-formed request is ever signed.
#[test]
fn fuzz_rpc_dispatch() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (router, _dir) = service();
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let strategy = (
        any::<u64>(),
        proptest::collection::vec(edit(), 0..6),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(nonce, ms, junk, use_junk)| {
            let body = if use_junk {
                junk
            } else {
                mutate(valid_request(nonce), &ms)
            };
            let (status, answer) = rt.block_on(async {
                let req = axum::http::Request::builder()
                    .method("POST")
                    .uri("/")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.clone()))
                    .expect("request");
                let resp = router.clone().oneshot(req).await.expect("infallible");
                let status = resp.status().as_u16();
                let bytes = resp.into_body().collect().await.expect("body").to_bytes();
                (status, bytes)
            });
            prop_assert!(matches!(status, 200 | 400), "status {status}");
            let v: Value = serde_json::from_slice(&answer).expect("JSON answer");
            prop_assert_eq!(&v["jsonrpc"], "2.0");
            if let Some(code) = v["error"]["code"].as_i64() {
                prop_assert!(
                    [-32700, -32600, -32601, -32602, -32003, -32005].contains(&code),
                    "code {code}: {v}"
                );
            } else {
                prop_assert!(v.get("result").is_some(), "{v}");
                if v["result"]["paymasterData"].is_string() {
                    // Signed: the body was a well-formed request for a sponsorable operation.
                    let req: Value = serde_json::from_slice(&body).expect("signed => JSON");
                    prop_assert_eq!(&req["method"], "pm_getPaymasterData");
                }
            }
            Ok(())
        })
        .expect("fuzz_rpc_dispatch");
}

/// Found by `fuzz_webhook_verify` in CI: a tab appended to the signature header. The header is a
/// whitespace-separated list, so the genuine entry still verifies; a tab inside the entry does
/// not.
#[test]
fn regression_webhook_signature_with_surrounding_whitespace() {
    let secret = WebhookSecret::parse("whsec_dGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcy1sb25nIQ==")
        .expect("secret");
    let now = 1_750_000_000u64;
    let sig = secret.sign("A", now, b"");
    let ts = now.to_string();
    let padded = format!("{sig}\t");
    assert!(
        secret
            .verify(Some("A"), Some(&ts), Some(&padded), b"", now)
            .is_ok()
    );
    let (head, tail) = sig.split_at(5);
    let split = format!("{head}\t{tail}");
    assert!(
        secret
            .verify(Some("A"), Some(&ts), Some(&split), b"", now)
            .is_err()
    );
}
