//! Clusters: creation, the admission policy, and reading a cluster back (`show`, `members`).
//!
//! The guards here exist because the chain accepts anything the owner signs, including
//! mistakes that are expensive to undo: a development KMS root on a real chain admits anyone
//! who runs devtee; two clusters with overlapping mesh CIDRs break routing on any host that
//! joins both; removing the compose hash the CSK originator runs stops it from ever booting
//! again. Each guard refuses with an explanation unless `--force` is given.

mod create;
mod policy;
mod read;

pub use create::{CreatePlan, execute_create, factory_clusters, plan_create};
pub use policy::{PolicyChange, PolicyOutcome, change_policy, require_cluster_owner};
pub use read::{ClusterInfo, MemberInfo, members, render_info, render_members, show};

use attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS;

use crate::error::OpsError;

pub(super) fn dev_root_warning(chain_id: u64) -> String {
    format!(
        "{DEV_KMS_ROOT_ADDRESS} is the devtee development KMS root, whose private key is \
         published: on chain {chain_id} (not a local dev chain) allowlisting it lets anyone \
         who runs `attestmesh devtee` register as a member of this cluster"
    )
}

/// Collects a guard: an error without `force`, a warning with it.
pub(super) fn guard(
    force: bool,
    warnings: &mut Vec<String>,
    message: String,
) -> Result<(), OpsError> {
    if force {
        warnings.push(message);
        Ok(())
    } else {
        Err(OpsError::Refused(message))
    }
}
