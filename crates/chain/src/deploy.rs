//! Deploys the AttestMesh infrastructure (facets, initializer, cluster factory, member factory),
//! clusters and members from the compiled artifacts the build exports to
//! `artifacts/<ContractName>.json` (`{abi, bytecode}`).

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use alloy_sol_types::{SolCall, SolValue};

use crate::bindings::{ClusterInitArgs, Facets, IClusterDiamondFactory, IClusterMemberFactory};
use crate::rpc::{RpcClient, RpcError};

/// The canonical ERC-4337 v0.7 EntryPoint.
pub const ENTRY_POINT_V07: Address =
    alloy_primitives::address!("0x0000000071727De22E5E9d8BAf0edAc6f37da032");

/// Deployment failures.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot read artifact {path}: {source}")]
    ReadArtifact {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("artifact {path} is malformed: {detail}")]
    BadArtifact { path: PathBuf, detail: String },
    #[error("deploying {name}: {source}")]
    Deploy {
        name: String,
        #[source]
        source: RpcError,
    },
    #[error("deploying {0}: the receipt has no contract address")]
    NoAddress(String),
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: RpcError,
    },
    #[error(transparent)]
    View(#[from] crate::read::ViewError),
}

/// A directory of `<Name>.json` artifacts.
#[derive(Debug, Clone)]
pub struct Artifacts {
    dir: PathBuf,
}

impl Artifacts {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creation bytecode of `name`; accepts `"bytecode": "0x.."` and forge's
    /// `"bytecode": {"object": "0x.."}`. Unlinked library placeholders are refused.
    pub fn bytecode(&self, name: &str) -> Result<Vec<u8>, DeployError> {
        let path = self.dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|source| DeployError::ReadArtifact {
            path: path.clone(),
            source,
        })?;
        let bad = |detail: String| DeployError::BadArtifact {
            path: path.clone(),
            detail,
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let code = v["bytecode"]
            .as_str()
            .or_else(|| v["bytecode"]["object"].as_str())
            .ok_or_else(|| bad("no bytecode".into()))?;
        if code.contains("__$") {
            return Err(bad("bytecode has unlinked library placeholders".into()));
        }
        let bytes = alloy_primitives::hex::decode(code.trim_start_matches("0x"))
            .map_err(|e| bad(e.to_string()))?;
        if bytes.is_empty() {
            return Err(bad(
                "empty bytecode (abstract contract or interface?)".into()
            ));
        }
        Ok(bytes)
    }
}

/// Deploys `name` with ABI-encoded constructor arguments.
pub async fn deploy(
    rpc: &RpcClient,
    from: Address,
    artifacts: &Artifacts,
    name: &str,
    ctor_args: &[u8],
) -> Result<Address, DeployError> {
    let mut code = artifacts.bytecode(name)?;
    code.extend_from_slice(ctor_args);
    let receipt = rpc
        .transact(from, None, &code)
        .await
        .map_err(|source| DeployError::Deploy {
            name: name.to_string(),
            source,
        })?;
    receipt
        .contract_address
        .ok_or_else(|| DeployError::NoAddress(name.to_string()))
}

/// The shared, cluster-independent contracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infra {
    pub facets: Facets,
    pub cluster_init: Address,
    pub diamond_factory: Address,
    pub member_factory: Address,
}

/// Deploys the seven facets, the initializer, the cluster factory and the member factory.
pub async fn deploy_infra(
    rpc: &RpcClient,
    from: Address,
    artifacts: &Artifacts,
    entry_point: Address,
) -> Result<Infra, DeployError> {
    let facet = |name: &'static str| deploy(rpc, from, artifacts, name, &[]);
    let facets = Facets {
        diamondCut: facet("DiamondCutFacet").await?,
        diamondLoupe: facet("DiamondLoupeFacet").await?,
        ownership: facet("OwnershipFacet").await?,
        attest: facet("AttestFacet").await?,
        message: facet("MessageFacet").await?,
        network: facet("NetworkFacet").await?,
        dstack: facet("DstackFacet").await?,
    };
    let cluster_init = deploy(rpc, from, artifacts, "ClusterInit", &[]).await?;
    let diamond_factory = deploy(
        rpc,
        from,
        artifacts,
        "ClusterDiamondFactory",
        &(facets.clone(), cluster_init).abi_encode_params(),
    )
    .await?;
    let member_factory = deploy(
        rpc,
        from,
        artifacts,
        "ClusterMemberFactory",
        &entry_point.abi_encode(),
    )
    .await?;
    Ok(Infra {
        facets,
        cluster_init,
        diamond_factory,
        member_factory,
    })
}

/// Deploys a cluster through the factory and returns its address.
pub async fn deploy_cluster(
    rpc: &RpcClient,
    from: Address,
    infra: &Infra,
    args: ClusterInitArgs,
    salt: B256,
) -> Result<Address, DeployError> {
    let predicted = crate::read::view(
        rpc,
        infra.diamond_factory,
        IClusterDiamondFactory::predictClusterAddressCall {
            args: args.clone(),
            salt,
        },
        crate::read::BlockTag::Latest,
    )
    .await?;
    let call = IClusterDiamondFactory::deployClusterCall { args, salt };
    rpc.transact(from, Some(infra.diamond_factory), &call.abi_encode())
        .await
        .map_err(|source| DeployError::Call {
            what: "deployCluster",
            source,
        })?;
    Ok(predicted)
}

/// Deploys (or finds) the ClusterMember for `(cluster, salt)`.
pub async fn deploy_member(
    rpc: &RpcClient,
    from: Address,
    infra: &Infra,
    cluster: Address,
    salt: B256,
) -> Result<Address, DeployError> {
    let predicted = crate::read::view(
        rpc,
        infra.member_factory,
        IClusterMemberFactory::predictMemberAddressCall { cluster, salt },
        crate::read::BlockTag::Latest,
    )
    .await?;
    let call = IClusterMemberFactory::deployMemberCall { cluster, salt };
    rpc.transact(from, Some(infra.member_factory), &call.abi_encode())
        .await
        .map_err(|source| DeployError::Call {
            what: "deployMember",
            source,
        })?;
    Ok(predicted)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn artifact_formats() {
        let dir = std::env::temp_dir().join(format!("am-artifacts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("A.json"), r#"{"abi":[],"bytecode":"0x6001"}"#).unwrap();
        std::fs::write(
            dir.join("B.json"),
            r#"{"abi":[],"bytecode":{"object":"0x6002"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("C.json"),
            r#"{"abi":[],"bytecode":"0x60__$abc$__"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("D.json"), r#"{"abi":[],"bytecode":"0x"}"#).unwrap();
        let a = Artifacts::new(&dir);
        assert_eq!(a.bytecode("A").unwrap(), vec![0x60, 0x01]);
        assert_eq!(a.bytecode("B").unwrap(), vec![0x60, 0x02]);
        assert!(matches!(
            a.bytecode("C"),
            Err(DeployError::BadArtifact { .. })
        ));
        assert!(matches!(
            a.bytecode("D"),
            Err(DeployError::BadArtifact { .. })
        ));
        assert!(matches!(
            a.bytecode("Missing"),
            Err(DeployError::ReadArtifact { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
