//! Upper bounds on the gas values a sponsored operation may carry (DESIGN §10.1).
//!
//! The EntryPoint takes `(callGasLimit + verificationGasLimit + paymasterVerificationGasLimit +
//! paymasterPostOpGasLimit + preVerificationGas) × maxFeePerGas` from the paymaster's deposit up
//! front and keeps what the bundler is owed, so every one of those values is the sponsor's money.
//! A wallet (or anyone holding a sponsor signature) that asks for ten million gas at a thousand
//! times the base fee would drain the deposit into the bundler beneficiary's pocket. Each value
//! is therefore bounded by what the operation kind actually needs:
//!
//! * gas limits from figures **measured** on anvil with the real contracts
//!   (`crates/sponsor/tests/gas.rs` measures them again and fails if a bound no longer admits
//!   an honest client's estimate), plus a configurable margin;
//! * `preVerificationGas` from the bundlers' own calldata rule ([`bundler_pre_verification_gas`])
//!   plus a margin and a fixed allowance (the L1 data share on rollups such as Base);
//! * fees from the chain's current base and priority fee (a configured multiple).

use attestmesh_chain::userop::worst_case_packed_encoding;
use attestmesh_core::userop::UserOperation;

/// Execution gas (`callGasLimit`) measured for `execute(cluster, 0, dstack_register(..))` on
/// anvil, as the node client measures it (`eth_estimateGas` from the EntryPoint minus the
/// 21 000 intrinsic; tests/gas.rs). All figures below were measured the same way on
/// 2026-12-04. (It includes the registration's calldata cost, which the EntryPoint's inner
/// call does not pay, so it sits above the execution itself.)
pub const MEASURED_REGISTER_EXECUTION: u128 = 318_902;
/// Execution gas measured for `execute(cluster, 0, setCskCommitment(..))`.
pub const MEASURED_CSK_EXECUTION: u128 = 46_533;
/// Execution gas measured for `execute(cluster, 0, publishWgKey(..))`: the key goes through
/// AttestFacet's `_setWgKey`, which keeps the one-key-one-member index (issue 11 hole 5).
pub const MEASURED_WG_KEY_EXECUTION: u128 = 79_587;
/// Execution gas measured for `execute(cluster, 0, send(..))` with a 128-byte ciphertext.
pub const MEASURED_SEND_EXECUTION: u128 = 50_258;
/// Extra execution gas per byte of `send` calldata beyond the measured 128-byte message
/// (calldata copy, memory and the `MessageSent` log's 8 gas per byte), measured between a
/// 128-byte message (50,258) and a 33 KiB one (500,628): 13.4, rounded up.
pub const MEASURED_SEND_PER_BYTE: u128 = 14;
/// `validateUserOp` of the bootstrap (`dstack_register`) operation: the account checks the
/// binding signature over the registration payload. The node client measures it with
/// `eth_estimateGas` *including* the 21 000 intrinsic and asks for 120 % of that, so this figure
/// includes it too (42,883 + 21,000).
pub const MEASURED_BOOTSTRAP_VALIDATION: u128 = 63_883;
/// Verification gas of a registered member's operation (one ECDSA recovery against the owner)
/// as alto estimates it: 30,741 for a `publishWgKey` op (userop_denials, 2026-12-04), which is
/// alto's simulation of the whole validation phase (EntryPoint bookkeeping and the userOp hash
/// included) times its default 130 %; `eth_estimateGas` of `validateUserOp` alone gives 19,717.
pub const MEASURED_REGISTERED_VALIDATION: u128 = 30_741;
/// Extra verification gas per byte of `callData`: the EntryPoint copies and hashes the whole
/// operation during validation (3 + 6 gas per word plus memory growth, about 0.5 gas per byte
/// for a 32 KiB message); one gas per byte covers it.
pub const VERIFICATION_PER_CALLDATA_BYTE: u128 = 1;
/// `ClusterMemberFactory.deployMember` (counterfactual deployment through `initCode`), a whole
/// transaction's `eth_estimateGas` (the member reads the cluster's bootstrap rule when it binds).
pub const MEASURED_MEMBER_DEPLOYMENT: u128 = 211_653;

