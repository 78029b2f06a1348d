//! Fuzz targets of attestmesh-core's decoders (proptest; BRIEF convention: one `fuzz_<decoder>`
//! per decoder, cases from `ATTESTMESH_FUZZ_CASES`, default 256).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_primitives::{Address, B256};
use attestmesh_core::keys::Ed25519Secret;
use attestmesh_core::push::{PushBody, PushError, REPRO_METHOD, repro_params_json};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("ATTESTMESH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn valid_body() -> PushBody {
    let cluster = Address::repeat_byte(0xc1);
    let block_hash = B256::repeat_byte(0xb1);
    let topics = vec![
        B256::repeat_byte(1),
        B256::repeat_byte(2),
        B256::repeat_byte(3),
    ];
    PushBody {
        cluster,
        block_number: 1234,
        block_hash,
        tx_hash: B256::repeat_byte(0x7f),
        log_index: 3,
        address: cluster,
        repro_params_json: repro_params_json(cluster, block_hash, &topics),
        topics,
        data: vec![0xda; 80],
        repro_method: REPRO_METHOD.to_string(),
    }
}

/// Flips `mask` into byte `at` (modulo its length) of field `field` (modulo the field count).
/// Returns false when the chosen field is empty (nothing mutated).
fn mutate(b: &mut PushBody, field: usize, at: usize, mask: u8) -> bool {
    fn flip(bytes: &mut [u8], at: usize, mask: u8) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let i = at % bytes.len();
        bytes[i] ^= mask;
        true
    }
    match field % 10 {
        0 => flip(b.cluster.as_mut_slice(), at, mask),
        1 => {
            b.block_number ^= u64::from(mask) << (8 * (at % 8));
            true
        }
        2 => flip(b.block_hash.as_mut_slice(), at, mask),
        3 => flip(b.tx_hash.as_mut_slice(), at, mask),
        4 => {
            b.log_index ^= u64::from(mask) << (8 * (at % 8));
            true
        }
        5 => flip(b.address.as_mut_slice(), at, mask),
        6 => {
            let n = b.topics.len();
            n > 0 && flip(b.topics[at % n].as_mut_slice(), at / n, mask)
        }
        7 => flip(&mut b.data, at, mask),
        // Strings: replace a char by another ASCII one so the field stays valid UTF-8.
        8 => {
            let i = at % b.repro_method.len();
            let c = (b.repro_method.as_bytes()[i] ^ (mask & 0x1f)) | 0x20;
            let mut v = b.repro_method.clone().into_bytes();
            v[i] = c & 0x7f;
            b.repro_method = String::from_utf8(v).unwrap();
            true
        }
        _ => {
            let i = at % b.repro_params_json.len();
            let mut v = b.repro_params_json.clone().into_bytes();
            v[i] = ((v[i] ^ (mask & 0x1f)) | 0x20) & 0x7f;
            b.repro_params_json = String::from_utf8(v).unwrap();
            true
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// `PushBody::verify` on network input: arbitrary keys, signatures and bodies never panic and
    /// never verify; a signed body with any field or signature byte changed never verifies; the
    /// untouched body always does.
    #[test]
    fn fuzz_verify_push(
        pubkey in any::<[u8; 32]>(),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        topics in proptest::collection::vec(any::<[u8; 32]>(), 0..7),
        data in proptest::collection::vec(any::<u8>(), 0..200),
        field in any::<usize>(),
        at in any::<usize>(),
        mask in 1u8..=255,
        truncate in any::<usize>(),
    ) {
        // Arbitrary input.
        let mut junk = valid_body();
        junk.topics = topics.iter().map(|t| B256::from(*t)).collect();
        junk.data = data;
        let r = junk.verify(&B256::from(pubkey), &sig);
        prop_assert!(r.is_err());
        if junk.topics.len() > 4 {
            prop_assert!(matches!(
                r,
                Err(PushError::TooManyTopics(_) | PushError::SignatureLength(_) | PushError::BadPublicKey)
            ));
        }

        // Mutations of a valid signed push.
        let key = Ed25519Secret::from_seed([9; 32]);
        let body = valid_body();
        let good = body.sign(&key).unwrap();
        prop_assert_eq!(body.verify(&key.public(), &good), Ok(()));
        let mut m = body.clone();
        if mutate(&mut m, field, at, mask) && m != body {
            prop_assert!(m.verify(&key.public(), &good).is_err(), "mutated body verified");
        }
        let mut bad_sig = good.to_vec();
        let n = bad_sig.len();
        bad_sig[at % n] ^= mask;
        prop_assert!(body.verify(&key.public(), &bad_sig).is_err(), "mutated signature verified");
        let cut = &good[..truncate % good.len()];
        prop_assert_eq!(body.verify(&key.public(), cut), Err(PushError::SignatureLength(cut.len())));
    }
}
