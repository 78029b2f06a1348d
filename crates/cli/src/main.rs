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

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Local stand-in for the dstack guest agent and KMS (development only).
    Devtee(cmd::devtee::Args),
    /// Dev stand-in for the dstack gateway: SNI routing with TLS passthrough (development only).
    Gateway(cmd::gateway::Args),
    /// ERC-7677 paymaster service and sponsorship webhook paying the nodes' gas (DESIGN §10.1).
    Sponsor(cmd::sponsor::Args),
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Devtee(args) => cmd::devtee::run(args).await,
        Command::Gateway(args) => cmd::gateway::run(args).await,
        Command::Sponsor(args) => cmd::sponsor::run(args).await,
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("attestmesh: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
