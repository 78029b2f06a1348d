//! Application keys derived from the Cluster Shared Key (DESIGN §8).
//!
//! **The pattern apps should use:** never use the CSK directly. Derive one key per purpose with
//! HKDF-SHA256, a salt naming your application and version, and an `info` naming the purpose:
//!
//! ```text
//! app_key = HKDF-SHA256(salt = "attestmesh.example.v1", ikm = CSK, info = "app-key")  // 32 bytes
//! ```
//!
//! Why: the CSK is shared by every application in the cluster and may be used by the agent or
//! other apps for their own purposes. A per-app, per-purpose derivation means a key leaked or
//! misused in one place (a MAC key in a log, an encryption key used with a broken mode) says
//! nothing about the CSK or about any other derived key, and two apps can never accidentally use
//! the same key for different things. Changing the salt's version rotates every derived key
//! without touching the CSK. Every member holds the same CSK, so every member derives the same
//! key with no further coordination.

use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::AppError;

/// The HKDF salt: this application and the version of its key schedule.
pub const APP_KEY_SALT: &[u8] = b"attestmesh.example.v1";
/// The HKDF `info` of the example's one key; use a different `info` for every other purpose.
pub const APP_KEY_INFO: &[u8] = b"app-key";
/// Label of the key fingerprint (a MAC of a fixed string, so it reveals nothing about the key).
const KEY_ID_LABEL: &[u8] = b"attestmesh.example.v1 key-id";

/// A 32-byte application key. Zeroized on drop and never printed: `Debug` and
/// [`AppKey::fingerprint`] show only a one-way fingerprint, which is enough to check that two
/// nodes hold the same key.
#[derive(Clone)]
pub struct AppKey(Zeroizing<[u8; 32]>);

impl AppKey {
    /// `HKDF-SHA256(salt = APP_KEY_SALT, ikm = csk, info)`.
    pub fn derive(csk: &[u8], info: &[u8]) -> Result<Self, AppError> {
        if csk.len() != 32 {
            return Err(AppError::BadAgentData(format!(
                "cluster shared key is {} bytes, expected 32",
                csk.len()
            )));
        }
        let hk = Hkdf::<Sha256>::new(Some(APP_KEY_SALT), csk);
        let mut okm = Zeroizing::new([0u8; 32]);
        hk.expand(info, okm.as_mut())
            .map_err(|e| AppError::BadAgentData(format!("HKDF expand: {e}")))?;
        Ok(AppKey(okm))
    }

    /// The raw key, for feeding a MAC or AEAD. Keep it in memory only.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A MAC keyed with this key, for the echo challenge.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        match <Hmac<Sha256> as hmac::Mac>::new_from_slice(self.as_bytes()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC-SHA256 takes any key length"),
        }
    }

    /// `HMAC-SHA256(key, "attestmesh.example.v1 key-id")[..8]` as hex: equal on two nodes iff
    /// they derived the same key, and useless to an attacker.
    pub fn fingerprint(&self) -> String {
        let mut m = self.mac();
        m.update(KEY_ID_LABEL);
        let mut tag = m.finalize().into_bytes();
        let fp = hex::encode(&tag[..8]);
        tag.as_mut_slice().zeroize();
        fp
    }
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppKey(fingerprint {})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_rfc5869_hkdf_sha256_with_the_documented_inputs() {
        // Independent computation: HKDF-Extract then one Expand block (T(1)), with plain HMAC.
        let csk = [0x42u8; 32];
        let mut ext = <Hmac<Sha256> as hmac::Mac>::new_from_slice(APP_KEY_SALT)
            .unwrap_or_else(|_| unreachable!());
        ext.update(&csk);
        let prk = ext.finalize().into_bytes();
        let mut exp =
            <Hmac<Sha256> as hmac::Mac>::new_from_slice(&prk).unwrap_or_else(|_| unreachable!());
        exp.update(APP_KEY_INFO);
        exp.update(&[1]);
        let t1 = exp.finalize().into_bytes();

        let k = AppKey::derive(&csk, APP_KEY_INFO).map_err(|e| e.to_string());
        assert_eq!(k.map(|k| k.as_bytes().to_vec()), Ok(t1.to_vec()));
    }

    #[test]
    fn keys_differ_by_csk_and_purpose_and_never_equal_the_csk() {
        let csk = [1u8; 32];
        let a = AppKey::derive(&csk, APP_KEY_INFO).map_err(|e| e.to_string());
        let b = AppKey::derive(&csk, b"other-purpose").map_err(|e| e.to_string());
        let c = AppKey::derive(&[2u8; 32], APP_KEY_INFO).map_err(|e| e.to_string());
        let (Ok(a), Ok(b), Ok(c)) = (a, b, c) else {
            panic!("derivation failed")
        };
        assert_ne!(a.as_bytes(), &csk);
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        assert!(!format!("{a:?}").contains(&hex::encode(a.as_bytes())));
        assert!(matches!(
            AppKey::derive(&[0; 31], APP_KEY_INFO),
            Err(AppError::BadAgentData(_))
        ));
    }
}
