//! `attestmesh cluster …`: operator commands for real chains (issue 8). The logic, guards and
//! typed errors live in `attestmesh-ops`; these files only map flags (each with an env twin
//! where it makes sense) onto it and print results.
//!
//! Signing: exactly one of `--private-key-file`, `--keystore` (+ `--password-file` or
//! `KEYSTORE_PASSWORD`), or `--print-calldata` — which sends nothing and prints the transactions
//! as a Safe Transaction Builder batch on stdout (progress and warnings go to stderr, so
//! `> batch.json` captures only the batch).

mod compose;
mod create;
mod indexer;
mod infra;
mod member;
mod policy;
mod read;

use std::path::PathBuf;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use anyhow::{Context, bail};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_ops::deployments::Deployments;
use attestmesh_ops::exec::{Executor, LocalKey, Mode};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Settings every `cluster` subcommand shares (accepted before or after the subcommand).
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Chain JSON-RPC endpoint (http:// or https://).
    #[arg(long, env = "RPC_URL", global = true)]
    rpc_url: Option<String>,

    /// File holding the signer's hex private key.
    #[arg(long, env = "PRIVATE_KEY_FILE", global = true)]
    private_key_file: Option<PathBuf>,

    /// Encrypted keystore v3 file (geth / `cast wallet` format) of the signer.
    #[arg(long, env = "KEYSTORE", global = true)]
    keystore: Option<PathBuf>,

    /// File holding the keystore password (else the KEYSTORE_PASSWORD environment variable).
    #[arg(long, env = "KEYSTORE_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,

    /// Send nothing: print the transactions as a Safe Transaction Builder batch (JSON) on stdout.
    #[arg(long, global = true)]
    print_calldata: bool,

    /// With --print-calldata: the account (Safe) that will execute the batch; used to check
    /// ownership and simulate the first transaction.
    #[arg(long, env = "SAFE_ADDRESS", global = true)]
    from: Option<Address>,

    /// Directory of `<chain id>.json` deployment records.
    #[arg(
        long,
        env = "ATTESTMESH_DEPLOYMENTS_DIR",
        default_value = "deployments",
        global = true
    )]
    deployments_dir: PathBuf,

    /// Override the careless-operator guards (development KMS root on a real chain, overlapping
    /// mesh CIDRs, removing a compose hash the CSK originator may run, foreign clusters).
    #[arg(long, global = true)]
    force: bool,

    /// Where log scans (allowlists, other clusters) start; default: the deployments record.
    #[arg(long, env = "FROM_BLOCK", global = true)]
    from_block: Option<u64>,

    /// Per-request RPC timeout in seconds.
    #[arg(long, env = "RPC_TIMEOUT_SECS", default_value_t = 30, global = true)]
    rpc_timeout_secs: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Deploy (or find) the shared contracts of this chain → deployments/<chain id>.json.
    DeployInfra(infra::Args),
    /// Create a cluster from a config file (prints the predicted address first).
    Create(create::Args),
    /// Add an entry to the cluster's admission policy.
    Allow(policy::ListArgs),
    /// Remove an entry from the cluster's admission policy.
    Disallow(policy::ListArgs),
    /// Set a boolean admission rule.
    Set(policy::SetArgs),
    /// Policy, owners, mesh CIDR, member count and CSK commitment of a cluster.
    Show(read::ShowArgs),
    /// The cluster's members: ids, member contracts, mesh IPs, keys, registration blocks.
    Members(read::MembersArgs),
    /// Member contracts: deploy through the factory, or bind a stock dstack app (path A).
    #[command(subcommand)]
    Member(member::Command),
    /// The IndexerRegistry record.
    #[command(subcommand)]
    Indexer(indexer::Command),
    /// dstack's compose hash of an app-compose.json: sha256 of its bytes (what the cluster
    /// allowlists with `allow compose-hash`). Reads no chain.
    ComposeHash(compose::HashArgs),
    /// Write a canonical app-compose.json embedding a docker-compose file; prints its hash.
    AppCompose(compose::BuildArgs),
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let common = args.common;
    match args.command {
        Command::DeployInfra(a) => infra::run(&common, a).await,
        Command::Create(a) => create::run(&common, a).await,
        Command::Allow(a) => policy::run_list(&common, a, true).await,
        Command::Disallow(a) => policy::run_list(&common, a, false).await,
        Command::Set(a) => policy::run_set(&common, a).await,
        Command::Show(a) => read::run_show(&common, a).await,
        Command::Members(a) => read::run_members(&common, a).await,
        Command::Member(c) => member::run(&common, c).await,
        Command::Indexer(c) => indexer::run(&common, c).await,
        Command::ComposeHash(a) => compose::run_hash(a),
        Command::AppCompose(a) => compose::run_build(a),
    }
}

