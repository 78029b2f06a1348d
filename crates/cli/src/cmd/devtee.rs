//! `attestmesh devtee`: serve the dstack guest-agent API on a unix socket, backed by the local
//! KMS emulation (DESIGN §4.2). Development only: its quotes are simulated and its default KMS
//! root key is public.

use std::path::PathBuf;

use alloy_primitives::Address;
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

    /// The app-compose.json to report and measure (its SHA-256 is the compose hash, as on
    /// dstack; `attestmesh cluster app-compose` writes one). Default: a built-in placeholder
    /// manifest whose hash the devnet allowlists.
    #[arg(long, env = "DEVTEE_APP_COMPOSE")]
    pub app_compose: Option<PathBuf>,
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
    let app_compose = match &args.app_compose {
        None => devtee::default_app_compose(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--app-compose {}", path.display()))?;
            attestmesh_tee::compose::parse(text.as_bytes()).with_context(|| {
                format!(
                    "--app-compose {}: not an app-compose manifest",
                    path.display()
                )
            })?;
            text
        }
    };
    let config = DevteeConfig {
        socket: args.socket.clone(),
        app_id: args.app_id,
        kms_root_key,
        app_compose,
    };
    let compose_hash = config.compose_hash();
    let server = devtee::Devtee::bind(config)
        .await
        .with_context(|| format!("starting devtee on {}", args.socket.display()))?;
    tracing::info!(
        socket = %args.socket.display(),
        app_id = %args.app_id,
        kms_root = %server.kms_root_address(),
        %compose_hash,
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
