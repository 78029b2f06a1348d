//! Fuzz targets (issue 11, BRIEF convention): the keystore parser (Web3 Secret Storage v3). A
//! keystore is a file the operator points the CLI at; whatever it contains must give a typed
//! error or the right key — never a panic, and never an unbounded scrypt/PBKDF2 run or
//! allocation. Valid seeds use a cheap KDF (scrypt n = 2, PBKDF2 c = 2) so cases are fast.
//! `ATTESTMESH_FUZZ_CASES` bounds the run (default 256).

#![allow(clippy::unwrap_used)]

use attestmesh_fuzzkit::{config, edits, mutate};
use attestmesh_ops::keystore::{KeystoreError, decrypt, encrypt};
use k256::ecdsa::SigningKey;
use proptest::prelude::*;
use serde_json::{Value, json};

const PASSWORD: &[u8] = b"fuzz password";

fn key() -> SigningKey {
    SigningKey::from_slice(&[0x4b; 32]).unwrap()
}

/// A real keystore with the cheapest scrypt (n = 2).
fn valid_scrypt() -> String {
    encrypt(&key(), PASSWORD, 1).unwrap()
}

/// The same key as a PBKDF2 keystore (c = 2), built by hand from the spec's formulas.
fn valid_pbkdf2() -> String {
    use aes::cipher::{KeyIvInit, StreamCipher};
    let salt = [7u8; 32];
    let iv = [9u8; 16];
    let mut dk = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(PASSWORD, &salt, 2, &mut dk);
    let mut ct = key().to_bytes().to_vec();
    ctr::Ctr128BE::<aes::Aes128>::new(dk[..16].into(), (&iv).into()).apply_keystream(&mut ct);
    let mut mac = dk[16..].to_vec();
    mac.extend_from_slice(&ct);
    json!({
        "version": 3,
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": alloy_primitives::hex::encode(iv)},
            "ciphertext": alloy_primitives::hex::encode(&ct),
            "kdf": "pbkdf2",
            "kdfparams": {"c": 2, "dklen": 32, "prf": "hmac-sha256", "salt": alloy_primitives::hex::encode(salt)},
            "mac": alloy_primitives::hex::encode(alloy_primitives::keccak256(&mac)),
        }
    })
    .to_string()
}

/// The IV of a keystore document, decoded (`crypto` or `Crypto`, as the parser accepts).
fn iv_of(d: &Value) -> Option<Vec<u8>> {
    let c = d.get("crypto").or_else(|| d.get("Crypto"))?;
    let iv = c.get("cipherparams")?.get("iv")?.as_str()?;
    alloy_primitives::hex::decode(iv.trim_start_matches("0x")).ok()
}

/// Whatever the document, the answer is a typed error or the original key — with one exception
/// the format itself makes: keystore v3's MAC covers the derived key and the ciphertext but not
/// the IV, so a document without an `address` to check against decrypts to another key when
/// its IV is changed. Any other way to get a different key is a parser bug.
fn check(text: &str, seed: Option<&str>) {
    match decrypt(text, PASSWORD) {
        Ok(k) if k.to_bytes() != key().to_bytes() => {
            let d: Value = serde_json::from_str(text).unwrap();
            let seed: Value = serde_json::from_str(seed.unwrap()).unwrap();
            assert!(
                d.get("address").is_none(),
                "another key despite an address: {text}"
            );
            assert_ne!(
                iv_of(&d),
                iv_of(&seed),
                "another key with the same IV: {text}"
            );
        }
        Ok(_)
        | Err(
            KeystoreError::Format(_)
            | KeystoreError::Unsupported { .. }
            | KeystoreError::WrongPassword
            | KeystoreError::BadKey
            | KeystoreError::AddressMismatch { .. },
        ) => {}
    }
}

