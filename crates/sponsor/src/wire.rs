//! Decoding the JSON the outside world sends us: the unpacked v0.7 user operation of ERC-7677 /
//! `eth_sendUserOperation`, addresses, quantities and byte strings.
//!
//! Everything here takes untrusted input, so every failure is a [`FieldError`] that names the
//! offending field: a wallet developer staring at a 400 should know which field to fix.

use alloy_primitives::{Address, Bytes, U256};
use attestmesh_core::userop::UserOperation;
use serde_json::Value;

/// A request field that is missing or malformed. Maps to HTTP 400 / JSON-RPC -32602.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct FieldError {
    /// Dotted path of the field, e.g. `userOp.callGasLimit`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn hex_body<'a>(field: &str, v: &'a Value) -> Result<&'a str, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, "expected a 0x-prefixed hex string"))?;
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| FieldError::new(field, "expected a 0x-prefixed hex string"))
}

fn decode_hex(field: &str, body: &str) -> Result<Vec<u8>, FieldError> {
    if !body.len().is_multiple_of(2) {
        return Err(FieldError::new(field, "odd number of hex digits"));
    }
    let mut out = Vec::with_capacity(body.len() / 2);
    let raw = body.as_bytes();
    for pair in raw.chunks_exact(2) {
        let hi = hex_digit(pair[0]);
        let lo = hex_digit(pair[1]);
        match (hi, lo) {
            (Some(h), Some(l)) => out.push((h << 4) | l),
            _ => return Err(FieldError::new(field, "not a hex string")),
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A 20-byte address as `0x` + 40 hex digits (checksum not enforced: JSON-RPC peers differ).
pub fn address(field: &str, v: &Value) -> Result<Address, FieldError> {
    let body = hex_body(field, v)?;
    if body.len() != 40 {
        return Err(FieldError::new(
            field,
            format!(
                "expected 20 bytes (40 hex digits), got {} digits",
                body.len()
            ),
        ));
    }
    Ok(Address::from_slice(&decode_hex(field, body)?))
}

/// A byte string as `0x` + an even number of hex digits.
pub fn bytes(field: &str, v: &Value) -> Result<Bytes, FieldError> {
    let body = hex_body(field, v)?;
    Ok(Bytes::from(decode_hex(field, body)?))
}

/// A JSON-RPC quantity (`0x`-hex, leading zeros tolerated) or a non-negative JSON integer,
/// up to 256 bits.
pub fn quantity(field: &str, v: &Value) -> Result<U256, FieldError> {
    if let Some(n) = v.as_u64() {
        return Ok(U256::from(n));
    }
    let body = hex_body(field, v)?;
    if body.is_empty() {
        return Err(FieldError::new(field, "empty quantity"));
    }
    let digits = body.trim_start_matches('0');
    if digits.len() > 64 {
        return Err(FieldError::new(field, "does not fit in 256 bits"));
    }
    if !digits.bytes().all(|c| hex_digit(c).is_some()) {
        return Err(FieldError::new(field, "not a hex quantity"));
    }
    if digits.is_empty() {
        return Ok(U256::ZERO);
    }
    U256::from_str_radix(digits, 16).map_err(|e| FieldError::new(field, e.to_string()))
}

/// A quantity that must fit a `uint128` (the packed v0.7 gas fields).
pub fn quantity_u128(field: &str, v: &Value) -> Result<u128, FieldError> {
    let q = quantity(field, v)?;
    u128::try_from(q).map_err(|_| FieldError::new(field, "does not fit in uint128"))
}

/// A chain id as a hex quantity or a JSON number, up to 64 bits.
pub fn chain_id(field: &str, v: &Value) -> Result<u64, FieldError> {
    let q = quantity(field, v)?;
    u64::try_from(q).map_err(|_| FieldError::new(field, "does not fit in 64 bits"))
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|x| !x.is_null())
}

/// Parses the unpacked v0.7 user operation object.
///
/// `sender`, `nonce` and `callData` are always required. When `require_gas` is set (the final
/// `pm_getPaymasterData` call, whose signature commits to them) the five gas fields are required
/// too; for stub data they default to zero, since wallets ask for stubs before estimating.
/// Paymaster fields and `signature` are optional. A v0.6-style `initCode` is accepted in place of
/// `factory`/`factoryData`, so a hosted paymaster's webhook in either shape parses.
pub fn user_operation(
    prefix: &str,
    v: &Value,
    require_gas: bool,
) -> Result<UserOperation, FieldError> {
    let obj = v
        .as_object()
        .ok_or_else(|| FieldError::new(prefix, "expected a user operation object"))?;
    let f = |name: &str| format!("{prefix}.{name}");
    let req = |name: &str| -> Result<&Value, FieldError> {
        present(obj.get(name)).ok_or_else(|| FieldError::new(f(name), "missing"))
    };
    let gas = |name: &str| -> Result<u128, FieldError> {
        match present(obj.get(name)) {
            Some(x) => quantity_u128(&f(name), x),
            None if require_gas => Err(FieldError::new(f(name), "missing")),
            None => Ok(0),
        }
    };
    let opt_u128 = |name: &str| -> Result<u128, FieldError> {
        present(obj.get(name))
            .map(|x| quantity_u128(&f(name), x))
            .transpose()
            .map(|o| o.unwrap_or(0))
    };

    let (factory, factory_data) = match present(obj.get("factory")) {
        Some(x) => (
            Some(address(&f("factory"), x)?),
            present(obj.get("factoryData"))
                .map(|d| bytes(&f("factoryData"), d))
                .transpose()?
                .unwrap_or_default(),
        ),
        None => match present(obj.get("initCode")) {
            Some(x) => {
                let ic = bytes(&f("initCode"), x)?;
                match ic.len() {
                    0 => (None, Bytes::new()),
                    n if n < 20 => {
                        return Err(FieldError::new(
                            f("initCode"),
                            "shorter than a factory address",
                        ));
                    }
                    _ => (
                        Some(Address::from_slice(&ic[..20])),
                        Bytes::copy_from_slice(&ic[20..]),
                    ),
                }
            }
            None => (None, Bytes::new()),
        },
    };

    let pre_verification_gas = match present(obj.get("preVerificationGas")) {
        Some(x) => quantity(&f("preVerificationGas"), x)?,
        None if require_gas => return Err(FieldError::new(f("preVerificationGas"), "missing")),
        None => U256::ZERO,
    };

    Ok(UserOperation {
        sender: address(&f("sender"), req("sender")?)?,
        nonce: quantity(&f("nonce"), req("nonce")?)?,
        factory,
        factory_data,
        call_data: bytes(&f("callData"), req("callData")?)?,
        call_gas_limit: gas("callGasLimit")?,
        verification_gas_limit: gas("verificationGasLimit")?,
        pre_verification_gas,
        max_fee_per_gas: gas("maxFeePerGas")?,
        max_priority_fee_per_gas: gas("maxPriorityFeePerGas")?,
        paymaster: present(obj.get("paymaster"))
            .map(|x| address(&f("paymaster"), x))
            .transpose()?,
        paymaster_verification_gas_limit: opt_u128("paymasterVerificationGasLimit")?,
        paymaster_post_op_gas_limit: opt_u128("paymasterPostOpGasLimit")?,
        paymaster_data: present(obj.get("paymasterData"))
            .map(|x| bytes(&f("paymasterData"), x))
            .transpose()?
            .unwrap_or_default(),
        signature: present(obj.get("signature"))
            .map(|x| bytes(&f("signature"), x))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// Formats a quantity the JSON-RPC way (`0x` + minimal hex, `0x0` for zero).
pub fn hex_quantity(v: u128) -> String {
    format!("{v:#x}")
}

/// Formats bytes as `0x` + lowercase hex.
pub fn hex_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op() -> Value {
        json!({
            "sender": "0x00000000000000000000000000000000000000a1",
            "nonce": "0x0",
            "callData": "0xb61d27f6",
            "callGasLimit": "0x1",
            "verificationGasLimit": "0x2",
            "preVerificationGas": "0x3",
            "maxFeePerGas": "0x4",
            "maxPriorityFeePerGas": "0x5",
            "paymaster": null,
        })
    }

    #[test]
    fn parses_a_v07_user_operation() {
        let u = user_operation("userOp", &op(), true).expect("valid");
        assert_eq!(u.call_gas_limit, 1);
        assert_eq!(u.max_priority_fee_per_gas, 5);
        assert_eq!(u.paymaster, None);
        assert_eq!(u.call_data.as_ref(), &[0xb6, 0x1d, 0x27, 0xf6]);
    }

    #[test]
    fn names_the_bad_field() {
        let mut v = op();
        v["callGasLimit"] = json!("0xzz");
        assert_eq!(
            user_operation("userOp", &v, true)
                .expect_err("must fail")
                .field,
            "userOp.callGasLimit"
        );
        let mut v = op();
        v["sender"] = json!("0x1234");
        assert_eq!(
            user_operation("userOp", &v, true)
                .expect_err("must fail")
                .field,
            "userOp.sender"
        );
        let mut v = op();
        v.as_object_mut().expect("object").remove("callData");
        let e = user_operation("userOp", &v, true).expect_err("must fail");
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("userOp.callData", "missing")
        );
        let mut v = op();
        v["maxFeePerGas"] = json!(format!("0x1{}", "0".repeat(32)));
        assert_eq!(
            user_operation("userOp", &v, true)
                .expect_err("must fail")
                .field,
            "userOp.maxFeePerGas"
        );
        let mut v = op();
        v.as_object_mut().expect("object").remove("maxFeePerGas");
        assert!(user_operation("userOp", &v, false).is_ok());
        assert_eq!(
            user_operation("userOp", &v, true)
                .expect_err("must fail")
                .field,
            "userOp.maxFeePerGas"
        );
        assert_eq!(
            user_operation("userOp", &json!([1]), true)
                .expect_err("must fail")
                .field,
            "userOp"
        );
    }

    #[test]
    fn v06_init_code_splits_into_factory() {
        let mut v = op();
        v["initCode"] = json!(format!("0x{}abcd", "44".repeat(20)));
        let u = user_operation("userOp", &v, true).expect("valid");
        assert_eq!(u.factory, Some(Address::repeat_byte(0x44)));
        assert_eq!(u.factory_data.as_ref(), &[0xab, 0xcd]);
    }

    #[test]
    fn quantities() {
        assert_eq!(
            quantity("q", &json!("0x00ff")).expect("ok"),
            U256::from(255u64)
        );
        assert_eq!(quantity("q", &json!(7)).expect("ok"), U256::from(7u64));
        assert!(quantity("q", &json!("ff")).is_err());
        assert!(quantity("q", &json!("0x")).is_err());
        assert!(quantity("q", &json!(-1)).is_err());
        assert_eq!(hex_quantity(0), "0x0");
        assert_eq!(hex_bytes(&[0, 0xab]), "0x00ab");
    }
}
