//! `attestmesh gateway`: the dev stand-in for the dstack gateway (DESIGN §6.4). Routes each TLS
//! connection by its SNI: `<app id>-<port>s.<domain>` is spliced to the node without terminating
//! TLS; `<app id>-<port>.<domain>` is terminated with `--tls-cert-file`/`--tls-key-file` (a dev
//! CA's `*.<domain>` certificate) and forwarded in the clear. Local runs and the lab only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use attestmesh_net::gateway::{GatewayConfig, RouteTable, Routes, run_gateway};

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

    /// A route file: `<app id> <node address>` per line, `#` comments. Re-read when it changes
    /// (checked every second), as dstack's gateway learns new CVMs; a file that no longer
    /// parses keeps the routes in force and logs why.
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

/// The file's routes plus the `--route` ones (which win).
fn load_routes(args: &Args) -> anyhow::Result<Routes> {
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
    Ok(routes)
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Replaces the table whenever the route file's modification time changes.
async fn watch_route_file(args: Args, table: RouteTable) {
    let Some(path) = args.route_file.clone() else {
        return;
    };
    let mut seen = modified(&path);
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match load_routes(&args) {
            Ok(routes) => {
                tracing::info!(file = %path.display(), "routes reloaded");
                table.replace(routes);
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "route file not reloaded; the previous routes stay"
            ),
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let routes = load_routes(&args)?;
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
    let table = RouteTable::new(routes);
    let config = GatewayConfig {
        listen: args.listen,
        domain: args.domain.clone(),
        routes: table.clone(),
        tls,
    };
    tracing::info!(listen = %args.listen, domain = %args.domain, "dev gateway starting");
    let (listen, domain) = (args.listen, args.domain.clone());
    let watcher = tokio::spawn(watch_route_file(args, table));
    let served = run_gateway(config, super::shutdown_signal()).await;
    watcher.abort();
    served.with_context(|| format!("gateway on {listen} ({domain})"))?;
    tracing::info!("dev gateway stopped");
    Ok(())
}
