//! The push signing layout against spec/vectors/push.json (generated independently with PyNaCl +
//! `cast keccak` by spec/gen-push-vectors.py), and a property test that verification never
//! panics on arbitrary network input.
#![allow(clippy::unwrap_used)]

use alloy_primitives::{Address, B256, hex};
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::push::{PushBody, attestation_report_data, repro_params_json};
use proptest::prelude::*;

fn b(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn vectors_match_byte_for_byte() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../spec/vectors/push.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for c in cases {
        let body = PushBody {
            cluster: Address::from_slice(&b(&c["cluster"])),
            block_number: c["block_number"].as_u64().unwrap(),
            block_hash: B256::from_slice(&b(&c["block_hash"])),
            tx_hash: B256::from_slice(&b(&c["tx_hash"])),
            log_index: c["log_index"].as_u64().unwrap(),
            address: Address::from_slice(&b(&c["address"])),
            topics: c["topics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| B256::from_slice(&b(t)))
                .collect(),
            data: b(&c["data"]),
            repro_method: c["repro_method"].as_str().unwrap().into(),
            repro_params_json: c["repro_params_json"].as_str().unwrap().into(),
        };
        let name = c["name"].as_str().unwrap();
        assert_eq!(
            body.repro_params_json,
            repro_params_json(body.cluster, body.block_hash, &body.topics),
            "{name}"
        );
        assert_eq!(body.layout().unwrap(), b(&c["layout"]), "{name}");
        assert_eq!(
            body.signing_hash().unwrap().to_vec(),
            b(&c["signing_hash"]),
            "{name}"
        );
        let key = Ed25519Secret::from_seed(b(&c["seed"]).try_into().unwrap());
        let pk = key.public();
        assert_eq!(pk.to_vec(), b(&c["pubkey"]), "{name}");
        let sig = body.sign(&key).unwrap();
        assert_eq!(sig.to_vec(), b(&c["signature"]), "{name}");
        body.verify(&pk, &b(&c["signature"])).unwrap();
        assert_eq!(
            attestation_report_data(&pk).to_vec(),
            b(&c["report_data"]),
            "{name}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn verify_never_panics(
        cluster in prop::array::uniform20(any::<u8>()),
        n in any::<u64>(),
        topics in prop::collection::vec(prop::array::uniform32(any::<u8>()), 0..7),
        data in prop::collection::vec(any::<u8>(), 0..300),
        method in ".{0,20}",
        params in ".{0,80}",
        pk in prop::array::uniform32(any::<u8>()),
        sig in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let body = PushBody {
            cluster: Address::from(cluster),
            block_number: n,
            block_hash: B256::from(pk),
            tx_hash: B256::ZERO,
            log_index: n ^ 1,
            address: Address::from(cluster),
            topics: topics.into_iter().map(B256::from).collect(),
            data,
            repro_method: method,
            repro_params_json: params,
        };
        // Random keys/signatures must be rejected with an error, never accepted or a panic.
        prop_assert!(body.verify(&B256::from(pk), &sig).is_err());
    }
}
