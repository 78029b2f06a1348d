//! `deploy-infra`: the shared, cluster-independent contracts of one chain.
//!
//! Everything is deployed through the deterministic CREATE2 deployer
//! (`0x4e59b44847b379578588920ca78fbf26c0b4956c`, present on Base, Base Sepolia, anvil and most
//! EVM chains) with a fixed salt. Three properties follow, and they are why:
//! - **Idempotent without trusting a file.** A contract's address is a function of its exact
//!   init code (bytecode + constructor arguments) and the salt, so "code exists at the computed
//!   address" proves that very contract is deployed. A second run computes the same addresses,
//!   finds code at each, and sends nothing; an interrupted run resumes where it stopped.
//! - **Multisig-friendly.** Each deployment is a plain call to the deployer, so `--print-calldata`
//!   can hand the whole infrastructure to a Safe (which cannot do a bare CREATE).
//! - **Same addresses on every chain** for the same bytecode and constructor arguments, which
//!   keeps operator docs and monitoring simple. Anyone may replay a deployment; the result is the
//!   same contract with the same owner, so there is nothing to front-run.

use alloy_primitives::{Address, B256, Bytes, U256, address, b256, keccak256};
use alloy_sol_types::{SolCall, SolValue};
use attestmesh_chain::bindings::{EntryPoint, Facets, IClusterMemberFactory, SponsorPaymaster};

use crate::artifacts::ArtifactSource;
use crate::deployments::{Deployments, InfraAddresses};
use crate::error::OpsError;
use crate::exec::{Executor, PlannedTx};
use crate::read::view;

/// The deterministic CREATE2 deployer (Arachnid's), canonical on nearly every EVM chain.
pub const CREATE2_DEPLOYER: Address = address!("0x4e59b44847b379578588920ca78fbf26c0b4956c");
/// The canonical ERC-4337 v0.7 EntryPoint.
pub const ENTRY_POINT_V07: Address = attestmesh_chain::deploy::ENTRY_POINT_V07;
/// The salt the EntryPoint v0.7 was published with (with the published init code it lands at
/// [`ENTRY_POINT_V07`]).
pub const ENTRY_POINT_V07_SALT: B256 =
    b256!("0x90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3");

/// The default infrastructure salt: `keccak256("attestmesh.infra.v1")`.
pub fn default_salt() -> B256 {
    keccak256("attestmesh.infra.v1")
}

/// Local development chains (anvil, ganache/hardhat): the only ones where the devtee KMS root
/// may be allowlisted and where a missing EntryPoint is deployed for you.
pub fn is_dev_chain(chain_id: u64) -> bool {
    matches!(chain_id, 31337 | 1337)
}

/// The address the deterministic deployer gives `init_code` under `salt`.
pub fn create2_address(salt: B256, init_code: &[u8]) -> Address {
    CREATE2_DEPLOYER.create2_from_code(salt, init_code)
}

/// The address of the first contract a contract creates (`CREATE` with nonce 1, EIP-161).
pub fn first_child(creator: Address) -> Address {
    // rlp([creator, 1]) = 0xd6 ‖ 0x94 ‖ creator ‖ 0x01
    let mut rlp = Vec::with_capacity(23);
    rlp.extend_from_slice(&[0xd6, 0x94]);
    rlp.extend_from_slice(creator.as_slice());
    rlp.push(0x01);
    Address::from_slice(&keccak256(&rlp)[12..])
}

/// Settings of `deploy-infra`.
#[derive(Debug, Clone)]
pub struct InfraOptions {
    /// Owner of the IndexerRegistry and the SponsorPaymaster.
    pub owner: Address,
    /// The sponsor service's signing address (SponsorPaymaster `signer`).
    pub paymaster_signer: Address,
    pub salt: B256,
    pub entry_point: Address,
    /// Top the paymaster's EntryPoint deposit up to at least this many wei.
    pub paymaster_deposit: Option<U256>,
    /// Stake the paymaster with the EntryPoint (public bundlers refuse an unstaked paymaster
    /// that reads its own storage, ERC-7562); `None` leaves the stake as it is.
    pub paymaster_stake: Option<PaymasterStake>,
    /// Where log scans start, when the operator knows better than the receipts.
    pub from_block: Option<u64>,
    pub artifacts: ArtifactSource,
}

