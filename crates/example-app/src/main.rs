//! `attestmesh-example`: a small application next to an AttestMesh agent (see the crate docs
//! and examples/README.md). Every subcommand is a few calls into the library; this file only
//! parses arguments and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use attestmesh_example_app::agent::{self, Agent};
use attestmesh_example_app::demo::{self, DemoConfig};
use attestmesh_example_app::echo::{self, EchoServer};
use attestmesh_example_app::{PeerSpec, appkey};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "attestmesh-example",
    version,
    about = "Example application on the AttestMesh app API"
)]
struct Cli {
    /// The agent's app API socket.
    #[arg(long, env = "AGENT_SOCKET", default_value = agent::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Wait until the agent reports phase healthy (registered, meshed, CSK held).
    WaitHealthy {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// List the other members: id, mesh IP, liveness.
    Peers,
    /// Send a sealed message to a peer (sealed to its on-chain key, submitted on chain).
    Send {
        /// The recipient: member id (hex), a unique prefix of it, or its mesh IP.
        #[arg(long)]
        to: PeerSpec,
        #[arg(long)]
        text: String,
    },
    /// Print messages addressed to this node.
    Recv {
        /// Stop after this many messages.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Replay from this block first (0: only new messages).
        #[arg(long, default_value_t = 0)]
        from_block: u64,
        /// Give up after this many seconds (0: wait forever).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// Derive the application key from the CSK (HKDF-SHA256) and print its fingerprint.
    AppKey {
        /// HKDF info: one per purpose.
        #[arg(long, default_value = "app-key")]
        info: String,
    },
    /// Serve the authenticated echo on this node's mesh IP.
    ServeEcho {
        #[arg(long, default_value_t = echo::DEFAULT_PORT)]
        port: u16,
        /// Exit after this many successful exchanges (0: serve until interrupted).
        #[arg(long, default_value_t = 0)]
        count: usize,
    },
    /// Run the authenticated echo against a peer's mesh IP.
    PingPeer {
        /// Member id (hex), a unique prefix of it, or mesh IP.
        #[arg(long)]
        peer: PeerSpec,
        #[arg(long, default_value_t = echo::DEFAULT_PORT)]
        port: u16,
        /// Keep retrying while the peer is unreachable for this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// All of the above against one peer; run it on both nodes at once.
    Demo {
        /// Default: the first live peer.
        #[arg(long)]
        peer: Option<PeerSpec>,
        #[arg(long, default_value_t = echo::DEFAULT_PORT)]
        port: u16,
        /// Limit in seconds of each waiting step.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The message to send (default names this node).
        #[arg(long)]
        text: Option<String>,
        /// Do not wait for the peer's message or ping (the peer only runs `serve-echo`).
        #[arg(long)]
        one_sided: bool,
        /// How many blocks of message history to replay, so an early peer is not missed.
        #[arg(long, default_value_t = demo::DEFAULT_LOOKBACK_BLOCKS)]
        lookback_blocks: u64,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let socket = cli.socket;
    match cli.cmd {
        Cmd::WaitHealthy { timeout } => {
            let deadline = Instant::now() + secs(timeout);
            let mut a = Agent::connect_until(&socket, deadline).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let s = a
                .wait_healthy(left, |s| println!("{}", agent::describe(s)))
                .await?;
            println!("healthy: {}", agent::describe(&s));
        }
        Cmd::Peers => {
            let mut a = Agent::connect(&socket).await?;
            let peers = a.peers().await?;
            if peers.is_empty() {
                println!("no peers");
            }
            for p in peers {
                println!(
                    "{}  {:<15}  {:<8}  registered at block {}  last heartbeat {} ms",
                    p.id,
                    p.mesh_ip,
                    if p.live { "live" } else { "not-live" },
                    p.registered_at,
                    p.last_heartbeat_unix_ms
                );
            }
        }
        Cmd::Send { to, text } => {
            let mut a = Agent::connect(&socket).await?;
            let peer = a.resolve_peer(&to).await?;
            let sent = a.send(peer.id, text.as_bytes()).await?;
            println!(
                "sent to {}: envelope 0x{} tx 0x{}",
                peer.id,
                hex::encode(sent.envelope_id),
                hex::encode(sent.tx_hash)
            );
        }
        Cmd::Recv {
            count,
            from_block,
            timeout,
        } => {
            let mut a = Agent::connect(&socket).await?;
            let mut inbox = a.subscribe(from_block).await?;
            let deadline = (timeout > 0).then(|| Instant::now() + secs(timeout));
            for _ in 0..count {
                let m = match deadline {
                    Some(d) => {
                        inbox
                            .next_within(d.saturating_duration_since(Instant::now()))
                            .await?
                    }
                    None => inbox.next().await?,
                };
                println!(
                    "received from {} (block {}, envelope 0x{}, tx 0x{}{}): {}",
                    m.sender,
                    m.block_number,
                    hex::encode(m.envelope_id),
                    hex::encode(m.tx_hash),
                    if m.from_cluster_owner {
                        ", from the cluster owner"
                    } else {
                        ""
                    },
                    m.text()
                );
            }
        }
        Cmd::AppKey { info } => {
            let mut a = Agent::connect(&socket).await?;
            let key = a.app_key(Some(info.as_bytes())).await?;
            println!(
                "app key: HKDF-SHA256(salt {:?}, ikm CSK, info {info:?})",
                String::from_utf8_lossy(appkey::APP_KEY_SALT)
            );
            println!("app key fingerprint: {}", key.fingerprint());
        }
        Cmd::ServeEcho { port, count } => {
            let mut a = Agent::connect(&socket).await?;
            let me = a.me().await?;
            let key = a.app_key(None).await?;
            let listener = echo::bind(&me, port).await?;
            println!(
                "serving the echo on {}:{port} (app key fingerprint {})",
                me.mesh_ip,
                key.fingerprint()
            );
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let server = EchoServer::new(key, me.id, a.clone());
            let task = tokio::spawn(server.run(listener, tx, async {
                let _ = tokio::signal::ctrl_c().await;
            }));
            let mut ok = 0usize;
            while let Some(s) = rx.recv().await {
                let who = s.client.map(|c| c.to_string()).unwrap_or_default();
                match s.result {
                    Ok(n) => {
                        ok += 1;
                        println!("served {who} from {}: ok, {n} bytes echoed", s.source);
                    }
                    Err(e) => println!("refused {who} from {}: {e}", s.source),
                }
                if count > 0 && ok >= count {
                    break;
                }
            }
            task.abort();
        }
        Cmd::PingPeer {
            peer,
            port,
            timeout,
        } => {
            let mut a = Agent::connect(&socket).await?;
            let me = a.me().await?;
            let peer = a.resolve_peer(&peer).await?;
            let key = a.app_key(None).await?;
            let mut log = |l: String| println!("{l}");
            let r = demo::ping_until(&key, &me, &peer, port, secs(timeout), &mut log)
                .await
                .with_context(|| format!("ping {} at {}:{port}", peer.id, peer.mesh_ip))?;
            println!(
                "ping {} at {}: ok, peer proved the same app key, echoed {} bytes in {:?}",
                r.peer,
                r.addr,
                r.echoed.len(),
                r.rtt
            );
        }
        Cmd::Demo {
            peer,
            port,
            timeout,
            text,
            one_sided,
            lookback_blocks,
        } => {
            let cfg = DemoConfig {
                peer,
                port,
                timeout: secs(timeout),
                text,
                one_sided,
                lookback_blocks,
            };
            let deadline = Instant::now() + cfg.timeout;
            let mut a = Agent::connect_until(&socket, deadline).await?;
            let mut log = |l: String| println!("{l}");
            demo::run(&mut a, &cfg, &mut log).await?;
            println!("demo ok");
        }
    }
    Ok(())
}
