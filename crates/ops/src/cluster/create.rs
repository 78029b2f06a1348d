//! `cluster create`: the predicted address, the guards, the deployment.

// Bindings are built with field-init shorthand using the Solidity parameter names.
#![allow(non_snake_case)]

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent};
use attestmesh_chain::bindings::{IAttestFacet, IClusterDiamondFactory};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS;

use super::{dev_root_warning, guard};
use crate::config::{ClusterConfig, cidrs_overlap};
use crate::deployments::Deployments;
use crate::error::OpsError;
use crate::exec::{Executor, PlannedTx};
use crate::infra::is_dev_chain;
use crate::read::view;
use attestmesh_chain::read::{LogFilter, logs_split};

/// The decided deployment of one cluster, computed before anything is sent.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub predicted: Address,
    /// Code is already at `predicted`: this exact cluster exists, nothing to send.
    pub already_deployed: bool,
    /// Guards that tripped but were overridden by `--force`.
    pub forced_warnings: Vec<String>,
    args: attestmesh_chain::bindings::ClusterInitArgs,
    salt: B256,
    factory: Address,
}

/// The clusters the factory deployed, with their mesh CIDRs (from `ClusterDeployed` logs).
pub async fn factory_clusters(
    p: &RpcClient,
    factory: Address,
    from_block: u64,
) -> Result<Vec<(Address, MeshCidr)>, OpsError> {
    let head = p
        .block_number()
        .await
        .map_err(OpsError::chain("reading the block number"))?;
    let filter = LogFilter::new(&[factory], from_block, head).topic(
        0,
        &[IClusterDiamondFactory::ClusterDeployed::SIGNATURE_HASH],
    );
    let logs = logs_split(p, &filter)
        .await
        .map_err(OpsError::chain("scanning ClusterDeployed events"))?;
    let mut out = Vec::new();
    for log in logs {
        let Some(topic) = log.topics.get(1) else {
            continue;
        };
        let cluster = Address::from_word(*topic);
        let c = view(p, cluster, IAttestFacet::meshCidrCall {}, "meshCidr()").await?;
        match MeshCidr::new(c.ip, c.prefix) {
            Ok(cidr) => out.push((cluster, cidr)),
            Err(e) => tracing::warn!(%cluster, "cluster reports an invalid mesh CIDR: {e}"),
        }
    }
    Ok(out)
}

/// Computes the cluster address and runs the guards. Sends nothing.
pub async fn plan_create(
    exec: &Executor,
    d: &Deployments,
    cfg: &ClusterConfig,
    force: bool,
) -> Result<CreatePlan, OpsError> {
    let p = exec.provider();
    crate::infra::require_infra(exec, d).await?;
    let factory = d.contracts.cluster_diamond_factory;
    let args = cfg.init_args(d.contracts.cluster_member_factory);
    let predicted = view(
        p,
        factory,
        IClusterDiamondFactory::predictClusterAddressCall {
            args: args.clone(),
            salt: cfg.salt,
        },
        "ClusterDiamondFactory.predictClusterAddress",
    )
    .await?;
    let already_deployed = p
        .has_code(predicted)
        .await
        .map_err(OpsError::chain(format!("reading code at {predicted}")))?;
    let mut forced_warnings = Vec::new();
    if !already_deployed {
        if cfg.kms_roots.contains(&DEV_KMS_ROOT_ADDRESS) && !is_dev_chain(exec.chain_id()) {
            guard(
                force,
                &mut forced_warnings,
                format!("kms_roots: {}", dev_root_warning(exec.chain_id())),
            )?;
        }
        for (other, cidr) in factory_clusters(p, factory, d.from_block).await? {
            if cidrs_overlap(&cfg.mesh_cidr, &cidr) {
                guard(
                    force,
                    &mut forced_warnings,
                    format!(
                        "mesh_cidr: {} overlaps {cidr} of cluster {other} (same factory): a host \
                         in both clusters could not route both meshes; pick a disjoint range",
                        cfg.mesh_cidr
                    ),
                )?;
            }
        }
    }
    Ok(CreatePlan {
        predicted,
        already_deployed,
        forced_warnings,
        args,
        salt: cfg.salt,
        factory,
    })
}

/// Deploys the planned cluster (nothing when it already exists) and checks it landed.
pub async fn execute_create(exec: &mut Executor, plan: &CreatePlan) -> Result<(), OpsError> {
    if plan.already_deployed {
        return Ok(());
    }
    exec.submit(PlannedTx {
        to: plan.factory,
        value: U256::ZERO,
        data: Bytes::from(
            IClusterDiamondFactory::deployClusterCall {
                args: plan.args.clone(),
                salt: plan.salt,
            }
            .abi_encode(),
        ),
        what: format!("deploy cluster {}", plan.predicted),
    })
    .await?;
    if !exec.is_print()
        && !exec
            .provider()
            .has_code(plan.predicted)
            .await
            .map_err(OpsError::chain("reading the new cluster's code"))?
    {
        return Err(OpsError::Unexpected(format!(
            "deployCluster succeeded but there is no code at the predicted {}",
            plan.predicted
        )));
    }
    Ok(())
}
