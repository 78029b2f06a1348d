//! Fuzz targets (issue 11, BRIEF convention): the guest agent's JSON answers. The agent is
//! outside the node's code (and devtee stands in for it in tests), so every body it returns is
//! decoded as untrusted bytes: arbitrary input and mutations of real answers must give a typed
//! error or a checked value, never a panic. `ATTESTMESH_FUZZ_CASES` bounds the run (default 256).

#![allow(clippy::unwrap_used)]

use attestmesh_fuzzkit::{config, edits, mutate};
use attestmesh_tee::client::{AgentError, decode_get_key, decode_get_quote, decode_info};
use attestmesh_tee::wire::{GetKeyResponse, GetQuoteResponse, InfoResponse};
use hyper::StatusCode;
use proptest::prelude::*;

fn statuses() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        4 => Just(StatusCode::OK),
        1 => (100u16..600).prop_map(|c| StatusCode::from_u16(c).unwrap()),
    ]
}

fn valid_info() -> Vec<u8> {
    serde_json::to_vec(&InfoResponse {
        app_id: "7a27fc94b2d4b5b57a5d5f7a4cf4fd7e5c5b2a11".into(),
        instance_id: "0f".into(),
        compose_hash: "ab".repeat(32),
        tcb_info: r#"{"mrtd":"00"}"#.into(),
        ..InfoResponse::default()
    })
    .unwrap()
}

fn valid_key() -> Vec<u8> {
    serde_json::to_vec(&GetKeyResponse {
        key: "11".repeat(32),
        signature_chain: vec!["22".repeat(65), "33".repeat(65)],
    })
    .unwrap()
}

fn valid_quote() -> Vec<u8> {
    serde_json::to_vec(&GetQuoteResponse {
        quote: "0400".repeat(40),
        event_log: "[]".into(),
        report_data: Some("00".repeat(64)),
        vm_config: None,
    })
    .unwrap()
}

/// A non-success status is always an error carrying that status, whatever the body says.
fn check_status<T: std::fmt::Debug>(status: StatusCode, r: &Result<T, AgentError>) {
    if !status.is_success() {
        match r {
            Err(AgentError::Status { status: s, .. }) => assert_eq!(*s, status),
            other => panic!("status {status} decoded as {other:?}"),
        }
    }
}

fn check_info(status: StatusCode, body: &[u8]) {
    let r = decode_info(status, body);
    check_status(status, &r);
    if let Ok((info, app_id)) = r {
        // Accepted only with an app id that is exactly an address.
        let hex = info.app_id.trim_start_matches("0x");
        assert_eq!(
            alloy_primitives::hex::decode(hex).unwrap(),
            app_id.as_slice()
        );
    }
}

fn check_key(status: StatusCode, body: &[u8]) {
    let r = decode_get_key("attestmesh/x25519/v1", status, body);
    check_status(status, &r);
    if let Ok(k) = r {
        // The seed is the first 32 bytes of the key, and the chain is two 65-byte signatures.
        let resp: GetKeyResponse = serde_json::from_slice(body).unwrap();
        let raw = alloy_primitives::hex::decode(resp.key.trim_start_matches("0x")).unwrap();
        assert_eq!(&k.seed[..], &raw[..32]);
        assert_eq!(resp.signature_chain.len(), 2);
    }
}

