//! Standard Webhooks verification (the scheme hosted paymasters use for sponsorship-policy
//! webhooks): `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature` headers; the
//! signature list is space-separated `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`;
//! the secret is `whsec_<base64 key>`; timestamps more than five minutes off are refused so a
//! captured delivery cannot be replayed later.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Allowed distance between the sender's timestamp and our clock.
pub const TOLERANCE_SECS: u64 = 5 * 60;

/// Why a delivery was refused (all map to HTTP 401) or the secret could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A required header is absent or not text.
    #[error("missing or unreadable header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("webhook-timestamp is not a unix timestamp")]
    BadTimestamp,
    /// The timestamp is outside the tolerance window.
    #[error("webhook-timestamp outside the ±{TOLERANCE_SECS}s window")]
    StaleTimestamp,
    /// No `v1` signature matched.
    #[error("no valid v1 signature")]
    BadSignature,
    /// The configured secret is not `whsec_<base64>` (startup error, never a 401).
    #[error("webhook secret must be whsec_<base64>")]
    BadSecret,
}

/// The decoded webhook key; zeroized on drop, never printed.
pub struct WebhookSecret {
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional, as some dashboards strip it).
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let t = text.trim();
        let b64 = t.strip_prefix("whsec_").unwrap_or(t);
        let key = STANDARD.decode(b64).map_err(|_| WebhookError::BadSecret)?;
        if key.is_empty() {
            return Err(WebhookError::BadSecret);
        }
        Ok(Self {
            key: Zeroizing::new(key),
        })
    }

    /// Reads and parses the secret file.
    pub fn from_file(path: &Path) -> Result<Self, std::io::Error> {
        let text = Zeroizing::new(std::fs::read_to_string(path)?);
        Self::parse(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; the Err arm cannot happen.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature of a delivery (what a sender puts in `webhook-signature`).
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let tag = self
            .mac(id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Verifies a delivery received at `now` (unix seconds). Signatures are compared in
    /// constant time; any one matching `v1` entry suffices (senders list several during
    /// secret rotation).
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), WebhookError> {
        let id = id.ok_or(WebhookError::MissingHeader("webhook-id"))?;
        let ts_text = timestamp.ok_or(WebhookError::MissingHeader("webhook-timestamp"))?;
        let sigs = signatures.ok_or(WebhookError::MissingHeader("webhook-signature"))?;
        let ts: u64 = ts_text
            .trim()
            .parse()
            .map_err(|_| WebhookError::BadTimestamp)?;
        if ts.abs_diff(now) > TOLERANCE_SECS {
            return Err(WebhookError::StaleTimestamp);
        }
        let expected = self.mac(id, ts_text.trim(), body).finalize().into_bytes();
        for entry in sigs.split_whitespace() {
            let Some(b64) = entry.strip_prefix("v1,") else {
                continue;
            };
            let Ok(given) = STANDARD.decode(b64) else {
                continue;
            };
            if given.len() == expected.len() && bool::from(given.ct_eq(expected.as_slice())) {
                return Ok(());
            }
        }
        Err(WebhookError::BadSignature)
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-key-size MACs; SHA-256 HMAC takes any length.
    panic!("HMAC-SHA256 rejected a key length, which it never does")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn matches_the_standard_webhooks_reference_example() {
        let s = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        let sig = s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        s.verify(
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            Some("1614265330"),
            Some(&sig),
            body,
            1614265330 + 299,
        )
        .expect("valid");
    }

    #[test]
    fn refuses_tampering_staleness_and_missing_headers() {
        let s = WebhookSecret::parse("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=").expect("secret");
        let now = 1_700_000_000;
        let sig = s.sign("id1", now, b"{}");
        let multi = format!("v1,AAAA {sig} v2,xyz");
        assert_eq!(
            s.verify(
                Some("id1"),
                Some(&now.to_string()),
                Some(&multi),
                b"{}",
                now
            ),
            Ok(())
        );
        assert_eq!(
            s.verify(Some("id1"), Some(&now.to_string()), Some(&sig), b"{ }", now),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            s.verify(Some("id2"), Some(&now.to_string()), Some(&sig), b"{}", now),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            s.verify(
                Some("id1"),
                Some(&now.to_string()),
                Some(&sig),
                b"{}",
                now + TOLERANCE_SECS + 1
            ),
            Err(WebhookError::StaleTimestamp)
        );
        assert_eq!(
            s.verify(Some("id1"), Some("soon"), Some(&sig), b"{}", now),
            Err(WebhookError::BadTimestamp)
        );
        assert_eq!(
            s.verify(None, Some("1"), Some(&sig), b"{}", now),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
        assert!(WebhookSecret::parse("whsec_!!!").is_err());
    }
}
