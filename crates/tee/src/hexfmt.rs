//! Hex as the guest agent speaks it: lowercase, no `0x` on output; `0x` tolerated on input
//! because SDKs and humans add it.

/// A field that was not valid hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` is not valid hex: {reason}")]
pub struct BadHex {
    pub field: &'static str,
    pub reason: String,
}

pub fn decode(field: &'static str, s: &str) -> Result<Vec<u8>, BadHex> {
    let t = s.strip_prefix("0x").unwrap_or(s);
    alloy_primitives::hex::decode(t).map_err(|e| BadHex {
        field,
        reason: e.to_string(),
    })
}

pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    alloy_primitives::hex::encode(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefix_optional_and_errors_named() {
        assert_eq!(decode("k", "0xab01").unwrap(), vec![0xab, 1]);
        assert_eq!(decode("k", "AB01").unwrap(), vec![0xab, 1]);
        let e = decode("key", "zz").unwrap_err();
        assert_eq!(e.field, "key");
        assert!(decode("k", "abc").is_err());
        assert_eq!(encode([0xab, 1]), "ab01");
    }
}