fn check_quote(status: StatusCode, body: &[u8]) {
    let r = decode_get_quote(status, body);
    check_status(status, &r);
    if let Ok(q) = r {
        assert!(alloy_primitives::hex::decode(q.quote.trim_start_matches("0x")).is_ok());
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_info_response(status in statuses(), arbitrary in prop::collection::vec(any::<u8>(), 0..512), e in edits()) {
        check_info(status, &arbitrary);
        check_info(status, &mutate(valid_info(), &e));
    }

    #[test]
    fn fuzz_get_key_response(status in statuses(), arbitrary in prop::collection::vec(any::<u8>(), 0..512), e in edits()) {
        check_key(status, &arbitrary);
        check_key(status, &mutate(valid_key(), &e));
    }

    #[test]
    fn fuzz_get_quote_response(status in statuses(), arbitrary in prop::collection::vec(any::<u8>(), 0..512), e in edits()) {
        check_quote(status, &arbitrary);
        check_quote(status, &mutate(valid_quote(), &e));
    }

    /// Structured JSON of the right shape with arbitrary field strings: gets past the parser to
    /// the hex and length checks.
    #[test]
    fn fuzz_get_key_fields(key in "[0-9a-fA-Fx]{0,80}", a in "[0-9a-f]{0,140}", b in "[0-9a-f]{0,140}", extra in prop::option::of("[0-9a-f]{0,10}")) {
        let mut chain = vec![a, b];
        if let Some(x) = extra {
            chain.push(x);
        }
        let body = serde_json::to_vec(&serde_json::json!({"key": key, "signature_chain": chain})).unwrap();
        check_key(StatusCode::OK, &body);
    }
}

/// The valid seeds decode: the mutations start from real answers, not from garbage.
#[test]
fn valid_seeds_decode() {
    check_info(StatusCode::OK, &valid_info());
    assert!(decode_info(StatusCode::OK, &valid_info()).is_ok());
    assert!(decode_get_key("p", StatusCode::OK, &valid_key()).is_ok());
    assert!(decode_get_quote(StatusCode::OK, &valid_quote()).is_ok());
    let e = decode_get_quote(StatusCode::BAD_REQUEST, br#"{"error":"no"}"#).unwrap_err();
    assert!(
        matches!(e, AgentError::Status { ref message, .. } if message == "no"),
        "{e}"
    );
}

/// TDX / simulated quote parsing (`quote::report_data`, `tdx::TdxQuote::parse`) and the event
/// log that proves a compose hash against RTMR3 (`quote::compose_hash`).
mod quote {
    use super::config;

    use alloy_primitives::{Address, B256};
    use attestmesh_fuzzkit::mutate;
    use attestmesh_tee::devtee::simulated_attestation;
    use attestmesh_tee::quote::{QuoteError, compose_hash, report_data};
    use attestmesh_tee::tdx::TdxError;
    use proptest::prelude::*;

    /// A TDX-shaped quote of `version` (4 or 5) carrying `rd` where the layout puts report_data,
    /// with `sig` bytes of signature data.
    fn tdx_quote(version: u16, rd: &[u8; 64], sig: usize) -> Vec<u8> {
        let body = if version == 5 { 48 + 6 } else { 48 };
        let mut q = vec![0u8; body + 584];
        q[..2].copy_from_slice(&version.to_le_bytes());
        q[4] = 0x81;
        if version == 5 {
            q[48..50].copy_from_slice(&2u16.to_le_bytes());
            q[50..54].copy_from_slice(&584u32.to_le_bytes());
        }
        q[body + 520..body + 584].copy_from_slice(rd);
        q.extend_from_slice(&(sig as u32).to_le_bytes());
        q.extend(std::iter::repeat_n(7u8, sig));
        q
    }

    proptest! {
        #![proptest_config(config())]

        /// `quote::report_data` on the Indexer's attestation bytes: arbitrary input never panics and
        /// fails with a typed error or reads 64 bytes; a well-formed v4/v5 quote gives back exactly
        /// the report_data it carries; truncation is `Truncated`; another version is
        /// `UnsupportedVersion`; a byte flipped inside report_data changes the result (so it is
        /// really read from there); devtee's quotes are refused unless allowed.
        #[test]
        fn fuzz_quote_report_data(
            junk in proptest::collection::vec(any::<u8>(), 0..1200),
            rd in any::<[u8; 64]>(),
            v5 in any::<bool>(),
            sig in 0usize..600,
            cut in any::<usize>(),
            at in 0usize..64,
            mask in 1u8..=255,
            version in any::<u16>(),
            allow in any::<bool>(),
        ) {
            match report_data(&junk, allow) {
                Ok(q) => prop_assert_eq!(q.report_data.len(), 64),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }

            let version_ok = if v5 { 5 } else { 4 };
            let q = tdx_quote(version_ok, &rd, sig);
            let parsed = report_data(&q, false).unwrap();
            prop_assert_eq!(parsed.report_data, rd);
            prop_assert!(!parsed.simulated);

            let need = q.len() - sig - 4;
            let short = &q[..cut % need];
            let r = report_data(short, false);
            if short.is_empty() {
                prop_assert_eq!(r, Err(QuoteError::Tdx(TdxError::Empty)));
            } else {
                prop_assert_eq!(r, Err(QuoteError::Tdx(TdxError::Truncated(short.len()))));
            }

            let mut other = q.clone();
            other[..2].copy_from_slice(&version.to_le_bytes());
            if version != 4 && version != 5 {
                prop_assert_eq!(report_data(&other, false), Err(QuoteError::Tdx(TdxError::UnsupportedVersion(version))));
            }

            let offset = need - 64;
            let mut flipped = q.clone();
            flipped[offset + at] ^= mask;
            prop_assert_ne!(report_data(&flipped, false).unwrap().report_data, rd);

            let (sim, _) = simulated_attestation(Address::repeat_byte(0x1d), B256::repeat_byte(9), rd);
            prop_assert_eq!(report_data(&sim, false), Err(QuoteError::SimulatedRefused));
            let s = report_data(&sim, true).unwrap();
            prop_assert_eq!(s.report_data, rd);
            prop_assert!(s.simulated);
        }

        /// `quote::compose_hash` on the event log an Indexer sends with its quote: mutations of a
        /// real devtee log never panic, and whenever one is accepted it still names the compose
        /// hash the quote's RTMR3 commits to (a changed payload cannot name another one).
        #[test]
        fn fuzz_event_log_compose_hash(
            rd in any::<[u8; 64]>(),
            compose in any::<[u8; 32]>(),
            edits in attestmesh_fuzzkit::edits(),
            junk in ".{0,300}",
        ) {
            let compose = B256::from(compose);
            let (quote, log) = simulated_attestation(Address::repeat_byte(0x1d), compose, rd);
            let r = report_data(&quote, true).unwrap();
            prop_assert_eq!(compose_hash(&r, &log), Ok(compose));
            let bytes = mutate(log.as_bytes(), &edits);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                match compose_hash(&r, text) {
                    Ok(c) => prop_assert_eq!(c, compose),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }
            prop_assert!(compose_hash(&r, &junk).is_err());
        }
    }
}