/// What `deploy-infra` found and did.
#[derive(Debug, Clone)]
pub struct InfraReport {
    pub deployments: Deployments,
    /// (name, address) already on chain.
    pub found: Vec<(String, Address)>,
    /// (name, address) deployed (send mode) or planned (print mode).
    pub deployed: Vec<(String, Address)>,
    /// Wei added to the paymaster deposit.
    pub deposited: Option<U256>,
    /// The stake added (wei) and the unstake delay set, when `addStake` was sent or planned.
    pub staked: Option<(U256, u32)>,
}

/// The stake `deploy-infra` makes sure the paymaster holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymasterStake {
    /// At least this many wei staked.
    pub wei: U256,
    /// An unstake delay of at least this many seconds.
    pub unstake_delay_sec: u32,
}

impl PaymasterStake {
    /// What public bundlers require by default: 1 ETH and a one-day unstake delay (ERC-7562's
    /// `MIN_UNSTAKE_DELAY` is 86400 s; Alchemy's rundler and Pimlico's alto default to 1 ETH).
    pub const PUBLIC_BUNDLER_MINIMUM: Self = Self {
        wei: U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]),
        unstake_delay_sec: 86_400,
    };
}

/// The paymaster's funds at the EntryPoint, as `cluster show` reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymasterFunds {
    pub paymaster: Address,
    /// Wei that pays for sponsored operations.
    pub deposit: U256,
    pub staked: bool,
    /// Wei locked as stake (not spendable on gas).
    pub stake: U256,
    pub unstake_delay_sec: u32,
    /// Non-zero while the stake is unlocking (the stake stops counting for bundlers then).
    pub withdraw_time: u64,
}

/// Reads the paymaster's deposit and stake from the EntryPoint.
pub async fn paymaster_funds(
    p: &attestmesh_chain::rpc::RpcClient,
    entry_point: Address,
    paymaster: Address,
) -> Result<PaymasterFunds, OpsError> {
    let info = view(
        p,
        entry_point,
        EntryPoint::getDepositInfoCall { account: paymaster },
        "EntryPoint.getDepositInfo(paymaster)",
    )
    .await?;
    Ok(PaymasterFunds {
        paymaster,
        deposit: info.deposit,
        staked: info.staked,
        stake: U256::from(info.stake),
        unstake_delay_sec: info.unstakeDelaySec,
        withdraw_time: info.withdrawTime.to::<u64>(),
    })
}

struct Step {
    name: &'static str,
    init_code: Vec<u8>,
    salt: B256,
}