impl Common {
    fn provider(&self) -> anyhow::Result<RpcClient> {
        let url = self
            .rpc_url
            .as_deref()
            .context("--rpc-url (RPC_URL) is required")?;
        Ok(RpcClient::new(url)
            .context("invalid --rpc-url (RPC_URL)")?
            .with_timeout(Duration::from_secs(self.rpc_timeout_secs.max(1))))
    }

    /// The signing mode from the mutually exclusive signer flags.
    fn mode(&self) -> anyhow::Result<Mode> {
        let chosen = [
            self.private_key_file.is_some(),
            self.keystore.is_some(),
            self.print_calldata,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen != 1 {
            bail!(
                "choose exactly one signer: --private-key-file, --keystore (with --password-file \
                 or KEYSTORE_PASSWORD), or --print-calldata"
            );
        }
        if self.from.is_some() && !self.print_calldata {
            bail!("--from only applies to --print-calldata (a local key signs as itself)");
        }
        if let Some(path) = &self.private_key_file {
            return Ok(Mode::Send(LocalKey::from_file(path)?));
        }
        if let Some(path) = &self.keystore {
            let password = match &self.password_file {
                Some(pf) => {
                    let text = std::fs::read_to_string(pf)
                        .with_context(|| format!("reading --password-file {}", pf.display()))?;
                    zeroize::Zeroizing::new(strip_newline(&text).to_string())
                }
                None => zeroize::Zeroizing::new(std::env::var("KEYSTORE_PASSWORD").context(
                    "--keystore needs --password-file (KEYSTORE_PASSWORD_FILE) or KEYSTORE_PASSWORD",
                )?),
            };
            return Ok(Mode::Send(LocalKey::from_keystore(
                path,
                password.as_bytes(),
            )?));
        }
        Ok(Mode::Print { from: self.from })
    }

    /// RPC client, chain id and executor.
    async fn executor(&self) -> anyhow::Result<Executor> {
        let mode = self.mode()?;
        let provider = self.provider()?;
        let chain_id = provider
            .chain_id()
            .await
            .context("reading eth_chainId from --rpc-url")?;
        if let Mode::Send(k) = &mode {
            eprintln!("chain {chain_id}, signer {}", k.address());
        } else {
            eprintln!("chain {chain_id}, printing calldata (nothing is sent)");
        }
        Ok(Executor::new(provider, chain_id, mode))
    }

    fn deployments(&self, chain_id: u64) -> anyhow::Result<Deployments> {
        Ok(Deployments::require(&self.deployments_dir, chain_id)?)
    }

    /// The deployments record of `chain_id`, if there is one.
    fn deployments_record(&self, chain_id: u64) -> anyhow::Result<Option<Deployments>> {
        Ok(Deployments::load(&self.deployments_dir, chain_id)?)
    }

    /// Where log scans start: the flag, else the deployments record, else genesis.
    fn scan_from(&self, chain_id: u64) -> anyhow::Result<u64> {
        if let Some(b) = self.from_block {
            return Ok(b);
        }
        Ok(self
            .deployments_record(chain_id)?
            .map(|d| d.from_block)
            .unwrap_or(0))
    }
}

/// Drops one trailing newline (`echo pw > file`), nothing else: spaces may be part of a password.
fn strip_newline(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

/// In print mode: writes the batch to stdout. In send mode: a summary line.
fn finish(exec: &Executor, name: &str, description: &str) -> anyhow::Result<()> {
    if exec.is_print() {
        let batch = exec.safe_batch(name, description);
        println!("{}", serde_json::to_string_pretty(&batch)?);
        eprintln!(
            "{} transaction(s) printed; import the JSON into the Safe Transaction Builder",
            exec.planned().len()
        );
    } else if exec.receipts().is_empty() {
        eprintln!("nothing to do: the chain already has this state");
    } else {
        eprintln!("done: {} transaction(s) sent", exec.receipts().len());
    }
    Ok(())
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("WARNING (overridden by --force): {w}");
    }
}

/// A 32-byte value: 0x + 64 hex digits.
fn parse_b256(flag: &str, s: &str) -> anyhow::Result<B256> {
    let body = s.strip_prefix("0x").unwrap_or_default();
    if body.len() != 64 {
        bail!("{flag}: {s:?} must be 0x followed by 64 hex digits");
    }
    s.parse()
        .with_context(|| format!("{flag}: {s:?} is not hex"))
}

fn parse_address(flag: &str, s: &str) -> anyhow::Result<Address> {
    let a: Address = s
        .parse()
        .with_context(|| format!("{flag}: {s:?} is not a 0x address"))?;
    if a == Address::ZERO {
        bail!("{flag}: the zero address is not allowed");
    }
    Ok(a)
}
