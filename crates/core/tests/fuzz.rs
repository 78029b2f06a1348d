//! Fuzz targets for every decoder in `attestmesh-core` that takes bytes from the network, the
//! chain or the state directory (issue 11, "Fuzzing"). proptest on the stable toolchain: each
//! target feeds arbitrary bytes and mutations (bit flips, inserted, removed and truncated bytes)
//! of a real, well-formed input, asserts no panic, and asserts the target's property: a round
//! trip where there is one, "a mutated input never verifies / opens / hits" otherwise.
//!
//! `ATTESTMESH_FUZZ_CASES` sets the case count per target (default 256) so CI bounds the time.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::Ipv4Addr;

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_core::csk::{self, CacheContext, CacheOutcome};
use attestmesh_core::heartbeat::{self, HEARTBEAT_LEN, HeartbeatFields};
use attestmesh_core::keys::{Ed25519Secret, SymmetricKey, X25519Secret};
use attestmesh_core::liveness::{Config, Liveness, MemberInfo};
use attestmesh_core::message::{self, Envelope};
use attestmesh_core::sealed::{self, SEAL_OVERHEAD};
use attestmesh_fuzzkit::{config, edits, mutate};
use proptest::prelude::*;

fn arbitrary_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn recipient() -> X25519Secret {
    X25519Secret::from_seed([0x5e; 32])
}

fn envelope() -> Envelope {
    Envelope {
        cluster: Address::repeat_byte(0xc1),
        sender: keccak256("fuzz sender"),
        recipient: keccak256("fuzz recipient"),
        envelope_id: keccak256("fuzz envelope"),
    }
}

// ---- sealed::open ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_sealed_open(
        junk in arbitrary_bytes(300),
        msg in arbitrary_bytes(200),
        esk in any::<[u8; 32]>(),
        edits in edits(),
    ) {
        let r = recipient();
        let _ = sealed::open(&r, &junk);
        let Ok(valid) = sealed::seal_with_ephemeral(&r.public(), &msg, &esk) else {
            return Ok(()); // a low-order ephemeral cannot happen for a clamped scalar; no box
        };
        prop_assert_eq!(valid.len(), msg.len() + SEAL_OVERHEAD);
        prop_assert_eq!(sealed::open(&r, &valid).unwrap(), msg);
        let bad = mutate(&valid, &edits);
        if bad != valid {
            prop_assert!(sealed::open(&r, &bad).is_err(), "a mutated box opened");
        }
    }
}

// ---- message plaintext decoder and the bound open ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_message_decode(
        junk in arbitrary_bytes(300),
        payload in arbitrary_bytes(100),
        edits in edits(),
    ) {
        // Whatever parses re-encodes to exactly the same bytes: one encoding per message.
        for input in [junk, mutate(message::encode(&envelope(), &payload), &edits)] {
            if let Ok((env, p)) = message::decode(&input) {
                let again = message::encode(&env, p);
                prop_assert_eq!(again.as_slice(), input.as_slice());
            }
        }
        let valid = message::encode(&envelope(), &payload);
        prop_assert_eq!(message::decode(&valid).unwrap(), (envelope(), payload.as_slice()));
    }

    #[test]
    fn fuzz_message_open(
        junk in arbitrary_bytes(400),
        payload in arbitrary_bytes(100),
        esk in any::<[u8; 32]>(),
        edits in edits(),
        header_edits in edits(),
    ) {
        let r = recipient();
        let env = envelope();
        let _ = message::open(&r, &env, &junk);
        let valid = message::seal_with_ephemeral(&r.public(), &env, &payload, &esk).unwrap();
        prop_assert_eq!(message::open(&r, &env, &valid).unwrap(), payload.clone());
        // A mutated ciphertext never opens.
        let bad = mutate(&valid, &edits);
        if bad != valid {
            prop_assert!(message::open(&r, &env, &bad).is_err());
        }
        // A well-sealed box whose plaintext header was altered is never delivered for `env`,
        // unless the edits only touched the payload (then it is a different, genuine message).
        let plain = message::encode(&env, &payload);
        let altered = mutate(&plain, &header_edits);
        let resealed = sealed::seal_with_ephemeral(&r.public(), &altered, &esk).unwrap();
        match message::open(&r, &env, &resealed) {
            Ok(p) => {
                prop_assert_eq!(&altered[..message::HEADER_LEN], &plain[..message::HEADER_LEN]);
                prop_assert_eq!(p.as_slice(), &altered[message::HEADER_LEN..]);
            }
            Err(e) => prop_assert!(e.is_misbound(), "{e:?}"),
        }
    }
}

