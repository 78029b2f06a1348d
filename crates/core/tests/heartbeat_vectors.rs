//! Heartbeat encoding checked against `spec/vectors/heartbeat.json` (generated with PyNaCl and
//! `cast`, not with this crate), plus a property test that the decoder never panics.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use alloy_primitives::{B256, hex};
use attestmesh_core::heartbeat::{self, HEARTBEAT_LEN, HeartbeatFields};
use attestmesh_core::keys::Ed25519Secret;
use proptest::prelude::*;
use serde_json::Value;

fn load() -> Value {
    let path = format!(
        "{}/../../spec/vectors/heartbeat.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn b256(c: &Value, k: &str) -> B256 {
    B256::from_str(c[k].as_str().unwrap()).unwrap()
}

fn u64f(c: &Value, k: &str) -> u64 {
    c[k].as_str().unwrap().parse().unwrap()
}

#[test]
fn heartbeat_vectors() {
    let v = load();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let key = Ed25519Secret::from_seed(b256(c, "ed25519_seed").0);
        assert_eq!(key.public(), b256(c, "ed25519_public"), "{name}");
        let ids: Vec<B256> = c["live_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| B256::from_str(x.as_str().unwrap()).unwrap())
            .collect();
        let digest = heartbeat::view_digest(&ids);
        assert_eq!(digest, b256(c, "view_digest"), "{name}");
        let fields = HeartbeatFields {
            sender: b256(c, "sender"),
            seq: u64f(c, "seq"),
            unix_ms: u64f(c, "unix_ms"),
            view_len: u32::try_from(c["view_len"].as_u64().unwrap()).unwrap(),
            view_digest: digest,
        };
        assert_eq!(fields.signing_digest(), b256(c, "signing_digest"), "{name}");
        let packet = hex::decode(c["packet"].as_str().unwrap()).unwrap();
        assert_eq!(packet.len(), HEARTBEAT_LEN);
        assert_eq!(fields.sign(&key).to_vec(), packet, "{name}: encoding");
        let v = heartbeat::decode_verified(&packet, &key.public()).unwrap();
        assert_eq!(*v.fields(), fields, "{name}: decoding");
    }
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let key = B256::repeat_byte(3);
        let _ = heartbeat::decode(&bytes);
        let _ = heartbeat::decode_verified(&bytes, &key);
    }

    #[test]
    fn decoder_never_panics_on_right_length(mut bytes in proptest::collection::vec(any::<u8>(), HEARTBEAT_LEN), magic in any::<bool>()) {
        if magic {
            bytes[..5].copy_from_slice(b"AMHB\x01");
        }
        let pk = Ed25519Secret::from_seed([5u8; 32]).public();
        let r = heartbeat::decode_verified(&bytes, &pk);
        // Random bytes with a valid header parse but never verify.
        prop_assert!(r.is_err());
    }
}
