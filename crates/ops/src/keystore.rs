//! Web3 Secret Storage (keystore v3) — the encrypted key file geth, Foundry's `cast wallet` and
//! most wallets write — so an operator's key never has to sit on disk in the clear.
//!
//! KDF `scrypt` or `pbkdf2` (hmac-sha256), cipher `aes-128-ctr`, MAC
//! `keccak256(derived[16..32] ‖ ciphertext)`. Decryption checks the MAC before touching the
//! ciphertext, so a wrong password is reported as such, never as a garbage key.

use aes::cipher::{KeyIvInit, StreamCipher};
use alloy_primitives::{Address, hex, keccak256};
use k256::ecdsa::SigningKey;
use serde_json::{Value, json};
use zeroize::Zeroizing;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Why a keystore could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    #[error("not a keystore v3 JSON file: {0}")]
    Format(String),
    #[error("unsupported {what} {value:?}")]
    Unsupported { what: &'static str, value: String },
    #[error("wrong password (MAC mismatch)")]
    WrongPassword,
    #[error("decrypted key is not a valid secp256k1 private key")]
    BadKey,
    #[error("decrypted key belongs to {derived}, but the file says {recorded}")]
    AddressMismatch { derived: Address, recorded: Address },
}

fn str_field<'a>(v: &'a Value, path: &str) -> Result<&'a str, KeystoreError> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur
            .get(part)
            .ok_or_else(|| KeystoreError::Format(format!("missing {path}")))?;
    }
    cur.as_str()
        .ok_or_else(|| KeystoreError::Format(format!("{path} is not a string")))
}

fn hex_field(v: &Value, path: &str) -> Result<Vec<u8>, KeystoreError> {
    hex::decode(str_field(v, path)?.trim_start_matches("0x"))
        .map_err(|_| KeystoreError::Format(format!("{path} is not hex")))
}

fn u64_field(v: &Value, path: &str) -> Result<u64, KeystoreError> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur
            .get(part)
            .ok_or_else(|| KeystoreError::Format(format!("missing {path}")))?;
    }
    cur.as_u64()
        .ok_or_else(|| KeystoreError::Format(format!("{path} is not an integer")))
}

/// Largest scrypt working memory (`128 · r · n` bytes) a keystore may ask for: geth's standard
/// parameters (n = 2^18, r = 8) need exactly this much. A file is input: without a bound, a
/// crafted `n` makes the process abort on the allocation.
pub const MAX_SCRYPT_MEMORY: u64 = 256 << 20;
/// Largest scrypt parallelism `p` (work grows linearly with it; wallets use 1, light mode 6).
pub const MAX_SCRYPT_P: u64 = 16;
/// Largest PBKDF2 iteration count (wallets use 262,144; more than this would run for minutes).
pub const MAX_PBKDF2_ROUNDS: u64 = 10_000_000;

fn derive_key(crypto: &Value, password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    let kdf = str_field(crypto, "kdf")?;
    let salt = hex_field(crypto, "kdfparams.salt")?;
    let dklen = u64_field(crypto, "kdfparams.dklen")?;
    if dklen != 32 {
        return Err(KeystoreError::Unsupported {
            what: "kdfparams.dklen",
            value: dklen.to_string(),
        });
    }
    let mut dk = Zeroizing::new(vec![0u8; 32]);
    match kdf {
        "scrypt" => {
            let n = u64_field(crypto, "kdfparams.n")?;
            let r = u64_field(crypto, "kdfparams.r")?;
            let p = u64_field(crypto, "kdfparams.p")?;
            if !n.is_power_of_two() || n < 2 {
                return Err(KeystoreError::Unsupported {
                    what: "kdfparams.n",
                    value: n.to_string(),
                });
            }
            let bad = |what: &'static str, v: u64| KeystoreError::Unsupported {
                what,
                value: v.to_string(),
            };
            // Refuse work beyond what any wallet writes before scrypt allocates or loops.
            let memory = u128::from(r)
                .saturating_mul(u128::from(n))
                .saturating_mul(128);
            if memory > u128::from(MAX_SCRYPT_MEMORY) {
                return Err(bad("scrypt memory (128 * r * n)", n.saturating_mul(r)));
            }
            if p > MAX_SCRYPT_P {
                return Err(bad("kdfparams.p", p));
            }
            let params = scrypt::Params::new(
                n.trailing_zeros() as u8,
                u32::try_from(r).map_err(|_| bad("kdfparams.r", r))?,
                u32::try_from(p).map_err(|_| bad("kdfparams.p", p))?,
                32,
            )
            .map_err(|_| bad("scrypt parameters (n)", n))?;
            scrypt::scrypt(password, &salt, &params, &mut dk)
                .map_err(|_| KeystoreError::Format("scrypt output length".into()))?;
        }
        "pbkdf2" => {
            let prf = str_field(crypto, "kdfparams.prf")?;
            if prf != "hmac-sha256" {
                return Err(KeystoreError::Unsupported {
                    what: "kdfparams.prf",
                    value: prf.into(),
                });
            }
            let c = u64_field(crypto, "kdfparams.c")?;
            if c > MAX_PBKDF2_ROUNDS {
                return Err(KeystoreError::Unsupported {
                    what: "kdfparams.c",
                    value: c.to_string(),
                });
            }
            let c = u32::try_from(c).map_err(|_| KeystoreError::Unsupported {
                what: "kdfparams.c",
                value: c.to_string(),
            })?;
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, &salt, c, &mut dk);
        }
        other => {
            return Err(KeystoreError::Unsupported {
                what: "kdf",
                value: other.into(),
            });
        }
    }
    Ok(dk)
}

