//! `cluster indexer register`.

use alloy_primitives::Address;
use attestmesh_ops::indexer::{self, IndexerOutcome};

use super::{Common, parse_b256};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set the IndexerRegistry record agents verify pushes against.
    Register {
        /// The Indexer's public URL (http:// or https://).
        #[arg(long, env = "INDEXER_ENDPOINT")]
        endpoint: String,
        /// The Indexer's code identity (bytes32, e.g. its dstack compose hash).
        #[arg(long, env = "INDEXER_CODE_ID")]
        code_id: String,
        /// The Indexer's Ed25519 push-signing public key (32 bytes hex).
        #[arg(long, env = "INDEXER_PUBKEY")]
        pubkey: String,
        /// IndexerRegistry address (default: the deployments record).
        #[arg(long, env = "INDEXER_REGISTRY")]
        registry: Option<Address>,
    },
}

pub async fn run(common: &Common, c: Command) -> anyhow::Result<()> {
    let Command::Register {
        endpoint,
        code_id,
        pubkey,
        registry,
    } = c;
    let code_id = parse_b256("--code-id", &code_id)?;
    let pubkey = parse_b256("--pubkey", &pubkey)?;
    let mut exec = common.executor().await?;
    let registry = match registry {
        Some(r) => r,
        None => {
            common
                .deployments(exec.chain_id())?
                .contracts
                .indexer_registry
        }
    };
    match indexer::register(&mut exec, registry, &endpoint, code_id, pubkey).await? {
        IndexerOutcome::AlreadyCurrent => eprintln!("the registry already holds this record"),
        IndexerOutcome::Applied => {}
    }
    super::finish(
        &exec,
        "AttestMesh Indexer",
        &format!("setIndexer on {registry}"),
    )
}
