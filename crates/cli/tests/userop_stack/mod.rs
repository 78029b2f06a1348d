//! The real 4337 stack for the `userop_*` integration tests: anvil, EntryPoint v0.7 at its
//! canonical address, the AttestMesh infra and one cluster trusting the devtee KMS root, a
//! funded SponsorPaymaster, alto on loopback, the sponsor service, and nodes backed by real
//! `attestmesh devtee` processes. Every process is stopped when the stack drops.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolCall;
use attestmesh_chain::bindings::{IAttestFacet, IClusterMember};
use attestmesh_chain::bundler::BundlerClient;
use attestmesh_chain::deploy::{self, Infra};
use attestmesh_chain::devstack::{self, Alto, AltoConfig, ClusterSpec, Devchain, GroupChild};
use attestmesh_chain::paymaster::PaymasterClient;
use attestmesh_chain::rpc::RpcClient;
use attestmesh_chain::userop::{NodeAccount, UserOpClient, UserOpConfig};
use attestmesh_core::keys::OwnerKey;
use attestmesh_core::mesh::MeshCidr;
use attestmesh_tee::attestor::{Attestor, NodeKeys};
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::dstack::DstackAttestor;
use attestmesh_tee::kms;

use crate::support::DevteeProcess;

/// The sponsor service's signing key (test-only).
pub use attestmesh_testkit::fixtures::SPONSOR_KEY;

pub fn repo() -> PathBuf {
    devstack::repo_root(env!("CARGO_MANIFEST_DIR"))
}

pub async fn read<C: SolCall>(rpc: &RpcClient, to: Address, call: C) -> C::Return {
    attestmesh_chain::read::view(rpc, to, call, attestmesh_chain::read::BlockTag::Latest)
        .await
        .unwrap()
}

/// `attestmesh sponsor` as a real process, restartable on the same port and counter database.
pub struct Sponsor {
    pub settings: attestmesh_sponsor::Settings,
    pub url: String,
    log: PathBuf,
    proc: Option<GroupChild>,
}

impl Sponsor {
    /// Starts `attestmesh sponsor` with `settings` and waits until it answers.
    pub async fn start(settings: attestmesh_sponsor::Settings, log: PathBuf) -> Self {
        match Self::try_start(settings, log).await {
            Ok(s) => s,
            Err(log) => panic!("attestmesh sponsor exited: {log}"),
        }
    }

    /// Starts the sponsor on a fresh free port of 127.0.0.1. The process binds the port itself,
    /// so something may take it between the pick and the bind: then (its log says the address
    /// is in use) it is started again on another port, up to three times.
    pub async fn start_on_free_port(
        mut settings: attestmesh_sponsor::Settings,
        log: PathBuf,
    ) -> Self {
        for _ in 1..3 {
            settings.listen = (
                std::net::Ipv4Addr::LOCALHOST,
                devstack::free_port().unwrap(),
            )
                .into();
            match Self::try_start(settings.clone(), log.clone()).await {
                Ok(s) => return s,
                Err(log) if log.to_ascii_lowercase().contains("address already in use") => {}
                Err(log) => panic!("attestmesh sponsor exited: {log}"),
            }
        }
        settings.listen = (
            std::net::Ipv4Addr::LOCALHOST,
            devstack::free_port().unwrap(),
        )
            .into();
        Self::start(settings, log).await
    }

