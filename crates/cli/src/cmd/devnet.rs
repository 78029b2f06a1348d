//! `attestmesh devnet up|add|status|down`: the one-command local devnet (DESIGN §12). All the work
//! is in `attestmesh_lab::devnet`; this file turns flags into its settings and prints progress,
//! the summary and the status table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use attestmesh_lab::devnet::{self, Devnet, UpConfig};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Start anvil, EntryPoint, contracts and a cluster, the sponsor service, alto, the Indexer,
    /// the dev gateway and N nodes (devtee + agent) in network namespaces; wait until healthy.
    Up(UpArgs),
    /// Add one node (namespace, member contract, devtee, agent) to the running devnet and wait
    /// until it is healthy (the "a node joins later" path).
    Add(AddArgs),
    /// Show the devnet: chain, services, and every node's phase (`--json` for scripts).
    Status(StatusArgs),
    /// Stop every process and remove every namespace, interface and the devnet directory.
    Down(DirArgs),
}

#[derive(Debug, clap::Args)]
pub struct DirArgs {
    /// The devnet directory (state, logs, sockets).
    #[arg(long, env = "DEVNET_DIR", default_value = ".devnet")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DirArgs,
    /// Machine-readable output: RPC URL, cluster and infra addresses, per-node details.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub dir: DirArgs,

    /// Seconds to wait for the new node to become healthy.
    #[arg(long, env = "DEVNET_TIMEOUT_SECS", default_value_t = 180)]
    pub timeout_secs: u64,
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DirArgs,

    /// Number of nodes.
    #[arg(long, env = "DEVNET_NODES", default_value_t = 3)]
    pub nodes: usize,

    /// Seconds per block (Base mines every 2 s).
    #[arg(long, env = "DEVNET_BLOCK_TIME", default_value_t = 2)]
    pub block_time: u64,

    /// The repository checkout holding artifacts/ and node_modules/ (default: found upward
    /// from the current directory, then from this binary's location).
    #[arg(long, env = "ATTESTMESH_REPO")]
    pub repo: Option<PathBuf>,

    /// Start everything except the agents.
    #[arg(long)]
    pub no_agents: bool,

    /// Agents' heartbeat interval in milliseconds.
    #[arg(long, env = "DEVNET_HEARTBEAT_INTERVAL_MS", default_value_t = 2000)]
    pub heartbeat_interval_ms: u64,

    /// Seconds to wait for every node to become healthy.
    #[arg(long, env = "DEVNET_TIMEOUT_SECS", default_value_t = 180)]
    pub timeout_secs: u64,

    /// On failure, keep what was started (for reading logs) instead of tearing it down.
    #[arg(long)]
    pub keep_on_failure: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Up(a) => up(a).await,
        Sub::Add(a) => add(a).await,
        Sub::Status(a) => {
            let st = devnet::status(&a.dir.dir).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", devnet::render_status(&st));
            }
            Ok(())
        }
        Sub::Down(a) => {
            let dir = a.dir;
            let r = tokio::task::spawn_blocking(move || devnet::down(&dir)).await??;
            if r.stopped.is_empty() && r.namespaces.is_empty() && !r.removed_dir {
                println!("no devnet to stop");
            } else {
                println!(
                    "stopped {} processes, removed namespaces [{}]{}; nothing left behind",
                    r.stopped.len(),
                    r.namespaces.join(" "),
                    if r.links.is_empty() {
                        String::new()
                    } else {
                        format!(" and links [{}]", r.links.join(" "))
                    }
                );
            }
            Ok(())
        }
    }
}

fn repo_root(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(r) = explicit {
        return std::fs::canonicalize(&r).with_context(|| format!("--repo {}", r.display()));
    }
    let cwd = std::env::current_dir()?;
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    devnet::find_repo(&cwd)
        .or_else(|| exe_dir.as_deref().and_then(devnet::find_repo))
        .context(
            "cannot find the repository (a directory with artifacts/ and package.json) above the \
             current directory: run from the checkout or pass --repo",
        )
}

async fn up(a: UpArgs) -> anyhow::Result<()> {
    if !devnet::is_root() {
        // Checked before anything else so the message is the first and only thing printed.
        bail!("{}", devnet::DevnetError::NeedsRoot);
    }
    let repo = repo_root(a.repo)?;
    let exe = std::env::current_exe().context("locating the attestmesh binary")?;
    let dir = if a.dir.dir.is_absolute() {
        a.dir.dir.clone()
    } else {
        std::env::current_dir()?.join(&a.dir.dir)
    };
    let mut cfg = UpConfig::new(repo, exe, dir.clone());
    cfg.nodes = a.nodes;
    cfg.block_time = a.block_time;
    cfg.agents = !a.no_agents;
    cfg.heartbeat_interval_ms = a.heartbeat_interval_ms;
    cfg.health_timeout = Duration::from_secs(a.timeout_secs);
    let progress = |line: &str| println!("{line}");
    let dn = Devnet::up(cfg, a.keep_on_failure, &progress).await?;
    let st = devnet::status(&dn.state.dir).await?;
    println!();
    print!("{}", devnet::render_status(&st));
    if let Some(ms) = dn.state.convergence_ms {
        println!(
            "\nall {} nodes healthy {:.1} s after the agents started",
            dn.state.nodes.len(),
            ms as f64 / 1000.0
        );
    }
    println!(
        "\nlogs in {}; `attestmesh devnet status [--json] --dir {}`; `attestmesh devnet down --dir {}`",
        dn.state.dir.join("logs").display(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

async fn add(a: AddArgs) -> anyhow::Result<()> {
    if !devnet::is_root() {
        bail!("{}", devnet::DevnetError::NeedsRoot);
    }
    let dir = a.dir.dir;
    let mut dn = Devnet::open(&dir)?;
    let i = dn.state.nodes.len();
    println!("adding node n{i} to {}", dn.state.dir.display());
    // A node that fails half-way stays recorded in the state, so `down` still removes it.
    let i = dn.add_node().await?;
    let progress = |line: &str| println!("{line}");
    let took = dn
        .wait_healthy(&[i], Duration::from_secs(a.timeout_secs), &progress)
        .await?;
    let st = devnet::status(&dn.state.dir).await?;
    let row: Vec<_> = st
        .nodes
        .into_iter()
        .filter(|n| n.name == format!("n{i}"))
        .collect();
    println!();
    print!("{}", devnet::render_nodes(&row));
    println!(
        "\nn{i} healthy {:.1} s after its agent started",
        took.as_secs_f64()
    );
    Ok(())
}
