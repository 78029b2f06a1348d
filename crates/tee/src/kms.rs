//! The dstack KMS formulas (DESIGN §4.2), used by devtee to issue keys and by the dstack provider
//! and tests to check what an agent returned. Pure functions.
//!
//! - app key = HKDF-SHA256(salt "RATLS", ikm = KMS root secret, info = app_id(20) ‖ "app-key")
//! - kms_sig = recoverable secp256k1 signature over
//!   keccak256("dstack-kms-issued:" ‖ app_id(20) ‖ appPubkeyCompressed(33))
//! - path key = HKDF-SHA256(salt "RATLS", ikm = app secret, info = path)
//! - app_sig = recoverable signature by the app key over
//!   keccak256(purpose ‖ ":" ‖ lowercaseHex(derivedPubkeyCompressed))
//!
//! Signatures are `r ‖ s ‖ v` with v ∈ {0, 1}, like real dstack.

use alloy_primitives::{Address, B256, keccak256};
use attestmesh_core::keys::{KeyError, sign_prehash_raw};
use attestmesh_core::secp;
use k256::ecdsa::SigningKey;
use zeroize::Zeroizing;

/// HKDF salt used by dstack for every derivation.
pub const HKDF_SALT: &[u8] = b"RATLS";
/// Domain prefix of the KMS signature over an app key.
pub const KMS_ISSUED_PREFIX: &[u8] = b"dstack-kms-issued:";

/// The fixed, published development KMS root secret:
/// `keccak256("attestmesh.devtee.kms-root.dev-only.v1")`. DEV ONLY: anyone can sign with it, so
/// a production cluster must never allowlist [`DEV_KMS_ROOT_ADDRESS`].
pub const DEV_KMS_ROOT_KEY: [u8; 32] =
    alloy_primitives::hex!("cdac1893a779ebca9bb9f9bf41d58f47e24e20ba35b94de14e4f07d6c37e6a12");

/// Address of [`DEV_KMS_ROOT_KEY`]; the devnet allowlists it, `cluster deploy` warns about it.
pub const DEV_KMS_ROOT_ADDRESS: Address =
    alloy_primitives::address!("0x8dcc69c42901Cd56D15118254Cd0Ea33b240F8cb");

/// 32 bytes of HKDF-SHA256 output.
pub fn hkdf32(ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(HKDF_SALT), ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    if hk.expand_multi_info(info, out.as_mut()).is_err() {
        unreachable!("HKDF-SHA256 expand of 32 bytes");
    }
    out
}

/// A secp256k1 signing key from 32 bytes (fails with probability ~2^-128).
pub fn signing_key(secret: &[u8; 32]) -> Result<SigningKey, KeyError> {
    SigningKey::from_bytes(secret.into()).map_err(|_| KeyError::InvalidSecp256k1Scalar)
}

/// The app key a KMS root issues to `app_id`.
pub fn app_key(root_secret: &[u8; 32], app_id: Address) -> Result<SigningKey, KeyError> {
    let secret = hkdf32(root_secret, &[app_id.as_slice(), b"app-key"]);
    signing_key(&secret)
}

/// The per-path secret derived from an app key; dstack returns it as the `key` of `/GetKey`.
pub fn path_secret(app: &SigningKey, path: &str) -> Zeroizing<[u8; 32]> {
    let app_secret = Zeroizing::new(app.to_bytes());
    hkdf32(app_secret.as_slice(), &[path.as_bytes()])
}

/// `keccak256("dstack-kms-issued:" ‖ app_id ‖ app_pubkey_compressed)`.
pub fn kms_issued_hash(app_id: Address, app_pubkey: &[u8; 33]) -> B256 {
    let mut buf = Vec::with_capacity(KMS_ISSUED_PREFIX.len() + 20 + 33);
    buf.extend_from_slice(KMS_ISSUED_PREFIX);
    buf.extend_from_slice(app_id.as_slice());
    buf.extend_from_slice(app_pubkey);
    keccak256(buf)
}

/// `keccak256(purpose ‖ ":" ‖ lowercaseHex(pubkey))`; the pubkey is compressed SEC1 for
/// secp256k1 keys, the 32 raw bytes for ed25519 ones.
pub fn app_sig_hash(purpose: &str, derived_pubkey: &[u8]) -> B256 {
    let msg = format!(
        "{purpose}:{}",
        alloy_primitives::hex::encode(derived_pubkey)
    );
    keccak256(msg.as_bytes())
}

