//! `cluster deploy-infra`.

use std::path::PathBuf;

use alloy_primitives::{Address, U256};
use anyhow::{Context, bail};
use attestmesh_ops::artifacts::ArtifactSource;
use attestmesh_ops::deployments::Deployments;
use attestmesh_ops::infra::{self, InfraOptions};

use super::Common;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Owner of the IndexerRegistry and the SponsorPaymaster (default: the signer, or --from).
    #[arg(long, env = "INFRA_OWNER")]
    owner: Option<Address>,

    /// The sponsor service's signing address (SponsorPaymaster signer).
    #[arg(long, env = "PAYMASTER_SIGNER")]
    paymaster_signer: Address,

    /// Top the paymaster's EntryPoint deposit up to this amount: wei, or with a unit
    /// (`0.5ether`, `100gwei`).
    #[arg(long, env = "PAYMASTER_DEPOSIT")]
    paymaster_deposit: Option<String>,

    /// Stake the paymaster with the EntryPoint up to this amount (wei or with a unit). Public
    /// bundlers refuse an unstaked paymaster that reads its own storage (ERC-7562); the default
    /// is their usual minimum. `0` leaves the stake as it is.
    #[arg(long, env = "PAYMASTER_STAKE", default_value = "1ether")]
    paymaster_stake: String,

    /// Unstake delay of the paymaster's stake, seconds (ERC-7562's minimum is one day).
    #[arg(long, env = "PAYMASTER_UNSTAKE_DELAY", default_value_t = 86_400)]
    paymaster_unstake_delay: u32,

    /// CREATE2 salt (0x + 64 hex, or a label that is hashed); default keccak256("attestmesh.infra.v1").
    #[arg(long, env = "INFRA_SALT")]
    salt: Option<String>,

    /// EntryPoint v0.7 (deployed for you only on a local dev chain when missing).
    #[arg(
        long,
        env = "ENTRY_POINT",
        default_value = "0x0000000071727De22E5E9d8BAf0edAc6f37da032"
    )]
    entry_point: Address,

    /// Deploy bytecode from this artifacts directory instead of the set built into the binary.
    #[arg(long, env = "ATTESTMESH_ARTIFACTS")]
    artifacts: Option<PathBuf>,
}

/// `1.5ether`, `20gwei`, `1000wei`, `1000` (wei); `flag` names the setting in errors.
pub fn parse_amount_of(flag: &str, s: &str) -> anyhow::Result<U256> {
    parse_amount(s).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// `1.5ether`, `20gwei`, `1000wei`, `1000` (wei).
pub fn parse_amount(s: &str) -> anyhow::Result<U256> {
    let s = s.trim();
    let (num, decimals) = if let Some(n) = s.strip_suffix("ether") {
        (n, 18u32)
    } else if let Some(n) = s.strip_suffix("gwei") {
        (n, 9)
    } else if let Some(n) = s.strip_suffix("wei") {
        (n, 0)
    } else {
        (s, 0)
    };
    let num = num.trim();
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        bail!("{s:?} has no number");
    }
    if frac.len() > decimals as usize {
        bail!("{s:?} has more decimals than the unit allows");
    }
    let digits = format!("{int}{frac:0<width$}", width = decimals as usize);
    U256::from_str_radix(if digits.is_empty() { "0" } else { &digits }, 10)
        .with_context(|| format!("{s:?} is not an amount"))
}

pub async fn run(common: &Common, args: Args) -> anyhow::Result<()> {
    let mut exec = common.executor().await?;
    let owner = match (args.owner, exec.sender()) {
        (Some(o), _) => o,
        (None, Some(s)) => s,
        (None, None) => bail!("--owner is required with --print-calldata unless --from is given"),
    };
    let salt = match &args.salt {
        Some(s) => {
            attestmesh_ops::config::parse_salt(s).map_err(|r| anyhow::anyhow!("--salt: {r}"))?
        }
        None => infra::default_salt(),
    };
    let opts = InfraOptions {
        owner,
        paymaster_signer: args.paymaster_signer,
        salt,
        entry_point: args.entry_point,
        paymaster_deposit: args
            .paymaster_deposit
            .as_deref()
            .map(|s| parse_amount_of("--paymaster-deposit", s))
            .transpose()?,
        paymaster_stake: {
            let wei = parse_amount_of("--paymaster-stake", &args.paymaster_stake)?;
            (!wei.is_zero()).then_some(infra::PaymasterStake {
                wei,
                unstake_delay_sec: args.paymaster_unstake_delay,
            })
        },
        from_block: common.from_block,
        artifacts: match args.artifacts {
            Some(dir) => ArtifactSource::Dir(dir),
            None => ArtifactSource::Embedded,
        },
    };
    let previous = Deployments::load(&common.deployments_dir, exec.chain_id())?;
    let report = infra::deploy_infra(&mut exec, &opts, previous.as_ref()).await?;
    for (name, addr) in &report.found {
        eprintln!("found    {name:<24} {addr}");
    }
    for (name, addr) in &report.deployed {
        let verb = if exec.is_print() {
            "planned "
        } else {
            "deployed"
        };
        eprintln!("{verb} {name:<24} {addr}");
    }
    if let Some(d) = report.deposited {
        eprintln!("paymaster deposit topped up by {d} wei");
    }
    if let Some((wei, delay)) = report.staked {
        eprintln!("paymaster stake raised by {wei} wei, unstake delay {delay} s");
    }
    let path = report.deployments.save(&common.deployments_dir)?;
    eprintln!(
        "wrote {}{}",
        path.display(),
        if exec.is_print() {
            " (addresses are deterministic; valid once the batch is executed)"
        } else {
            ""
        }
    );
    super::finish(&exec, "AttestMesh infrastructure", "deploy-infra")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("1000").unwrap(), U256::from(1000));
        assert_eq!(
            parse_amount("0.5ether").unwrap(),
            U256::from(5u128 * 10u128.pow(17))
        );
        assert_eq!(
            parse_amount("2 gwei").unwrap(),
            U256::from(2_000_000_000u64)
        );
        assert!(parse_amount("1.0000000001gwei").is_err());
        assert!(parse_amount("ether").is_err());
        assert!(parse_amount("x").is_err());
    }
}