/// Deploys whatever part of the infrastructure is missing.
pub async fn deploy_infra(
    exec: &mut Executor,
    opts: &InfraOptions,
    previous: Option<&Deployments>,
) -> Result<InfraReport, OpsError> {
    let chain_id = exec.chain_id();
    let p = exec.provider().clone();
    if opts.owner == Address::ZERO {
        return Err(OpsError::setting("--owner", "must not be the zero address"));
    }
    if opts.paymaster_signer == Address::ZERO {
        return Err(OpsError::setting(
            "--paymaster-signer",
            "must not be the zero address",
        ));
    }
    let has_code = |a: Address| {
        let p = p.clone();
        async move {
            p.has_code(a)
                .await
                .map_err(OpsError::chain(format!("reading code at {a}")))
        }
    };
    if !has_code(CREATE2_DEPLOYER).await? {
        return Err(OpsError::NoCode {
            what: "deterministic CREATE2 deployer".into(),
            address: CREATE2_DEPLOYER,
            chain_id,
            hint: "it is on Base, Base Sepolia and anvil; on another chain deploy it from its \
                   presigned transaction first",
        });
    }

    let mut steps: Vec<Step> = Vec::new();
    if !has_code(opts.entry_point).await? {
        if opts.entry_point != ENTRY_POINT_V07 || !is_dev_chain(chain_id) {
            return Err(OpsError::NoCode {
                what: "EntryPoint".into(),
                address: opts.entry_point,
                chain_id,
                hint: "EntryPoint v0.7 is predeployed on Base and Base Sepolia; it is only \
                       deployed for you on a local dev chain (31337/1337)",
            });
        }
        steps.push(Step {
            name: "EntryPointV07",
            init_code: opts.artifacts.bytecode("EntryPointV07")?,
            salt: ENTRY_POINT_V07_SALT,
        });
    }

    let salt = opts.salt;
    let plain = |name: &'static str| -> Result<Step, OpsError> {
        Ok(Step {
            name,
            init_code: opts.artifacts.bytecode(name)?,
            salt,
        })
    };
    let with_args = |name: &'static str, args: Vec<u8>| -> Result<Step, OpsError> {
        let mut init_code = opts.artifacts.bytecode(name)?;
        init_code.extend_from_slice(&args);
        Ok(Step {
            name,
            init_code,
            salt,
        })
    };
    let facet_names = [
        "DiamondCutFacet",
        "DiamondLoupeFacet",
        "OwnershipFacet",
        "AttestFacet",
        "MessageFacet",
        "NetworkFacet",
        "DstackFacet",
        "ClusterInit",
    ];
    let mut addr = std::collections::BTreeMap::new();
    for name in facet_names {
        let s = plain(name)?;
        addr.insert(name, create2_address(salt, &s.init_code));
        steps.push(s);
    }
    let facets = Facets {
        diamondCut: facets_addr(&addr, "DiamondCutFacet"),
        diamondLoupe: facets_addr(&addr, "DiamondLoupeFacet"),
        ownership: facets_addr(&addr, "OwnershipFacet"),
        attest: facets_addr(&addr, "AttestFacet"),
        message: facets_addr(&addr, "MessageFacet"),
        network: facets_addr(&addr, "NetworkFacet"),
        dstack: facets_addr(&addr, "DstackFacet"),
    };
    let cluster_init = facets_addr(&addr, "ClusterInit");
    let tail = [
        with_args(
            "ClusterDiamondFactory",
            (facets, cluster_init).abi_encode_params(),
        )?,
        with_args("ClusterMemberFactory", opts.entry_point.abi_encode())?,
        with_args("IndexerRegistry", opts.owner.abi_encode())?,
        with_args(
            "SponsorPaymaster",
            (opts.entry_point, opts.owner, opts.paymaster_signer).abi_encode_params(),
        )?,
    ];
    for s in tail {
        addr.insert(s.name, create2_address(salt, &s.init_code));
        steps.push(s);
    }
    let a = |n: &str| facets_addr(&addr, n);

    let mut found = Vec::new();
    let mut deployed = Vec::new();
    for step in steps {
        let target = create2_address(step.salt, &step.init_code);
        if has_code(target).await? {
            found.push((step.name.to_string(), target));
            continue;
        }
        let mut data = step.salt.to_vec();
        data.extend_from_slice(&step.init_code);
        exec.submit(PlannedTx {
            to: CREATE2_DEPLOYER,
            value: U256::ZERO,
            data: Bytes::from(data),
            what: format!("deploy {} at {target}", step.name),
        })
        .await?;
        if !exec.is_print() && !has_code(target).await? {
            return Err(OpsError::Unexpected(format!(
                "the CREATE2 deployer did not create {} at {target}: out of gas, or a \
                 constructor revert",
                step.name
            )));
        }
        deployed.push((step.name.to_string(), target));
    }

    let member_factory = a("ClusterMemberFactory");
    let member_impl = first_child(member_factory);
    if !exec.is_print() {
        let reported = view(
            &p,
            member_factory,
            IClusterMemberFactory::implementationCall {},
            "ClusterMemberFactory.implementation()",
        )
        .await?;
        if reported != member_impl {
            return Err(OpsError::Unexpected(format!(
                "ClusterMemberFactory {member_factory} reports implementation {reported}, \
                 expected {member_impl}"
            )));
        }
    }

    let paymaster = a("SponsorPaymaster");
    let mut deposited = None;
    if let Some(want) = opts.paymaster_deposit {
        let have = if has_code(paymaster).await? {
            view(
                &p,
                opts.entry_point,
                EntryPoint::balanceOfCall { account: paymaster },
                "EntryPoint.balanceOf(paymaster)",
            )
            .await?
        } else {
            U256::ZERO
        };
        if have < want {
            let top_up = want - have;
            exec.submit(PlannedTx {
                to: paymaster,
                value: top_up,
                data: Bytes::from(SponsorPaymaster::depositCall {}.abi_encode()),
                what: format!("deposit {top_up} wei for SponsorPaymaster {paymaster}"),
            })
            .await?;
            deposited = Some(top_up);
        }
    }

    let mut staked = None;
    if let Some(want) = opts.paymaster_stake {
        let have = if has_code(paymaster).await? {
            Some(paymaster_funds(&p, opts.entry_point, paymaster).await?)
        } else {
            None
        };
        let (stake, delay, unlocking) = have.as_ref().map_or((U256::ZERO, 0, false), |f| {
            (f.stake, f.unstake_delay_sec, f.withdraw_time != 0)
        });
        if delay > want.unstake_delay_sec {
            return Err(OpsError::setting(
                "--paymaster-unstake-delay",
                format!(
                    "the paymaster is staked with a {delay} s unstake delay; the EntryPoint \
                     cannot lower it to {}",
                    want.unstake_delay_sec
                ),
            ));
        }
        if stake < want.wei || delay < want.unstake_delay_sec || unlocking {
            if let Some(sender) = exec.sender()
                && sender != opts.owner
            {
                return Err(OpsError::setting(
                    "--paymaster-stake",
                    format!(
                        "addStake is owner-only: the paymaster's owner is {}, the sender is \
                         {sender}; send as the owner, use --print-calldata, or pass \
                         --paymaster-stake 0",
                        opts.owner
                    ),
                ));
            }
            let add = want.wei.saturating_sub(stake);
            if add.is_zero() && stake.is_zero() {
                return Err(OpsError::setting(
                    "--paymaster-stake",
                    "the EntryPoint refuses a stake of 0 wei",
                ));
            }
            exec.submit(PlannedTx {
                to: paymaster,
                value: add,
                data: Bytes::from(
                    SponsorPaymaster::addStakeCall {
                        unstakeDelaySec: want.unstake_delay_sec,
                    }
                    .abi_encode(),
                ),
                what: format!(
                    "stake {add} wei more (unstake delay {} s) for SponsorPaymaster {paymaster}",
                    want.unstake_delay_sec
                ),
            })
            .await?;
            staked = Some((add, want.unstake_delay_sec));
        }
    }

    let from_block = match opts.from_block {
        Some(b) => b,
        None => {
            let mut candidates: Vec<u64> = exec.receipts().iter().map(|r| r.block_number).collect();
            if let Some(prev) = previous {
                candidates.push(prev.from_block);
            }
            if exec.is_print() && !exec.planned().is_empty() {
                candidates.push(
                    p.block_number()
                        .await
                        .map_err(OpsError::chain("reading the block number"))?,
                );
            }
            candidates.into_iter().min().unwrap_or(0)
        }
    };

    let deployments = Deployments {
        chain_id,
        entry_point: opts.entry_point,
        create2_deployer: CREATE2_DEPLOYER,
        salt,
        owner: opts.owner,
        paymaster_signer: opts.paymaster_signer,
        from_block,
        contracts: InfraAddresses {
            diamond_cut_facet: facets_addr(&addr, "DiamondCutFacet"),
            diamond_loupe_facet: facets_addr(&addr, "DiamondLoupeFacet"),
            ownership_facet: facets_addr(&addr, "OwnershipFacet"),
            attest_facet: facets_addr(&addr, "AttestFacet"),
            message_facet: facets_addr(&addr, "MessageFacet"),
            network_facet: facets_addr(&addr, "NetworkFacet"),
            dstack_facet: facets_addr(&addr, "DstackFacet"),
            cluster_init,
            cluster_diamond_factory: a("ClusterDiamondFactory"),
            cluster_member_factory: member_factory,
            cluster_member_implementation: member_impl,
            indexer_registry: a("IndexerRegistry"),
            sponsor_paymaster: paymaster,
        },
    };
    Ok(InfraReport {
        deployments,
        found,
        deployed,
        deposited,
        staked,
    })
}