/// The policy's gas and fee bounds; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasBounds {
    /// Headroom over each measured gas figure, in percent. It must cover the node client's
    /// 20 % bootstrap margin and alto's default 130 % verification multiplier.
    pub gas_margin_pct: u32,
    /// Highest `paymasterVerificationGasLimit` signed (what the service itself asks for).
    pub paymaster_verification_gas: u128,
    /// Highest `paymasterPostOpGasLimit` signed: `SponsorPaymaster` returns no context, so the
    /// EntryPoint never calls `postOp` and any limit is pure prefund (and a 10 % unused-gas
    /// penalty).
    pub paymaster_post_op_gas: u128,
    /// Headroom over the bundler rule for `preVerificationGas`, in percent.
    pub pvg_margin_pct: u32,
    /// Fixed gas added to the `preVerificationGas` bound: 0 on an L1 or anvil; on an OP-stack
    /// rollup (Base) bundlers add the L1 data fee converted to L2 gas, which this must cover.
    pub pvg_allowance: u128,
    /// `maxPriorityFeePerGas` may be at most this multiple of the chain's current priority fee,
    /// and `maxFeePerGas` at most this multiple of `baseFee + priority fee`.
    pub fee_multiple: u32,
}

impl Default for GasBounds {
    /// 50 % gas margin, 100 000 paymaster verification gas, no postOp, 50 % PVG margin, no PVG
    /// allowance, fees up to 3× the chain's.
    fn default() -> Self {
        Self {
            gas_margin_pct: 50,
            paymaster_verification_gas: 100_000,
            paymaster_post_op_gas: 0,
            pvg_margin_pct: 50,
            pvg_allowance: 0,
            fee_multiple: 3,
        }
    }
}

impl GasBounds {
    fn with_margin(&self, g: u128) -> u128 {
        g.saturating_mul(100 + u128::from(self.gas_margin_pct)) / 100
    }

    /// Highest `callGasLimit` for the inner call `kind` (an allowlist name) whose calldata is
    /// `inner_len` bytes long.
    pub fn call_gas_limit(&self, kind: &str, inner_len: usize) -> u128 {
        let measured = match kind {
            "dstack_register" => MEASURED_REGISTER_EXECUTION,
            "setCskCommitment" => MEASURED_CSK_EXECUTION,
            "publishWgKey" => MEASURED_WG_KEY_EXECUTION,
            "send" => {
                // The measured 128-byte message is 4 + 3 × 32 + 32 + 128 bytes of calldata.
                let extra = (inner_len as u128).saturating_sub(4 + 4 * 32 + 128);
                MEASURED_SEND_EXECUTION.saturating_add(extra.saturating_mul(MEASURED_SEND_PER_BYTE))
            }
            _ => 0,
        };
        self.with_margin(measured)
    }

    /// Highest `verificationGasLimit`: the bootstrap (`dstack_register`) path or a registered
    /// member's, plus the member's deployment when the operation carries a factory, plus
    /// [`VERIFICATION_PER_CALLDATA_BYTE`] for each of `call_data_len` bytes.
    pub fn verification_gas_limit_for(
        &self,
        bootstrap: bool,
        deploys: bool,
        call_data_len: usize,
    ) -> u128 {
        let base = if bootstrap {
            MEASURED_BOOTSTRAP_VALIDATION
        } else {
            MEASURED_REGISTERED_VALIDATION
        };
        let deploy = if deploys {
            MEASURED_MEMBER_DEPLOYMENT
        } else {
            0
        };
        let data = (call_data_len as u128).saturating_mul(VERIFICATION_PER_CALLDATA_BYTE);
        self.with_margin(base + deploy + data)
    }

    /// Highest `preVerificationGas` for `op` (as it will be signed: paymaster fields set).
    pub fn pre_verification_gas(&self, op: &UserOperation) -> u128 {
        bundler_pre_verification_gas(op).saturating_mul(100 + u128::from(self.pvg_margin_pct)) / 100
            + self.pvg_allowance
    }

