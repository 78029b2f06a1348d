//! `attestmesh devtee`: serve the dstack guest-agent API on a unix socket, backed by the local
//! KMS emulation (DESIGN §4.2). Development only: its quotes are simulated and its default KMS
//! root key is public.

use std::path::PathBuf;

use alloy_primitives::{Address, B256};
use anyhow::Context;
use attestmesh_tee::devtee::{self, DevteeConfig};
use attestmesh_tee::kms;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Unix socket to serve the guest-agent API on.
    #[arg(long, env = "DEVTEE_SOCKET")]
    pub socket: PathBuf,

    /// The dstack app id to emulate (= the node's ClusterMember address).
    #[arg(long, env = "DEVTEE_APP_ID")]
    pub app_id: Address,

    /// KMS root secret (32 bytes hex). Defaults to the published development key, which a
    /// production cluster must never allowlist.
    #[arg(long, env = "DEVTEE_KMS_ROOT_KEY", hide_env_values = true)]
    pub kms_root_key: Option<String>,

    /// Compose hash reported by /Info (32 bytes hex).
    #[arg(long, env = "DEVTEE_COMPOSE_HASH")]
    pub compose_hash: Option<B256>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let kms_root_key = match &args.kms_root_key {
        None => {
            tracing::warn!(
                root = %kms::DEV_KMS_ROOT_ADDRESS,
                "devtee uses the PUBLISHED development KMS root key: never allowlist it on a production cluster"
            );
            zeroize::Zeroizing::new(kms::DEV_KMS_ROOT_KEY)
        }
        Some(hex) => parse_key(hex).context("--kms-root-key / DEVTEE_KMS_ROOT_KEY")?,
    };
    let config = DevteeConfig {
        socket: args.socket.clone(),
        app_id: args.app_id,
        kms_root_key,
        compose_hash: args
            .compose_hash
            .unwrap_or_else(devtee::default_compose_hash),
    };
    let server = devtee::Devtee::bind(config)
        .await
        .with_context(|| format!("starting devtee on {}", args.socket.display()))?;
    tracing::info!(
        socket = %args.socket.display(),
        app_id = %args.app_id,
        kms_root = %server.kms_root_address(),
        "devtee serving the dstack guest-agent API (simulated TEE)"
    );
    server.run(super::shutdown_signal()).await?;
    tracing::info!("devtee stopped");
    Ok(())
}

fn parse_key(hex: &str) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
    let t = hex.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let bytes = zeroize::Zeroizing::new(
        alloy_primitives::hex::decode(t).map_err(|e| anyhow::anyhow!("not hex: {e}"))?,
    );
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        anyhow::bail!("must be 32 bytes, got {}", bytes.len());
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}