    /// [`Sponsor::start`], or the log when the process exits during startup.
    async fn try_start(
        settings: attestmesh_sponsor::Settings,
        log: PathBuf,
    ) -> Result<Self, String> {
        let s = &settings;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_attestmesh"));
        cmd.arg("sponsor")
            .args(["--listen", &s.listen.to_string()])
            .args(["--rpc-url", &s.rpc_url])
            .args(["--chain-id", &s.chain_id.to_string()])
            .args(["--entry-point", &s.entry_point.to_string()])
            .args(["--paymaster", &s.paymaster.to_string()])
            .args(["--member-factory", &s.member_factory.to_string()])
            .args(["--cluster-factory", &s.cluster_factory.to_string()])
            .arg("--signer-key-file")
            .arg(&s.signer_key_file)
            .arg("--db-path")
            .arg(&s.db_path)
            .args(["--daily-cap", &s.daily_cap.to_string()])
            .args(
                s.trust
                    .clusters
                    .iter()
                    .flat_map(|c| ["--trusted-cluster".to_string(), c.to_string()]),
            )
            .args(
                s.trust
                    .owners
                    .iter()
                    .flat_map(|o| ["--trusted-cluster-owner".to_string(), o.to_string()]),
            )
            .args([
                "--daily-wei-per-sender",
                &s.daily_wei_per_sender.to_string(),
            ])
            .args([
                "--daily-wei-per-cluster",
                &s.daily_wei_per_cluster.to_string(),
            ])
            .args(["--gas-margin-pct", &s.bounds.gas_margin_pct.to_string()])
            .args(["--pvg-margin-pct", &s.bounds.pvg_margin_pct.to_string()])
            .args(["--fee-multiple", &s.bounds.fee_multiple.to_string()])
            .args([
                "--rpc-timeout-secs",
                &s.rpc_timeout.as_secs().max(1).to_string(),
            ])
            .args(
                s.sponsorship_policy_id
                    .iter()
                    .flat_map(|id| ["--sponsorship-policy-id".to_string(), id.clone()]),
            )
            .env("LOG", "warn");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        cmd.stdout(out.try_clone().unwrap()).stderr(out);
        let mut proc = GroupChild::spawn("attestmesh sponsor", cmd).unwrap();
        let url = format!("http://{}", s.listen);
        let rpc = RpcClient::new(&url)
            .unwrap()
            .with_timeout(Duration::from_secs(2));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match rpc
                .call::<Vec<Address>>("pm_supportedEntryPoints", serde_json::json!([]))
                .await
            {
                Ok(eps) => {
                    assert_eq!(eps, vec![s.entry_point]);
                    break;
                }
                Err(e) => {
                    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
                    if proc.exited().is_some() {
                        return Err(log_text());
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "attestmesh sponsor not ready: {e}; log: {}",
                        log_text()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            settings,
            url,
            log,
            proc: Some(proc),
        })
    }

    /// SIGTERM (graceful: the counter database is closed cleanly), then the group is swept.
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            tokio::task::spawn_blocking(move || p.stop(Duration::from_secs(10)))
                .await
                .unwrap();
        }
    }

    /// Starts again on the same address and counter database.
    pub async fn start_again(&mut self) {
        assert!(self.proc.is_none(), "still running");
        *self = Sponsor::start(self.settings.clone(), self.log.clone()).await;
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }
}

/// A node: its ClusterMember, its devtee and the keys derived through it.
pub struct Node {
    pub member: Address,
    pub keys: NodeKeys,
    /// `dstack_register(...)` calldata for this node.
    pub registration: Vec<u8>,
    pub tee: DevteeProcess,
}

impl Node {
    pub fn account(&self, cluster: Address) -> NodeAccount<'_> {
        NodeAccount {
            sender: self.member,
            cluster,
            owner: &self.keys.owner,
        }
    }

    pub fn member_id(&self, cluster: Address) -> B256 {
        attestmesh_core::ids::member_id(
            cluster,
            self.member,
            attestmesh_core::ids::DSTACK_ATTESTOR_ID,
        )
    }
}

pub struct StackOptions {
    pub daily_cap: u32,
    /// Seconds per block once the stack is up (setup itself runs with instant mining).
    pub block_time: u64,
    pub start_alto: bool,
    /// The sponsor's `--sponsorship-policy-id`.
    pub sponsorship_policy_id: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            daily_cap: 100,
            block_time: 1,
            start_alto: true,
            sponsorship_policy_id: None,
        }
    }
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub rpc: RpcClient,
    pub deployer: Address,
    pub cluster_owner: Address,
    pub infra: Infra,
    pub cluster: Address,
    pub paymaster: Address,
    pub alto_cfg: AltoConfig,
    // Drop order: the sponsor and alto before anvil.
    pub sponsor: Sponsor,
    pub alto: Option<Alto>,
    pub chain: Devchain,
}