    /// Highest `maxPriorityFeePerGas` given the chain's current `priority` fee.
    pub fn max_priority_fee(&self, priority: u128) -> u128 {
        priority.saturating_mul(u128::from(self.fee_multiple))
    }

    /// Highest `maxFeePerGas` given the chain's current `base_fee` and `priority` fee.
    pub fn max_fee(&self, base_fee: u128, priority: u128) -> u128 {
        base_fee
            .saturating_add(priority)
            .saturating_mul(u128::from(self.fee_multiple))
    }
}

/// The most the EntryPoint can take from the paymaster's deposit for `op`: the five gas values
/// times `maxFeePerGas` (the v0.7 required prefund). Saturates rather than wraps.
pub fn max_cost(op: &UserOperation) -> u128 {
    let pvg = u128::try_from(op.pre_verification_gas).unwrap_or(u128::MAX);
    op.call_gas_limit
        .saturating_add(op.verification_gas_limit)
        .saturating_add(op.paymaster_verification_gas_limit)
        .saturating_add(op.paymaster_post_op_gas_limit)
        .saturating_add(pvg)
        .saturating_mul(op.max_fee_per_gas)
}

/// `preVerificationGas` by the bundlers' calldata rule, over the ABI-encoded packed operation
/// with every gas, fee, paymaster-data and signature byte set non-zero (what the bundle will
/// carry at worst; signature at least 65 bytes), the larger of:
///
/// * the ERC-4337 reference rule: 21 000 per bundle + 18 300 per operation + 4 per word +
///   16 per non-zero and 4 per zero calldata byte (alto's default, 21 000 + 9 830 + 7 260 +
///   9.2 per word of `callData` + the same byte costs, stays below it);
/// * the EIP-7623 calldata floor alto applies where the chain has it: 21 000 + 10 per token
///   (a zero byte is one token, a non-zero byte four).
pub fn bundler_pre_verification_gas(op: &UserOperation) -> u128 {
    let encoded = worst_case_packed_encoding(op);
    let zeros = encoded.iter().filter(|b| **b == 0).count() as u128;
    let nonzeros = encoded.len() as u128 - zeros;
    let tokens = zeros + 4 * nonzeros;
    let words = (encoded.len() as u128).div_ceil(32);
    let reference = 21_000 + 18_300 + 4 * words + 4 * tokens;
    let floor = 21_000 + 10 * tokens;
    reference.max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, Bytes, U256};

    #[test]
    fn max_cost_is_the_prefund_and_saturates() {
        let op = UserOperation {
            call_gas_limit: 1,
            verification_gas_limit: 2,
            paymaster_verification_gas_limit: 3,
            paymaster_post_op_gas_limit: 4,
            pre_verification_gas: U256::from(5u8),
            max_fee_per_gas: 10,
            ..Default::default()
        };
        assert_eq!(max_cost(&op), 150);
        let huge = UserOperation {
            call_gas_limit: u128::MAX,
            pre_verification_gas: U256::MAX,
            max_fee_per_gas: 2,
            ..Default::default()
        };
        assert_eq!(max_cost(&huge), u128::MAX);
    }

    #[test]
    fn pvg_rule_grows_with_calldata_and_covers_the_client_rule() {
        let small = UserOperation {
            sender: Address::repeat_byte(1),
            call_data: Bytes::from(vec![0x11; 100]),
            paymaster: Some(Address::repeat_byte(2)),
            paymaster_data: Bytes::from(vec![0; 77]),
            ..Default::default()
        };
        let mut big = small.clone();
        big.call_data = Bytes::from(vec![0x11; 1000]);
        assert!(bundler_pre_verification_gas(&big) > bundler_pre_verification_gas(&small));
        for op in [&small, &big] {
            assert!(
                u128::from(attestmesh_chain::userop::worst_case_pre_verification_gas(
                    op
                )) <= bundler_pre_verification_gas(op)
            );
        }
    }
}
