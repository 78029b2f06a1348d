//! The sponsor's secp256k1 key: loads it without ever logging it and produces the 65-byte
//! EIP-191 signature `SponsorPaymaster` recovers.

use std::path::Path;

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_core::userop::eth_signed_message_hash;
use k256::ecdsa::SigningKey;
use zeroize::Zeroizing;

/// Why the key could not be loaded or used. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The key file could not be read.
    #[error("cannot read signer key file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is readable or writable by its group or others: the key controls the
    /// paymaster's deposit, so it must be private to the service's user (`chmod 600`).
    #[error(
        "signer key file {path} has mode {mode:04o}: it must not be accessible by group or others (chmod 600 {path})"
    )]
    Permissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not 32 bytes of hex, or not a valid secp256k1 scalar.
    #[error("signer key is not a 32-byte hex secp256k1 private key")]
    Malformed,
    /// ECDSA signing failed (only for a broken key; k256 signing is otherwise infallible).
    #[error("signing failed")]
    Sign,
}

/// The sponsor signer. `Debug` shows only the address; the key zeroizes on drop.
pub struct SponsorSigner {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for SponsorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SponsorSigner")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl SponsorSigner {
    /// From a 32-byte hex string (`0x` optional, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, SignerError> {
        let t = text.trim();
        let body = t.strip_prefix("0x").unwrap_or(t);
        if body.len() != 64 {
            return Err(SignerError::Malformed);
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        for (i, pair) in body.as_bytes().chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| SignerError::Malformed)?;
            raw[i] = u8::from_str_radix(s, 16).map_err(|_| SignerError::Malformed)?;
        }
        let key = SigningKey::from_slice(raw.as_slice()).map_err(|_| SignerError::Malformed)?;
        let point = key.verifying_key().to_encoded_point(false);
        let address = Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..]);
        Ok(Self { key, address })
    }

    /// From a file holding the hex key; refuses a file that group or others can access.
    pub fn from_file(path: &Path) -> Result<Self, SignerError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| SignerError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SignerError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| SignerError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_hex(&text)
    }

    /// The signer's address (what `SponsorPaymaster.signer()` must hold).
    pub fn address(&self) -> Address {
        self.address
    }

    /// EIP-191 personal-sign of `hash`: `r ‖ s ‖ v` with low `s` and `v ∈ {27, 28}`, the form
    /// OpenZeppelin's `ECDSA.tryRecover` accepts.
    pub fn sign_hash(&self, hash: B256) -> Result<[u8; 65], SignerError> {
        let digest = eth_signed_message_hash(hash);
        let (sig, rec) = self
            .key
            .sign_prehash_recoverable(digest.as_slice())
            .map_err(|_| SignerError::Sign)?;
        let (sig, rec) = match sig.normalize_s() {
            Some(low) => (
                low,
                k256::ecdsa::RecoveryId::new(!rec.is_y_odd(), rec.is_x_reduced()),
            ),
            None => (sig, rec),
        };
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + rec.to_byte();
        Ok(out)
    }
}

/// Recovers the EIP-191 signer of `hash` from a 65-byte `r ‖ s ‖ v` signature (`v` 27/28 or 0/1).
pub fn recover(hash: B256, sig: &[u8; 65]) -> Option<Address> {
    let s = k256::ecdsa::Signature::from_slice(&sig[..64]).ok()?;
    let v = match sig[64] {
        27 | 28 => sig[64] - 27,
        0 | 1 => sig[64],
        _ => return None,
    };
    let rec = k256::ecdsa::RecoveryId::from_byte(v)?;
    let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(
        eth_signed_message_hash(hash).as_slice(),
        &s,
        rec,
    )
    .ok()?;
    let point = vk.to_encoded_point(false);
    Some(Address::from_slice(
        &keccak256(&point.as_bytes()[1..])[12..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::str::FromStr;

    #[test]
    fn reproduces_cast_signatures_from_vectors() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../spec/vectors/userop.json"))
                .expect("vectors");
        let signer =
            SponsorSigner::from_hex(doc["signer_key"].as_str().expect("key")).expect("key");
        assert_eq!(
            signer.address(),
            Address::from_str(doc["signer_address"].as_str().expect("addr")).expect("addr")
        );
        for c in doc["cases"].as_array().expect("cases") {
            let h = B256::from_str(c["sponsor_hash"].as_str().expect("hash")).expect("hash");
            let sig = signer.sign_hash(h).expect("sign");
            assert_eq!(
                crate::wire::hex_bytes(&sig),
                c["sponsor_signature"].as_str().expect("sig")
            );
            assert_eq!(recover(h, &sig), Some(signer.address()));
        }
    }

    #[test]
    fn attack_signer_key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sponsor.key");
        std::fs::write(&path, "11".repeat(32)).expect("write");
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let e = SponsorSigner::from_file(&path).expect_err("must refuse");
            let msg = e.to_string();
            assert!(matches!(e, SignerError::Permissions { .. }), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(!msg.contains("1111"), "never the key: {msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(SponsorSigner::from_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(SponsorSigner::from_file(&path).is_ok());
    }

    #[test]
    fn rejects_bad_keys_without_echoing_them() {
        for bad in ["", "0x12", &"zz".repeat(32), &"00".repeat(32)] {
            let e = SponsorSigner::from_hex(bad).expect_err("must fail");
            assert!(!e.to_string().contains("zz"));
        }
        let s = SponsorSigner::from_hex(&format!(" 0x{}\n", "11".repeat(32))).expect("trimmed");
        assert!(!format!("{s:?}").contains("1111"));
    }
}
