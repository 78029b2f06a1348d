//! Typed view calls with operator-facing errors: the chain crate's one
//! [`attestmesh_chain::read::view`], its failures mapped to [`OpsError`].

use alloy_primitives::Address;
use alloy_sol_types::SolCall;
use attestmesh_chain::read::{BlockTag, ViewError};
use attestmesh_chain::rpc::RpcClient;

use crate::error::OpsError;
use crate::exec::revert_reason;

/// Calls a view at the latest block and decodes its return; `what` names it in errors.
pub async fn view<C: SolCall>(
    p: &RpcClient,
    to: Address,
    call: C,
    what: &str,
) -> Result<C::Return, OpsError> {
    attestmesh_chain::read::view(p, to, call, BlockTag::Latest)
        .await
        .map_err(|e| match e {
            ViewError::Rpc { source, .. } if source.is_revert() => OpsError::Reverted {
                what: what.to_string(),
                tx: None,
                reason: revert_reason(&source),
            },
            ViewError::Rpc { source, .. } => OpsError::chain(what.to_string())(*source),
            other => OpsError::Unexpected(format!("{what}: {other}")),
        })
}