/// Replaces `crypto.kdfparams.<field>` of a valid document.
fn with_param(doc: &str, field: &str, v: Value) -> String {
    let mut d: Value = serde_json::from_str(doc).unwrap();
    d["crypto"]["kdfparams"][field] = v;
    d.to_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_keystore_decrypt(arbitrary in prop::collection::vec(any::<u8>(), 0..600), e in edits(), pbkdf in any::<bool>()) {
        check(&String::from_utf8_lossy(&arbitrary), None);
        let seed = if pbkdf { valid_pbkdf2() } else { valid_scrypt() };
        check(&String::from_utf8_lossy(&mutate(seed.clone().into_bytes(), &e)), Some(&seed));
    }

    /// KDF parameters straight from an attacker: power-of-two `n`, any `r`, `p`, `c`.
    /// Expensive ones must be refused up front, cheap ones must decrypt or fail cleanly. (`n`
    /// skips 2^11..2^21, which is allowed and merely slow — seconds per case in a debug build.)
    #[test]
    fn fuzz_keystore_kdf_params(log_n in prop_oneof![0u32..11, 22u32..64], r in prop_oneof![0u64..4, any::<u64>()], p in prop_oneof![0u64..4, any::<u64>()], c in prop_oneof![0u64..4, any::<u64>()]) {
        let s = valid_scrypt();
        let s = with_param(&s, "n", json!(1u64 << log_n));
        let s = with_param(&s, "r", json!(r));
        check(&with_param(&s, "p", json!(p)), None);
        check(&with_param(&valid_pbkdf2(), "c", json!(c)), None);
    }
}

/// Found by `fuzz_keystore_decrypt`: the format does not authenticate the IV. A keystore with an
/// `address` catches the changed key (AddressMismatch); one without cannot.
#[test]
fn regression_keystore_changed_iv_is_caught_only_by_the_address() {
    let mut d: Value = serde_json::from_str(&valid_scrypt()).unwrap();
    d["crypto"]["cipherparams"]["iv"] = json!("00".repeat(16));
    assert!(matches!(
        decrypt(&d.to_string(), PASSWORD),
        Err(KeystoreError::AddressMismatch { .. })
    ));
    let mut d: Value = serde_json::from_str(&valid_pbkdf2()).unwrap();
    d["crypto"]["cipherparams"]["iv"] = json!("00".repeat(16));
    let other = decrypt(&d.to_string(), PASSWORD).unwrap();
    assert_ne!(other.to_bytes(), key().to_bytes());
}

#[test]
fn valid_seeds_decrypt() {
    assert_eq!(
        decrypt(&valid_scrypt(), PASSWORD).unwrap().to_bytes(),
        key().to_bytes()
    );
    assert_eq!(
        decrypt(&valid_pbkdf2(), PASSWORD).unwrap().to_bytes(),
        key().to_bytes()
    );
}

/// Found by `fuzz_keystore_kdf_params`: scrypt n = 2^30 with r = 8 asks for 1 TiB (the process
/// aborts on the allocation) — refused with a clear error now.
#[test]
fn regression_keystore_huge_scrypt_n_is_refused() {
    let doc = with_param(&valid_scrypt(), "n", json!(1u64 << 30));
    assert!(matches!(
        decrypt(&doc, PASSWORD),
        Err(KeystoreError::Unsupported { .. })
    ));
}

/// Found by `fuzz_keystore_kdf_params`: PBKDF2 c = 2^32 - 1 runs for hours — refused now.
#[test]
fn regression_keystore_huge_pbkdf2_c_is_refused() {
    let doc = with_param(&valid_pbkdf2(), "c", json!(u64::from(u32::MAX)));
    assert!(matches!(
        decrypt(&doc, PASSWORD),
        Err(KeystoreError::Unsupported { .. })
    ));
}

/// Found by `fuzz_keystore_kdf_params`: a huge scrypt `p` multiplies the work without bound.
#[test]
fn regression_keystore_huge_scrypt_p_is_refused() {
    let doc = with_param(&valid_scrypt(), "p", json!(1u64 << 20));
    assert!(matches!(
        decrypt(&doc, PASSWORD),
        Err(KeystoreError::Unsupported { .. })
    ));
}