impl Stack {
    pub async fn up(opts: StackOptions) -> Self {
        let artifacts =
            devstack::artifacts(&repo(), &["EntryPointV07", "SponsorPaymaster"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let chain = Devchain::start(&repo()).await.unwrap();
        let rpc = chain.rpc.clone();
        let (deployer, cluster_owner) = (chain.accounts[0], chain.accounts[1]);

        let entry_point = devstack::deploy_entry_point(&rpc, deployer, &artifacts)
            .await
            .unwrap();
        // Idempotent.
        assert_eq!(
            devstack::deploy_entry_point(&rpc, deployer, &artifacts)
                .await
                .unwrap(),
            entry_point
        );
        let spec = ClusterSpec {
            owner: cluster_owner,
            cidr: MeshCidr::new(0x0a0d_0000, 16).unwrap(),
            kms_roots: vec![kms::DEV_KMS_ROOT_ADDRESS],
            salt: B256::repeat_byte(1),
        };
        let (infra, cluster) = chain
            .deploy_dev_cluster(&artifacts, entry_point, &spec)
            .await
            .unwrap();

        let sponsor_key = OwnerKey::from_bytes(&SPONSOR_KEY).unwrap();
        let paymaster = chain
            .deploy_paymaster(
                &artifacts,
                entry_point,
                sponsor_key.address(),
                U256::from(10u128.pow(19)),
            )
            .await
            .unwrap();
        assert_eq!(
            devstack::deposit_of(&rpc, entry_point, paymaster)
                .await
                .unwrap(),
            U256::from(10u128.pow(19))
        );

        // From here on, blocks come at a steady pace like on a real chain.
        chain.set_interval_mining(opts.block_time).await.unwrap();

        let key_file = attestmesh_testkit::fixtures::sponsor_key_file(dir.path()).unwrap();
        let sponsor = Sponsor::start_on_free_port(
            attestmesh_sponsor::Settings {
                listen: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
                rpc_url: chain.url().to_string(),
                chain_id: rpc.chain_id().await.unwrap(),
                entry_point,
                paymaster,
                member_factory: infra.member_factory,
                cluster_factory: infra.diamond_factory,
                signer_key_file: key_file,
                db_path: dir.path().join("sponsor.redb"),
                daily_cap: opts.daily_cap,
                // The operator's own cluster, as the devnet configures it.
                trust: attestmesh_sponsor::TrustSet::clusters([cluster]),
                bounds: attestmesh_sponsor::GasBounds::default(),
                daily_wei_per_sender: attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_SENDER,
                daily_wei_per_cluster: attestmesh_sponsor::policy::DEFAULT_DAILY_WEI_PER_CLUSTER,
                rate_limit: attestmesh_sponsor::RateLimit::default(),
                webhook_secret_file: None,
                rpc_timeout: Duration::from_secs(5),
                sponsorship_policy_id: opts.sponsorship_policy_id.clone(),
            },
            dir.path().join("sponsor.log"),
        )
        .await;

        let mut alto_cfg = AltoConfig::from_repo(&repo(), chain.url(), &dir.path().join("alto"));
        let alto = if opts.start_alto {
            Some(
                attestmesh_testkit::stack::start_alto(&mut alto_cfg)
                    .await
                    .unwrap(),
            )
        } else {
            alto_cfg.port = Some(devstack::free_port().unwrap());
            None
        };
        Self {
            dir,
            rpc,
            deployer,
            cluster_owner,
            infra,
            cluster,
            paymaster,
            alto_cfg,
            sponsor,
            alto,
            chain,
        }
    }

    pub fn bundler_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.alto_cfg.port.unwrap())
    }

    pub fn client(&self, cfg: UserOpConfig) -> UserOpClient {
        self.client_with_context(cfg, serde_json::json!({}))
    }

    /// A client whose paymaster requests carry `context` (the agent's `PAYMASTER_CONTEXT`).
    pub fn client_with_context(
        &self,
        cfg: UserOpConfig,
        context: serde_json::Value,
    ) -> UserOpClient {
        UserOpClient::new(
            self.chain.rpc.clone(),
            BundlerClient::new(
                RpcClient::new(&self.bundler_url())
                    .unwrap()
                    .with_timeout(Duration::from_secs(30)),
            ),
            PaymasterClient::new(
                RpcClient::new(&self.sponsor.url)
                    .unwrap()
                    .with_timeout(Duration::from_secs(10)),
                context,
            ),
            cfg,
        )
    }

    /// Deploys a ClusterMember through the factory (the operator pays for that, not the node),
    /// starts its devtee and derives its keys. The member and its owner key hold zero ETH.
    pub async fn node(&self, salt: u8) -> Node {
        self.node_with_root(salt, None).await
    }

    /// A node whose devtee serves keys from another KMS root (`None`: the dev root the cluster
    /// trusts).
    pub async fn node_with_root(&self, salt: u8, root: Option<[u8; 32]>) -> Node {
        let member = deploy::deploy_member(
            &self.rpc,
            self.deployer,
            &self.infra,
            self.cluster,
            B256::repeat_byte(salt),
        )
        .await
        .unwrap();
        assert_eq!(
            read(&self.rpc, member, IClusterMember::ownerCall {}).await,
            Address::ZERO
        );
        let tee = DevteeProcess::start(
            &self.dir.path().join(format!("dstack-{salt}.sock")),
            member,
            root,
        )
        .await;
        let att = DstackAttestor::new(GuestAgentClient::new(&tee.socket));
        let derived = att.derive_keys().await.unwrap();
        let registration = att
            .registration_call(&derived, self.cluster, member)
            .unwrap();
        Node {
            member,
            keys: derived.keys,
            registration,
            tee,
        }
    }

    pub async fn is_member(&self, member: Address) -> bool {
        read(
            &self.rpc,
            self.cluster,
            IAttestFacet::isClusterMemberCall {
                memberContract: member,
            },
        )
        .await
    }

    pub async fn balance(&self, a: Address) -> U256 {
        self.rpc.balance(a).await.unwrap()
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
