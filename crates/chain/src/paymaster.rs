//! ERC-7677 paymaster web-service client (`pm_getPaymasterStubData`, `pm_getPaymasterData`).
//!
//! Works with any ERC-7677 service — our `attestmesh sponsor` or a hosted paymaster — because it
//! only relies on the standard params `[userOp, entryPoint, chainId, context]` and result fields.

use alloy_primitives::{Address, Bytes, U256};
use attestmesh_core::userop::{PAYMASTER_DATA_OFFSET, UserOperation};
use serde_json::{Value, json};

use crate::bundler::{opt_field, user_op_json};
use crate::rpc::{RpcClient, RpcError};

/// Paymaster fields for a v0.7 operation, from either method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymasterFields {
    pub paymaster: Address,
    pub paymaster_data: Bytes,
    /// Present when the service wants a specific limit (ERC-7677: wallets should then use it
    /// rather than the bundler's estimate, because stub signatures make estimates unreliable).
    pub verification_gas_limit: Option<u128>,
    /// ERC-7677 requires it for v0.7 stubs: the paymaster pays for postOp, so it decides.
    pub post_op_gas_limit: Option<u128>,
    /// Stub only: the data is already final, `pm_getPaymasterData` must be skipped.
    pub is_final: bool,
}

impl PaymasterFields {
    fn parse(v: &Value, method: &str) -> Result<Self, RpcError> {
        let u128_field = |name: &str| -> Result<Option<u128>, RpcError> {
            opt_field::<U256>(v, name, method)?
                .map(|x| {
                    u128::try_from(x).map_err(|_| RpcError::Malformed {
                        method: method.to_string(),
                        detail: format!("{name} does not fit in uint128"),
                    })
                })
                .transpose()
        };
        let mut verification_gas_limit = u128_field("paymasterVerificationGasLimit")?;
        let mut post_op_gas_limit = u128_field("paymasterPostOpGasLimit")?;
        let (paymaster, paymaster_data) = match (
            opt_field::<Address>(v, "paymaster", method)?,
            opt_field::<Bytes>(v, "paymasterAndData", method)?,
        ) {
            (Some(p), _) => (
                p,
                opt_field::<Bytes>(v, "paymasterData", method)?.unwrap_or_default(),
            ),
            // Some services answer in the packed form only; split it the way v0.7 packs it.
            (None, Some(pad)) if pad.len() >= PAYMASTER_DATA_OFFSET => {
                let be = |r: std::ops::Range<usize>| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&pad[r]);
                    u128::from_be_bytes(b)
                };
                verification_gas_limit.get_or_insert(be(20..36));
                post_op_gas_limit.get_or_insert(be(36..52));
                (
                    Address::from_slice(&pad[..20]),
                    Bytes::copy_from_slice(&pad[PAYMASTER_DATA_OFFSET..]),
                )
            }
            _ => {
                return Err(RpcError::Malformed {
                    method: method.to_string(),
                    detail: "neither paymaster nor a v0.7 paymasterAndData in the result".into(),
                });
            }
        };
        Ok(Self {
            paymaster,
            paymaster_data,
            verification_gas_limit,
            post_op_gas_limit,
            is_final: opt_field::<bool>(v, "isFinal", method)?.unwrap_or(false),
        })
    }

    /// Writes the fields into `op`, keeping `op`'s gas limits where the service gave none.
    pub fn apply(&self, op: &mut UserOperation) {
        op.paymaster = Some(self.paymaster);
        op.paymaster_data = self.paymaster_data.clone();
        if let Some(g) = self.verification_gas_limit {
            op.paymaster_verification_gas_limit = g;
        }
        if let Some(g) = self.post_op_gas_limit {
            op.paymaster_post_op_gas_limit = g;
        }
    }
}

/// A paymaster service endpoint plus the opaque `context` it wants (policy id etc.).
#[derive(Debug)]
pub struct PaymasterClient {
    rpc: RpcClient,
    context: Value,
}