/// Decrypts a keystore v3 document with `password`.
pub fn decrypt(json_text: &str, password: &[u8]) -> Result<SigningKey, KeystoreError> {
    let doc: Value =
        serde_json::from_str(json_text).map_err(|e| KeystoreError::Format(e.to_string()))?;
    if doc.get("version").and_then(Value::as_u64) != Some(3) {
        return Err(KeystoreError::Format("version is not 3".into()));
    }
    // geth writes "crypto", some older tools "Crypto".
    let crypto = doc
        .get("crypto")
        .or_else(|| doc.get("Crypto"))
        .ok_or_else(|| KeystoreError::Format("missing crypto".into()))?;
    let cipher = str_field(crypto, "cipher")?;
    if cipher != "aes-128-ctr" {
        return Err(KeystoreError::Unsupported {
            what: "cipher",
            value: cipher.into(),
        });
    }
    let iv = hex_field(crypto, "cipherparams.iv")?;
    let ciphertext = hex_field(crypto, "ciphertext")?;
    let mac = hex_field(crypto, "mac")?;
    if iv.len() != 16 {
        return Err(KeystoreError::Format(
            "cipherparams.iv is not 16 bytes".into(),
        ));
    }
    let dk = derive_key(crypto, password)?;
    let mut mac_input = dk[16..32].to_vec();
    mac_input.extend_from_slice(&ciphertext);
    if keccak256(&mac_input).as_slice() != mac.as_slice() {
        return Err(KeystoreError::WrongPassword);
    }
    let mut plain = Zeroizing::new(ciphertext);
    let mut cipher = Aes128Ctr::new(dk[..16].into(), iv.as_slice().into());
    cipher.apply_keystream(&mut plain);
    let key = SigningKey::from_slice(&plain).map_err(|_| KeystoreError::BadKey)?;
    if let Some(recorded) = doc.get("address").and_then(Value::as_str) {
        let derived = attestmesh_core::secp::address_of(key.verifying_key());
        if let Ok(recorded) = recorded
            .strip_prefix("0x")
            .unwrap_or(recorded)
            .parse::<Address>()
            && recorded != derived
        {
            return Err(KeystoreError::AddressMismatch { derived, recorded });
        }
    }
    Ok(key)
}

/// Encrypts `key` as a keystore v3 document with scrypt(`2^log_n`, r=8, p=1). Wallets use
/// log_n = 18; tests use small values.
pub fn encrypt(key: &SigningKey, password: &[u8], log_n: u8) -> Result<String, KeystoreError> {
    use rand_core::{OsRng, RngCore};
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut iv);
    let params = scrypt::Params::new(log_n, 8, 1, 32).map_err(|_| KeystoreError::Unsupported {
        what: "log_n",
        value: log_n.to_string(),
    })?;
    let mut dk = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, &salt, &params, dk.as_mut_slice())
        .map_err(|_| KeystoreError::Format("scrypt output length".into()))?;
    let mut ciphertext = key.to_bytes().to_vec();
    let mut cipher = Aes128Ctr::new(dk[..16].into(), (&iv).into());
    cipher.apply_keystream(&mut ciphertext);
    let mut mac_input = dk[16..32].to_vec();
    mac_input.extend_from_slice(&ciphertext);
    let address = attestmesh_core::secp::address_of(key.verifying_key());
    Ok(json!({
        "version": 3,
        "id": hex::encode(&salt[..16]),
        "address": hex::encode(address),
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": hex::encode(iv)},
            "ciphertext": hex::encode(&ciphertext),
            "kdf": "scrypt",
            "kdfparams": {"dklen": 32, "n": 1u64 << log_n, "r": 8, "p": 1, "salt": hex::encode(salt)},
            "mac": hex::encode(keccak256(&mac_input)),
        }
    })
    .to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The PBKDF2 test vector of the Web3 Secret Storage definition (password "testpassword").
    const PBKDF2_VECTOR: &str = r#"{
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": "6087dab2f9fdbbfaddc31a909735c1e6"},
            "ciphertext": "5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46",
            "kdf": "pbkdf2",
            "kdfparams": {"c": 262144, "dklen": 32, "prf": "hmac-sha256",
                          "salt": "ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
            "mac": "517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"
        },
        "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        "version": 3
    }"#;

    #[test]
    fn pbkdf2_spec_vector() {
        let key = decrypt(PBKDF2_VECTOR, b"testpassword").unwrap();
        assert_eq!(
            hex::encode(key.to_bytes()),
            "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
        );
        assert_eq!(
            decrypt(PBKDF2_VECTOR, b"wrong").unwrap_err(),
            KeystoreError::WrongPassword
        );
    }

    #[test]
    fn scrypt_round_trip() {
        let key = SigningKey::from_slice(&[9; 32]).unwrap();
        let doc = encrypt(&key, b"pw", 4).unwrap();
        assert_eq!(decrypt(&doc, b"pw").unwrap().to_bytes(), key.to_bytes());
        assert_eq!(
            decrypt(&doc, b"px").unwrap_err(),
            KeystoreError::WrongPassword
        );
        assert!(matches!(
            decrypt("{}", b"pw"),
            Err(KeystoreError::Format(_))
        ));
    }
}
