//! Member contracts (DESIGN §3.7): one per node, the node's dstack app id.
//!
//! Two ways to get one: the member factory (CREATE2 proxy bound at construction), or "path A":
//! a stock dstack app proxy that a hosted dstack KMS minted is upgraded in place into a
//! ClusterMember. Path A must upgrade and bind in ONE call (`upgradeToAndCall` with
//! `reinitializeFromDstackApp(cluster)`): between a bare upgrade and a separate bind, anyone could
//! bind the proxy to a cluster of their choosing.

use alloy_primitives::{Address, B256, Bytes, U256, b256};
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::{
    IClusterDiamondFactory, IClusterMember, IClusterMemberFactory, IDstackApp, IDstackFacet,
};

use crate::cluster::require_cluster_owner;
use crate::deployments::Deployments;
use crate::error::OpsError;
use crate::exec::{Executor, PlannedTx};
use crate::read::view;

/// ERC-1967 implementation slot: `bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1)`.
pub const ERC1967_IMPLEMENTATION_SLOT: B256 =
    b256!("0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc");

async fn require_code(exec: &Executor, what: &str, address: Address) -> Result<(), OpsError> {
    let ok = exec
        .provider()
        .has_code(address)
        .await
        .map_err(OpsError::chain(format!("reading code at {address}")))?;
    if ok {
        Ok(())
    } else {
        Err(OpsError::NoCode {
            what: what.into(),
            address,
            chain_id: exec.chain_id(),
            hint: "",
        })
    }
}

/// Result of `member deploy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDeploy {
    pub predicted: Address,
    pub already_deployed: bool,
}

/// The member factory's address for `(cluster, salt)`; checks the cluster is one of ours.
pub async fn plan_member_deploy(
    exec: &Executor,
    d: &Deployments,
    cluster: Address,
    salt: B256,
    force: bool,
) -> Result<MemberDeploy, OpsError> {
    crate::infra::require_infra(exec, d).await?;
    require_code(exec, "cluster", cluster).await?;
    let p = exec.provider();
    let ours = view(
        p,
        d.contracts.cluster_diamond_factory,
        IClusterDiamondFactory::isDeployedClusterCall { cluster },
        "isDeployedCluster",
    )
    .await?;
    if !ours && !force {
        return Err(OpsError::Refused(format!(
            "cluster {cluster} was not deployed by this chain's ClusterDiamondFactory {}: its \
             members would not be sponsored and the Indexer would not see it",
            d.contracts.cluster_diamond_factory
        )));
    }
    let predicted = view(
        p,
        d.contracts.cluster_member_factory,
        IClusterMemberFactory::predictMemberAddressCall { cluster, salt },
        "predictMemberAddress",
    )
    .await?;
    let already_deployed = p
        .has_code(predicted)
        .await
        .map_err(OpsError::chain(format!("reading code at {predicted}")))?;
    Ok(MemberDeploy {
        predicted,
        already_deployed,
    })
}

/// Deploys the planned member (nothing when it exists).
pub async fn execute_member_deploy(
    exec: &mut Executor,
    d: &Deployments,
    cluster: Address,
    salt: B256,
    plan: &MemberDeploy,
) -> Result<(), OpsError> {
    if plan.already_deployed {
        return Ok(());
    }
    exec.submit(PlannedTx {
        to: d.contracts.cluster_member_factory,
        value: U256::ZERO,
        data: Bytes::from(IClusterMemberFactory::deployMemberCall { cluster, salt }.abi_encode()),
        what: format!("deploy member {} for cluster {cluster}", plan.predicted),
    })
    .await?;
    if !exec.is_print() {
        require_code(exec, "member (just deployed)", plan.predicted).await?;
    }
    Ok(())
}

/// What `member bind` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOutcome {
    /// The proxy was upgraded and bound (or planned to be).
    pub upgraded: bool,
    /// `addAllowedAppId` was sent (or planned).
    pub allowlisted: bool,
}

/// Path A: turns the stock dstack app proxy `app_id` into a ClusterMember of `cluster`, then
/// allowlists it (unless `allowlist` is false), so the node can register. Idempotent.
pub async fn bind(
    exec: &mut Executor,
    d: &Deployments,
    app_id: Address,
    cluster: Address,
    allowlist: bool,
) -> Result<BindOutcome, OpsError> {
    require_code(exec, "dstack app (--app-id)", app_id).await?;
    require_code(exec, "cluster", cluster).await?;
    let p = exec.provider().clone();
    let member_impl = d.contracts.cluster_member_implementation;
    require_code(exec, "ClusterMember implementation", member_impl).await?;
    let slot = p
        .storage_at(app_id, ERC1967_IMPLEMENTATION_SLOT)
        .await
        .map_err(OpsError::chain(
            "reading the app's ERC-1967 implementation slot",
        ))?;
    let current_impl = Address::from_word(slot);
    if current_impl == Address::ZERO {
        return Err(OpsError::Unexpected(format!(
            "{app_id} is not an ERC-1967 proxy (empty implementation slot): path A needs the \
             stock dstack app proxy the KMS registered"
        )));
    }
    let mut outcome = BindOutcome {
        upgraded: false,
        allowlisted: false,
    };
    if current_impl == member_impl {
        let bound = view(
            &p,
            app_id,
            IClusterMember::clusterCall {},
            "member cluster()",
        )
        .await?;
        if bound != cluster {
            return Err(OpsError::Unexpected(format!(
                "{app_id} is already a ClusterMember bound to cluster {bound}; a member binds once"
            )));
        }
    } else {
        let app_owner = view(&p, app_id, IDstackApp::ownerCall {}, "dstack app owner()").await?;
        if let Some(sender) = exec.sender()
            && sender != app_owner
        {
            return Err(OpsError::NotOwner {
                what: format!("upgrading dstack app {app_id}"),
                owner: app_owner,
                sender,
            });
        }
        let init = IClusterMember::reinitializeFromDstackAppCall { cluster }.abi_encode();
        exec.submit(PlannedTx {
            to: app_id,
            value: U256::ZERO,
            data: Bytes::from(
                IDstackApp::upgradeToAndCallCall {
                    newImplementation: member_impl,
                    data: Bytes::from(init),
                }
                .abi_encode(),
            ),
            what: format!(
                "upgrade dstack app {app_id} to ClusterMember {member_impl} bound to {cluster}"
            ),
        })
        .await?;
        outcome.upgraded = true;
        if !exec.is_print() {
            let bound = view(
                &p,
                app_id,
                IClusterMember::clusterCall {},
                "member cluster()",
            )
            .await?;
            if bound != cluster {
                return Err(OpsError::Unexpected(format!(
                    "after the upgrade {app_id} reports cluster {bound}, expected {cluster}"
                )));
            }
        }
    }
    if allowlist {
        let allowed = view(
            &p,
            cluster,
            IDstackFacet::allowedAppIdsCall { appId: app_id },
            "allowedAppIds",
        )
        .await?;
        if !allowed {
            require_cluster_owner(exec, cluster, "allowlisting the app id").await?;
            exec.submit(PlannedTx {
                to: cluster,
                value: U256::ZERO,
                data: Bytes::from(IDstackFacet::addAllowedAppIdCall { appId: app_id }.abi_encode()),
                what: format!("addAllowedAppId({app_id}) on cluster {cluster}"),
            })
            .await?;
            outcome.allowlisted = true;
        }
    }
    Ok(outcome)
}