impl PaymasterClient {
    pub fn new(rpc: RpcClient, context: Value) -> Self {
        Self { rpc, context }
    }

    async fn request(
        &self,
        method: &str,
        op: &UserOperation,
        entry_point: Address,
        chain_id: u64,
    ) -> Result<PaymasterFields, RpcError> {
        let v: Value = self
            .rpc
            .call(
                method,
                json!([
                    user_op_json(op),
                    entry_point,
                    format!("{chain_id:#x}"),
                    self.context
                ]),
            )
            .await?;
        PaymasterFields::parse(&v, method)
    }

    /// Stub values for gas estimation (nothing is charged, the signature is a placeholder).
    pub async fn stub_data(
        &self,
        op: &UserOperation,
        entry_point: Address,
        chain_id: u64,
    ) -> Result<PaymasterFields, RpcError> {
        self.request("pm_getPaymasterStubData", op, entry_point, chain_id)
            .await
    }

    /// The final, signed paymaster data for `op` with its final gas values.
    pub async fn data(
        &self,
        op: &UserOperation,
        entry_point: Address,
        chain_id: u64,
    ) -> Result<PaymasterFields, RpcError> {
        self.request("pm_getPaymasterData", op, entry_point, chain_id)
            .await
    }
}

/// The deny reason an ERC-7677 service attached to a JSON-RPC error (`error.data.reason`, the
/// shape `attestmesh sponsor` and several hosted paymasters use), if any.
pub fn deny_reason(err: &RpcError) -> Option<String> {
    match err {
        RpcError::Rpc {
            detail: Some(d), ..
        } => d
            .get("reason")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(128).collect()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_unpacked_and_packed_answers() {
        let f = PaymasterFields::parse(
            &json!({"paymaster": Address::repeat_byte(7), "paymasterData": "0x0102",
                    "paymasterVerificationGasLimit": "0x186a0", "paymasterPostOpGasLimit": "0x0",
                    "isFinal": false}),
            "pm_getPaymasterStubData",
        )
        .unwrap();
        assert_eq!(f.paymaster, Address::repeat_byte(7));
        assert_eq!(f.verification_gas_limit, Some(100_000));
        assert_eq!(f.post_op_gas_limit, Some(0));
        assert!(!f.is_final);

        let mut pad = Address::repeat_byte(8).to_vec();
        pad.extend_from_slice(&5u128.to_be_bytes());
        pad.extend_from_slice(&6u128.to_be_bytes());
        pad.extend_from_slice(&[0xee; 3]);
        let f = PaymasterFields::parse(
            &json!({"paymasterAndData": Bytes::from(pad), "isFinal": true}),
            "pm_getPaymasterData",
        )
        .unwrap();
        assert_eq!(
            (f.paymaster, f.verification_gas_limit, f.post_op_gas_limit),
            (Address::repeat_byte(8), Some(5), Some(6))
        );
        assert_eq!(f.paymaster_data, Bytes::from(vec![0xee; 3]));
        assert!(f.is_final);

        let mut op = UserOperation {
            paymaster_verification_gas_limit: 9,
            ..Default::default()
        };
        PaymasterFields {
            verification_gas_limit: None,
            ..f
        }
        .apply(&mut op);
        assert_eq!(op.paymaster_verification_gas_limit, 9);
        assert_eq!(op.paymaster_post_op_gas_limit, 6);

        assert!(PaymasterFields::parse(&json!({}), "pm_getPaymasterData").is_err());
    }

    #[test]
    fn deny_reason_from_error_data() {
        let e = RpcError::Rpc {
            method: "pm_getPaymasterData".into(),
            code: -32003,
            message: "sponsorship denied: nonzero_value".into(),
            data: None,
            detail: Some(Box::new(json!({"reason": "nonzero_value"}))),
        };
        assert_eq!(deny_reason(&e).as_deref(), Some("nonzero_value"));
        assert_eq!(deny_reason(&RpcError::BadUrl(String::new())), None);
    }
}
