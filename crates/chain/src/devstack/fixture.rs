//! Chain fixtures the integration tests share: a fresh anvil with its RPC client and dev
//! accounts ([`Devchain`]), the artifact directory, and a development cluster (any device, no
//! TCB requirement, trusting the given KMS roots) on freshly deployed infrastructure.
//!
//! Registering members needs a TEE (attestmesh-tee), which this crate must not depend on: that
//! part stays with the callers.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256, U256};
use attestmesh_core::mesh::MeshCidr;

use super::{Anvil, AnvilConfig, StackError};
use crate::bindings::ClusterInitArgs;
use crate::deploy::{self, Artifacts, Infra};
use crate::rpc::RpcClient;

/// The repository root of a crate of this workspace (`<crate>/../..`); pass
/// `env!("CARGO_MANIFEST_DIR")`.
pub fn repo_root(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir).join("../..")
}

/// The compiled contract artifacts: `$ATTESTMESH_ARTIFACTS`, else `<repo>/artifacts`. Each of
/// `required` (contract names) must have its `<Name>.json` there.
pub fn artifacts(repo: &Path, required: &[&str]) -> Result<Artifacts, StackError> {
    let dir = std::env::var_os("ATTESTMESH_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("artifacts"));
    for name in required {
        let path = dir.join(format!("{name}.json"));
        if !path.exists() {
            return Err(StackError::Missing {
                what: "contract artifact",
                path,
                hint: "export the artifacts (artifacts/<Name>.json with abi+bytecode) or set ATTESTMESH_ARTIFACTS",
            });
        }
    }
    Ok(Artifacts::new(dir))
}

/// `ClusterInitArgs` of a development cluster: any device, no TCB requirement, no compose-hash
/// or app-id allowlist, trusting `kms_roots`.
pub fn dev_cluster_args(
    owner: Address,
    cidr: MeshCidr,
    member_factory: Address,
    kms_roots: Vec<Address>,
) -> ClusterInitArgs {
    ClusterInitArgs {
        clusterOwner: owner,
        meshCidrIp: cidr.ip(),
        meshPrefix: cidr.prefix(),
        memberFactory: member_factory,
        kmsRoots: kms_roots,
        composeHashes: vec![],
        devices: vec![],
        appIds: vec![],
        allowAnyDevice: true,
        requireTcbUpToDate: false,
    }
}

/// A development cluster: who owns it, its mesh, the KMS roots it trusts, its factory salt.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub owner: Address,
    pub cidr: MeshCidr,
    pub kms_roots: Vec<Address>,
    pub salt: B256,
}

/// A fresh anvil on loopback (automine unless configured otherwise), its RPC client and its
/// unlocked dev accounts. anvil is killed when this drops.
#[derive(Debug)]
pub struct Devchain {
    pub rpc: RpcClient,
    /// `eth_accounts`: anvil's unlocked, funded dev accounts.
    pub accounts: Vec<Address>,
    pub anvil: Anvil,
}

impl Devchain {
    /// anvil from the repo checkout (or `$ANVIL`), mining on every transaction.
    pub async fn start(repo: &Path) -> Result<Self, StackError> {
        Self::with_config(&AnvilConfig::from_repo(repo)).await
    }

    pub async fn with_config(cfg: &AnvilConfig) -> Result<Self, StackError> {
        let anvil = Anvil::start(cfg).await?;
        let rpc = RpcClient::new(&anvil.url)?;
        let accounts = rpc.accounts().await?;
        Ok(Self {
            rpc,
            accounts,
            anvil,
        })
    }

    pub fn url(&self) -> &str {
        &self.anvil.url
    }

    /// The first dev account, which the fixtures deploy from.
    pub fn deployer(&self) -> Address {
        self.accounts[0]
    }

    /// Deploys the infrastructure (member factory bound to `entry_point`) and one development
    /// cluster on it, from [`Devchain::deployer`].
    pub async fn deploy_dev_cluster(
        &self,
        artifacts: &Artifacts,
        entry_point: Address,
        spec: &ClusterSpec,
    ) -> Result<(Infra, Address), StackError> {
        let from = self.deployer();
        let infra = deploy::deploy_infra(&self.rpc, from, artifacts, entry_point).await?;
        let args = dev_cluster_args(
            spec.owner,
            spec.cidr,
            infra.member_factory,
            spec.kms_roots.clone(),
        );
        let cluster = deploy::deploy_cluster(&self.rpc, from, &infra, args, spec.salt).await?;
        Ok((infra, cluster))
    }

    /// Deploys a `SponsorPaymaster` owned by [`Devchain::deployer`] that accepts `signer`'s
    /// signatures, with `deposit` wei at the EntryPoint.
    pub async fn deploy_paymaster(
        &self,
        artifacts: &Artifacts,
        entry_point: Address,
        signer: Address,
        deposit: U256,
    ) -> Result<Address, StackError> {
        let from = self.deployer();
        super::deploy_sponsor_paymaster(
            &self.rpc,
            from,
            artifacts,
            entry_point,
            from,
            signer,
            deposit,
        )
        .await
    }

    /// Lets `who` send unsigned transactions (`anvil_impersonateAccount`) and sets its balance.
    pub async fn impersonate(&self, who: Address, balance: U256) -> Result<(), StackError> {
        self.rpc
            .call::<serde_json::Value>("anvil_impersonateAccount", serde_json::json!([who]))
            .await?;
        self.rpc
            .call::<serde_json::Value>("anvil_setBalance", serde_json::json!([who, balance]))
            .await?;
        Ok(())
    }

    /// From now on a block every `secs` seconds, like a real chain.
    pub async fn set_interval_mining(&self, secs: u64) -> Result<(), StackError> {
        self.rpc
            .call::<serde_json::Value>("evm_setIntervalMining", serde_json::json!([secs]))
            .await?;
        Ok(())
    }
}
