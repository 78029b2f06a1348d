//! ERC-4337 bundler JSON-RPC (`eth_estimateUserOperationGas`, `eth_sendUserOperation`,
//! `eth_getUserOperationReceipt`, `eth_getUserOperationByHash`, `eth_supportedEntryPoints`) and
//! the v0.7 *unpacked* user-operation JSON that bundlers and ERC-7677 paymasters exchange.
//!
//! Only methods of the ERC-4337 RPC spec are used — no vendor extensions — so any compliant
//! bundler (alto locally, a hosted one in production) works behind the same client.

use alloy_primitives::{Address, B256, Bytes, U256};
use attestmesh_core::userop::UserOperation;
use serde_json::{Value, json};

use crate::read::Log;
use crate::rpc::{RpcClient, RpcError};

fn q128(v: u128) -> String {
    format!("{v:#x}")
}

/// The v0.7 unpacked JSON form: `factory`/`factoryData` only for an undeployed account, the four
/// paymaster fields only with a paymaster (bundlers reject `paymaster: null` with data present).
pub fn user_op_json(op: &UserOperation) -> Value {
    let mut o = json!({
        "sender": op.sender,
        "nonce": op.nonce,
        "callData": op.call_data,
        "callGasLimit": q128(op.call_gas_limit),
        "verificationGasLimit": q128(op.verification_gas_limit),
        "preVerificationGas": op.pre_verification_gas,
        "maxFeePerGas": q128(op.max_fee_per_gas),
        "maxPriorityFeePerGas": q128(op.max_priority_fee_per_gas),
        "signature": op.signature,
    });
    if let Some(f) = op.factory {
        o["factory"] = json!(f);
        o["factoryData"] = json!(op.factory_data);
    }
    if let Some(p) = op.paymaster {
        o["paymaster"] = json!(p);
        o["paymasterVerificationGasLimit"] = json!(q128(op.paymaster_verification_gas_limit));
        o["paymasterPostOpGasLimit"] = json!(q128(op.paymaster_post_op_gas_limit));
        o["paymasterData"] = json!(op.paymaster_data);
    }
    o
}

/// A JSON field that must be there and parse.
pub(crate) fn field<T: serde::de::DeserializeOwned>(
    v: &Value,
    name: &str,
    method: &str,
) -> Result<T, RpcError> {
    let x = v.get(name).ok_or_else(|| RpcError::Malformed {
        method: method.to_string(),
        detail: format!("missing {name}"),
    })?;
    serde_json::from_value(x.clone()).map_err(|e| RpcError::Malformed {
        method: method.to_string(),
        detail: format!("{name}: {e}"),
    })
}

/// A JSON field that may be absent or null.
pub(crate) fn opt_field<T: serde::de::DeserializeOwned>(
    v: &Value,
    name: &str,
    method: &str,
) -> Result<Option<T>, RpcError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => field(v, name, method).map(Some),
    }
}

fn to_u128(v: U256, name: &str, method: &str) -> Result<u128, RpcError> {
    u128::try_from(v).map_err(|_| RpcError::Malformed {
        method: method.to_string(),
        detail: format!("{name} does not fit in uint128"),
    })
}

/// What `eth_estimateUserOperationGas` answers for a v0.7 operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasEstimate {
    pub pre_verification_gas: U256,
    pub verification_gas_limit: u128,
    pub call_gas_limit: u128,
    pub paymaster_verification_gas_limit: Option<u128>,
    pub paymaster_post_op_gas_limit: Option<u128>,
}

/// The ERC-4337 user-operation receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOpReceipt {
    pub user_op_hash: B256,
    pub sender: Address,
    pub nonce: U256,
    pub paymaster: Option<Address>,
    /// Whether the inner call succeeded (the operation is included either way).
    pub success: bool,
    /// Wei the paymaster (or account) paid.
    pub actual_gas_cost: U256,
    pub actual_gas_used: U256,
    /// Revert data of the inner call (`UserOperationRevertReason`), when it failed.
    pub reason: Option<Bytes>,
    pub tx_hash: B256,
    pub block_number: u64,
    /// The logs this operation emitted (the bundler cuts them out of the bundle transaction),
    /// as full `eth_getLogs`-shaped logs.
    pub logs: Vec<Log>,
}

impl UserOpReceipt {
    fn parse(v: &Value) -> Result<Self, RpcError> {
        const M: &str = "eth_getUserOperationReceipt";
        let inner = v.get("receipt").ok_or_else(|| RpcError::Malformed {
            method: M.into(),
            detail: "missing receipt".into(),
        })?;
        let block: U256 = field(inner, "blockNumber", M)?;
        let reason: Option<Bytes> = opt_field(v, "reason", M)?;
        Ok(Self {
            user_op_hash: field(v, "userOpHash", M)?,
            sender: field(v, "sender", M)?,
            nonce: field(v, "nonce", M)?,
            paymaster: opt_field::<Address>(v, "paymaster", M)?.filter(|p| !p.is_zero()),
            success: field(v, "success", M)?,
            actual_gas_cost: field(v, "actualGasCost", M)?,
            actual_gas_used: field(v, "actualGasUsed", M)?,
            reason: reason.filter(|r| !r.is_empty()),
            tx_hash: field(inner, "transactionHash", M)?,
            block_number: block.saturating_to(),
            logs: opt_field(v, "logs", M)?.unwrap_or_default(),
        })
    }
}

/// A bundler endpoint.
#[derive(Debug)]
pub struct BundlerClient {
    rpc: RpcClient,
}