fn facets_addr(map: &std::collections::BTreeMap<&str, Address>, name: &str) -> Address {
    map.get(name).copied().unwrap_or_default()
}

/// Checks that the infrastructure a command relies on is really on chain.
pub async fn require_infra(exec: &Executor, d: &Deployments) -> Result<(), OpsError> {
    for (what, address) in [
        ("ClusterDiamondFactory", d.contracts.cluster_diamond_factory),
        ("ClusterMemberFactory", d.contracts.cluster_member_factory),
    ] {
        let ok = exec
            .provider()
            .has_code(address)
            .await
            .map_err(OpsError::chain(format!("reading code at {address}")))?;
        if !ok {
            return Err(OpsError::NoCode {
                what: what.into(),
                address,
                chain_id: d.chain_id,
                hint: "the deployments file names it but the chain has no code there: run \
                       deploy-infra (or execute its printed batch) first",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn create_address_of_first_child() {
        // Known: the first contract deployed by 0xb20a…E1d0 with nonce 1 (alloy's doc example).
        let sender = address!("0xb20a608c624Ca5003905aA834De7156C68b2E1d0");
        assert_eq!(
            first_child(sender),
            address!("0xe33c6e89e69d085897f98e92b06ebd541d1daa99")
        );
    }

    #[test]
    fn dev_chains() {
        assert!(is_dev_chain(31337) && is_dev_chain(1337));
        assert!(!is_dev_chain(84532) && !is_dev_chain(8453));
    }
}
