//! Typed view calls.

use alloy_primitives::Address;
use alloy_sol_types::SolCall;

use crate::error::OpsError;
use crate::exec::revert_reason;
use attestmesh_chain::rpc::RpcClient;

/// Calls a view and decodes its return; `what` names it in errors.
pub async fn view<C: SolCall>(
    p: &RpcClient,
    to: Address,
    call: C,
    what: &str,
) -> Result<C::Return, OpsError> {
    let out = p.eth_call(to, &call.abi_encode()).await.map_err(|e| {
        if e.is_revert() {
            OpsError::Reverted {
                what: what.to_string(),
                tx: None,
                reason: revert_reason(&e),
            }
        } else {
            OpsError::chain(what.to_string())(e)
        }
    })?;
    if out.is_empty() {
        return Err(OpsError::Unexpected(format!(
            "{what}: empty answer — is there a contract of the expected kind at {to}?"
        )));
    }
    C::abi_decode_returns(&out)
        .map_err(|_| OpsError::Unexpected(format!("{what}: unexpected return data from {to}")))
}