impl BundlerClient {
    pub fn new(rpc: RpcClient) -> Self {
        Self { rpc }
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    pub async fn supported_entry_points(&self) -> Result<Vec<Address>, RpcError> {
        self.rpc.call("eth_supportedEntryPoints", json!([])).await
    }

    pub async fn estimate(
        &self,
        op: &UserOperation,
        entry_point: Address,
    ) -> Result<GasEstimate, RpcError> {
        const M: &str = "eth_estimateUserOperationGas";
        let v: Value = self
            .rpc
            .call(M, json!([user_op_json(op), entry_point]))
            .await?;
        let opt = |name: &str| -> Result<Option<u128>, RpcError> {
            opt_field::<U256>(&v, name, M)?
                .map(|x| to_u128(x, name, M))
                .transpose()
        };
        Ok(GasEstimate {
            pre_verification_gas: field(&v, "preVerificationGas", M)?,
            verification_gas_limit: to_u128(
                field(&v, "verificationGasLimit", M)?,
                "verificationGasLimit",
                M,
            )?,
            call_gas_limit: to_u128(field(&v, "callGasLimit", M)?, "callGasLimit", M)?,
            paymaster_verification_gas_limit: opt("paymasterVerificationGasLimit")?,
            paymaster_post_op_gas_limit: opt("paymasterPostOpGasLimit")?,
        })
    }

    /// Submits a signed operation; the bundler answers with the userOp hash.
    pub async fn send(&self, op: &UserOperation, entry_point: Address) -> Result<B256, RpcError> {
        self.rpc
            .call(
                "eth_sendUserOperation",
                json!([user_op_json(op), entry_point]),
            )
            .await
    }

    /// `None` while the operation is not included yet.
    pub async fn receipt(&self, hash: B256) -> Result<Option<UserOpReceipt>, RpcError> {
        let v: Value = self
            .rpc
            .call("eth_getUserOperationReceipt", json!([hash]))
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        UserOpReceipt::parse(&v).map(Some)
    }

    /// Whether the bundler knows the operation (pending or included).
    pub async fn knows(&self, hash: B256) -> Result<bool, RpcError> {
        let v: Value = self
            .rpc
            .call("eth_getUserOperationByHash", json!([hash]))
            .await?;
        Ok(!v.is_null())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_form_is_v07_unpacked() {
        let op = UserOperation {
            sender: Address::repeat_byte(0x11),
            nonce: U256::from(5u64),
            call_data: Bytes::from(vec![0xb6, 0x1d, 0x27, 0xf6]),
            call_gas_limit: 0x1234,
            verification_gas_limit: 0x10000,
            pre_verification_gas: U256::from(0xabcdu64),
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1,
            paymaster: Some(Address::repeat_byte(0x22)),
            paymaster_verification_gas_limit: 100_000,
            paymaster_post_op_gas_limit: 0,
            paymaster_data: Bytes::from(vec![1, 2]),
            signature: Bytes::from(vec![9; 65]),
            ..Default::default()
        };
        let v = user_op_json(&op);
        assert_eq!(v["nonce"], "0x5");
        assert_eq!(v["callGasLimit"], "0x1234");
        assert_eq!(v["preVerificationGas"], "0xabcd");
        assert_eq!(v["maxFeePerGas"], "0x77359400");
        assert_eq!(v["paymasterVerificationGasLimit"], "0x186a0");
        assert_eq!(v["paymasterPostOpGasLimit"], "0x0");
        assert_eq!(v["paymasterData"], "0x0102");
        assert_eq!(v["callData"], "0xb61d27f6");
        assert!(v.get("factory").is_none());
        let bare = user_op_json(&UserOperation::default());
        assert!(bare.get("paymaster").is_none() && bare.get("paymasterData").is_none());
    }

    #[test]
    fn receipt_parses_the_spec_shape() {
        let v = json!({
            "userOpHash": B256::repeat_byte(1),
            "entryPoint": attestmesh_core::userop::ENTRY_POINT_V07,
            "sender": Address::repeat_byte(2),
            "nonce": "0x0",
            "paymaster": Address::repeat_byte(3),
            "actualGasCost": "0x10",
            "actualGasUsed": "0x20",
            "success": false,
            "reason": "0x744943e4",
            "logs": [{"address": Address::repeat_byte(5), "topics": [B256::repeat_byte(6)], "data": "0x01",
                      "blockNumber": "0x7", "logIndex": "0x0", "blockHash": B256::repeat_byte(8),
                      "transactionHash": B256::repeat_byte(4)}],
            "receipt": {"transactionHash": B256::repeat_byte(4), "blockNumber": "0x7"}
        });
        let r = UserOpReceipt::parse(&v).unwrap();
        assert!(!r.success);
        assert_eq!(r.block_number, 7);
        assert_eq!(r.logs.len(), 1);
        assert_eq!(r.logs[0].topics, vec![B256::repeat_byte(6)]);
        assert_eq!(r.paymaster, Some(Address::repeat_byte(3)));
        assert_eq!(r.reason, Some(Bytes::from(vec![0x74, 0x49, 0x43, 0xe4])));
        let mut no_reason = v.clone();
        no_reason["reason"] = json!("0x");
        assert_eq!(UserOpReceipt::parse(&no_reason).unwrap().reason, None);
        let mut broken = v;
        broken.as_object_mut().unwrap().remove("receipt");
        assert!(UserOpReceipt::parse(&broken).is_err());
    }
}