// ---- csk::open_cache ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_csk_open_cache(
        junk in arbitrary_bytes(200),
        csk_bytes in any::<[u8; 32]>(),
        nonce in any::<[u8; 24]>(),
        edits in edits(),
    ) {
        let state_key = SymmetricKey::from_bytes([0x57; 32]);
        let ctx = CacheContext { cluster: Address::repeat_byte(0xc1), member_id: keccak256("me") };
        let csk = SymmetricKey::from_bytes(csk_bytes);
        let commitment = csk.commitment();
        let _ = csk::open_cache(&state_key, &ctx, Some(&commitment), &junk);
        let _ = csk::open_cache(&state_key, &ctx, None, &junk);
        let valid = csk::seal_cache(&state_key, &ctx, &csk, &nonce).unwrap();
        match csk::open_cache(&state_key, &ctx, Some(&commitment), &valid).unwrap() {
            CacheOutcome::Hit(k) => prop_assert_eq!(k.as_bytes(), csk.as_bytes()),
            CacheOutcome::Ignored(m) => prop_assert!(false, "valid cache ignored: {m:?}"),
        }
        let bad = mutate(&valid, &edits);
        if bad != valid {
            let r = csk::open_cache(&state_key, &ctx, Some(&commitment), &bad);
            prop_assert!(!matches!(r, Ok(CacheOutcome::Hit(_))), "a mutated cache was trusted");
        }
    }
}

// ---- heartbeat decoding and verification ----

fn sender() -> (B256, Ed25519Secret, MemberInfo) {
    let key = Ed25519Secret::from_seed([0x4b; 32]);
    let info = MemberInfo {
        ed_pub: key.public(),
        mesh_ip: Ipv4Addr::new(10, 0, 0, 7),
    };
    (keccak256("fuzz heartbeat sender"), key, info)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_heartbeat_decode_verify(
        junk in arbitrary_bytes(400),
        right_len in proptest::collection::vec(any::<u8>(), HEARTBEAT_LEN),
        seq_lead in 0u64..=heartbeat::MAX_SEQ_LEAD_MS,
        view_len in any::<u32>(),
        view_digest in any::<[u8; 32]>(),
        edits in edits(),
    ) {
        let (id, key, info) = sender();
        let now = 1_700_000_000_000u64;
        for input in [&junk, &right_len] {
            if let Ok(hb) = heartbeat::decode(input) {
                prop_assert!(hb.verify(&info.ed_pub).is_err(), "random bytes verified");
            }
        }
        let fields = HeartbeatFields {
            sender: id,
            seq: now + seq_lead,
            unix_ms: now,
            view_len,
            view_digest: B256::from(view_digest),
        };
        let valid = fields.sign(&key);
        let decoded = heartbeat::decode_verified(&valid, &info.ed_pub).unwrap();
        prop_assert_eq!(*decoded.fields(), fields);

        let bad = mutate(valid, &edits);
        prop_assume!(bad != valid);
        prop_assert!(
            heartbeat::decode_verified(&bad, &info.ed_pub).is_err(),
            "a mutated heartbeat verified"
        );
        // Nor is it accepted by a receiver that holds the sender's on-chain key.
        let rx_key = Ed25519Secret::from_seed([0x4c; 32]);
        let rx_id = keccak256("fuzz receiver");
        let mut rx = Liveness::new(rx_id, rx_key.clone(), Config::default());
        let members: HashMap<B256, MemberInfo> = [
            (id, info),
            (rx_id, MemberInfo { ed_pub: rx_key.public(), mesh_ip: Ipv4Addr::new(10, 0, 0, 8) }),
        ]
        .into();
        rx.set_members(&members);
        prop_assert!(rx.on_heartbeat(now, info.mesh_ip, &bad).is_err());
        prop_assert!(!rx.is_live(&id));
        // The genuine packet is accepted (the seq rule holds for any lead within the bound).
        prop_assert!(rx.on_heartbeat(now, info.mesh_ip, &valid).is_ok());
    }
}

/// Indexer push verification (`push::PushBody::verify`).
mod push {
    use super::config;

    use alloy_primitives::{Address, B256};
    use attestmesh_core::keys::Ed25519Secret;
    use attestmesh_core::push::{PushBody, PushError, REPRO_METHOD, repro_params_json};
    use proptest::prelude::*;

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
}
