//! Creation bytecode of the contracts `deploy-infra` deploys.
//!
//! Compiled into the binary from `artifacts/` by default: CREATE2 addresses are a function of the
//! exact init code, so an operator binary must carry the very bytecode it was released with —
//! otherwise two operators (or two runs) could compute different "canonical" addresses. A
//! directory can still be given (`--artifacts`) to deploy a locally rebuilt set.

use std::path::PathBuf;

use attestmesh_chain::deploy::Artifacts;

use crate::error::OpsError;

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../artifacts/", $name, ".json")))),*]
    };
}

const EMBEDDED: &[(&str, &str)] = embedded!(
    "DiamondCutFacet",
    "DiamondLoupeFacet",
    "OwnershipFacet",
    "AttestFacet",
    "MessageFacet",
    "NetworkFacet",
    "DstackFacet",
    "ClusterInit",
    "ClusterDiamondFactory",
    "ClusterMemberFactory",
    "IndexerRegistry",
    "SponsorPaymaster",
    "EntryPointV07",
);

/// Where bytecode comes from.
#[derive(Debug, Clone)]
pub enum ArtifactSource {
    /// The artifacts this binary was built with.
    Embedded,
    /// `<dir>/<Name>.json` (`{abi, bytecode}` as `tools/export-artifacts` writes them).
    Dir(PathBuf),
}

impl ArtifactSource {
    /// The creation bytecode of `name`.
    pub fn bytecode(&self, name: &str) -> Result<Vec<u8>, OpsError> {
        match self {
            ArtifactSource::Dir(dir) => Artifacts::new(dir)
                .bytecode(name)
                .map_err(|e| OpsError::setting("--artifacts", e.to_string())),
            ArtifactSource::Embedded => {
                let text = EMBEDDED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| {
                        OpsError::Unexpected(format!("no embedded artifact named {name}"))
                    })?;
                let bad = |d: &str| OpsError::Unexpected(format!("embedded artifact {name}: {d}"));
                let v: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
                let code = v["bytecode"]
                    .as_str()
                    .or_else(|| v["bytecode"]["object"].as_str())
                    .ok_or_else(|| bad("no bytecode"))?;
                let bytes = alloy_primitives::hex::decode(code.trim_start_matches("0x"))
                    .map_err(|e| bad(&e.to_string()))?;
                if bytes.is_empty() {
                    return Err(bad("empty bytecode"));
                }
                Ok(bytes)
            }
        }
    }
}
