//! `attestmesh`: one binary, every role as a subcommand.
//!
//! Adding a subcommand = one file in `cmd/` exposing `Args` and `async fn run(Args)`, one variant
//! in [`Command`], one arm in [`dispatch`].

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "attestmesh",
    version,
    about = "AttestMesh: attested mesh networking for confidential VMs"
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "LOG", default_value = "info", global = true)]
    log: String,

    /// Log output: `json` (one object per line, for log shippers) or `pretty` (human-readable).
    // The node agent's own `--log-format` has the same id and type: clap then keeps one setting
    // for both levels (`attestmesh --log-format json node` = `attestmesh node --log-format json`).
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "pretty",
        global = true
    )]
    log_format: attestmesh_node::config::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Operator commands: infrastructure, clusters, allowlists, members, Indexer record (real chains).
    Cluster(cmd::cluster::Args),
    /// Local stand-in for the dstack guest agent and KMS (development only).
    Devtee(cmd::devtee::Args),
    /// Dev stand-in for the dstack gateway: SNI routing with TLS passthrough (development only).
    Gateway(cmd::gateway::Args),
    /// ERC-7677 paymaster service and sponsorship webhook paying the nodes' gas (DESIGN §10.1).
    Sponsor(cmd::sponsor::Args),
    /// The attested Indexer: signed wake-up pushes, key export, registry record (DESIGN §9).
    Indexer(cmd::indexer::Args),
    /// The per-node agent: registration, mesh, heartbeats, CSK, app API (DESIGN §5–§11).
    Node(cmd::node::Args),
    /// The one-command local devnet: chain, services and N nodes in network namespaces (DESIGN §12).
    #[cfg(feature = "devnet")]
    Devnet(cmd::devnet::Args),
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Cluster(args) => cmd::cluster::run(args).await,
        Command::Devtee(args) => cmd::devtee::run(args).await,
        Command::Gateway(args) => cmd::gateway::run(args).await,
        Command::Sponsor(args) => cmd::sponsor::run(args).await,
        Command::Indexer(args) => cmd::indexer::run(args).await,
        Command::Node(args) => cmd::node::run(args).await,
        #[cfg(feature = "devnet")]
        Command::Devnet(args) => cmd::devnet::run(args).await,
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        attestmesh_node::config::LogFormat::Json => logger.json().with_ansi(false).init(),
        attestmesh_node::config::LogFormat::Pretty => logger
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match dispatch(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("attestmesh: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