/// The KMS root's signature over an app key, v ∈ {0,1}.
pub fn kms_sig(
    root: &SigningKey,
    app_id: Address,
    app_pubkey: &[u8; 33],
) -> Result<[u8; 65], KeyError> {
    sign_prehash_raw(root, &kms_issued_hash(app_id, app_pubkey), 0)
}

/// The app key's signature over a derived key, v ∈ {0,1}.
pub fn app_sig(
    app: &SigningKey,
    purpose: &str,
    derived_pubkey: &[u8],
) -> Result<[u8; 65], KeyError> {
    sign_prehash_raw(app, &app_sig_hash(purpose, derived_pubkey), 0)
}

/// What a `/GetKey` answer carries, before hex.
pub struct IssuedKey {
    pub secret: Zeroizing<[u8; 32]>,
    pub app_sig: [u8; 65],
    pub kms_sig: [u8; 65],
}

/// Everything a KMS root + app id produce for one `GetKey(path, purpose)`.
pub fn issue(
    root_secret: &[u8; 32],
    app_id: Address,
    path: &str,
    purpose: &str,
) -> Result<IssuedKey, KeyError> {
    let root = signing_key(root_secret)?;
    let app = app_key(root_secret, app_id)?;
    let app_pub = secp::compress(app.verifying_key());
    let secret = path_secret(&app, path);
    let derived = signing_key(&secret)?;
    let derived_pub = secp::compress(derived.verifying_key());
    Ok(IssuedKey {
        app_sig: app_sig(&app, purpose, &derived_pub)?,
        kms_sig: kms_sig(&root, app_id, &app_pub)?,
        secret,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dev_root_address_matches_key() {
        let k = signing_key(&DEV_KMS_ROOT_KEY).unwrap();
        assert_eq!(secp::address_of(k.verifying_key()), DEV_KMS_ROOT_ADDRESS);
        assert_eq!(
            B256::from(DEV_KMS_ROOT_KEY),
            keccak256(b"attestmesh.devtee.kms-root.dev-only.v1")
        );
    }

    #[test]
    fn chain_verifies_like_the_contract() {
        let app_id = Address::repeat_byte(0xa1);
        let issued = issue(&DEV_KMS_ROOT_KEY, app_id, "attestmesh/owner/v1", "ethereum").unwrap();
        assert!(issued.app_sig[64] <= 1 && issued.kms_sig[64] <= 1);
        let derived = signing_key(&issued.secret).unwrap();
        let derived_pub = secp::compress(derived.verifying_key());
        let app_pub = secp::compress(
            &secp::recover(&app_sig_hash("ethereum", &derived_pub), &issued.app_sig).unwrap(),
        );
        let root =
            secp::recover_address(&kms_issued_hash(app_id, &app_pub), &issued.kms_sig).unwrap();
        assert_eq!(root, DEV_KMS_ROOT_ADDRESS);
    }

    #[test]
    fn paths_and_apps_separate_keys() {
        let a = Address::repeat_byte(1);
        let b = Address::repeat_byte(2);
        let k1 = issue(&DEV_KMS_ROOT_KEY, a, "p1", "").unwrap();
        let k2 = issue(&DEV_KMS_ROOT_KEY, a, "p2", "").unwrap();
        let k3 = issue(&DEV_KMS_ROOT_KEY, b, "p1", "").unwrap();
        let k1b = issue(&DEV_KMS_ROOT_KEY, a, "p1", "other purpose").unwrap();
        assert_ne!(*k1.secret, *k2.secret);
        assert_ne!(*k1.secret, *k3.secret);
        // Purpose changes only the signature, never the key.
        assert_eq!(*k1.secret, *k1b.secret);
        assert_ne!(k1.app_sig, k1b.app_sig);
    }

    #[test]
    fn hkdf_matches_rfc5869_shape() {
        // Independent check of the HKDF wiring: RFC 5869 A.1 uses salt 000102..0c, so instead
        // compare against a direct HMAC computation of extract+expand with salt "RATLS".
        use hkdf::hmac::{Hmac, Mac};
        let ikm = [7u8; 32];
        let mut ext = <Hmac<sha2::Sha256> as Mac>::new_from_slice(HKDF_SALT).unwrap();
        ext.update(&ikm);
        let prk = ext.finalize().into_bytes();
        let mut exp = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&prk).unwrap();
        exp.update(b"some/path");
        exp.update(&[1u8]);
        let okm = exp.finalize().into_bytes();
        assert_eq!(hkdf32(&ikm, &[b"some/path"]).as_slice(), okm.as_slice());
    }
}
