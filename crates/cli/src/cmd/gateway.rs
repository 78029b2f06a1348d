//! `attestmesh gateway`: the dev stand-in for the dstack gateway (DESIGN §6.4). Routes each TLS
//! connection by its SNI: `<app id>-<port>s.<domain>` is spliced to the node without terminating
//! TLS; `<app id>-<port>.<domain>` is terminated with `--tls-cert-file`/`--tls-key-file` (a dev
//! CA's `*.<domain>` certificate) and forwarded in the clear. Local runs and the lab only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use attestmesh_net::gateway::{GatewayConfig, Routes, run_gateway};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to accept TLS connections on.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:443")]
    pub listen: SocketAddr,

    /// The gateway domain: names are `<app id>-<port>s.<domain>`.
    #[arg(long, env = "GATEWAY_DOMAIN")]
    pub domain: String,

    /// A static route `<app id>=<node address>`; repeatable.
    #[arg(long = "route", env = "GATEWAY_ROUTES", value_delimiter = ',')]
    pub routes: Vec<String>,

    /// A route file: `<app id> <node address>` per line, `#` comments.
    #[arg(long, env = "GATEWAY_ROUTE_FILE")]
    pub route_file: Option<PathBuf>,

    /// PEM certificate chain for `*.<domain>`: enables the terminating form
    /// `<app id>-<port>.<domain>` (with --tls-key-file).
    #[arg(long, env = "GATEWAY_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "GATEWAY_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut routes = match &args.route_file {
        Some(path) => {
            Routes::load(path).with_context(|| format!("reading routes from {}", path.display()))?
        }
        None => Routes::new(),
    };
    for r in &args.routes {
        let (id, addr) = r
            .split_once('=')
            .with_context(|| format!("--route {r}: expected <app id>=<address>"))?;
        let addr: IpAddr = addr
            .parse()
            .with_context(|| format!("--route {r}: bad address"))?;
        routes.insert(id, addr);
    }
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let read = |p: &PathBuf, what: &str| {
                std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
            };
            Some(
                attestmesh_net::tls::terminating_server_config(
                    &read(cert, "certificate")?,
                    &read(key, "private key")?,
                )
                .context("--tls-cert-file / --tls-key-file")?,
            )
        }
        _ => None,
    };
    let config = GatewayConfig {
        listen: args.listen,
        domain: args.domain.clone(),
        routes,
        tls,
    };
    tracing::info!(listen = %args.listen, domain = %args.domain, "dev gateway starting");
    run_gateway(config, super::shutdown_signal()).await?;
    tracing::info!("dev gateway stopped");
    Ok(())
}
