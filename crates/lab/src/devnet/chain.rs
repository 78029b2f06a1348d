//! The chain half of `devnet up`: anvil, EntryPoint v0.7, the AttestMesh infra, one cluster,
//! the paymaster deposit.

use attestmesh_ops::artifacts::ArtifactSource;
use attestmesh_ops::cluster as ops_cluster;
use attestmesh_ops::config::ClusterConfig;
use attestmesh_ops::exec::{Executor, LocalKey, Mode};
use attestmesh_ops::infra::{self as ops_infra, InfraOptions};

use super::*;

impl Devnet {
    pub(super) async fn build(
        &mut self,
        cfg: &UpConfig,
        progress: Progress<'_>,
    ) -> Result<(), DevnetError> {
        let total = 11;
        let step = |n: usize, msg: &str| progress(&format!("[{n}/{total}] {msg}"));

        step(
            1,
            &format!(
                "network: gateway namespace {} (\"the internet\", services on {}), host link {} ({})",
                self.state.gw_ns,
                self.state.services_addr,
                self.state.host_if,
                self.state.host_addr
            ),
        );
        netns::create_gateway(
            &self.state.gw_ns,
            &self.state.host_if,
            self.state.host_addr,
            self.state.services_addr,
        )?;

        step(
            2,
            &format!(
                "anvil on {} (block time {} s)",
                self.state.rpc_url, cfg.block_time
            ),
        );
        // Setup mines on every transaction (seconds, not minutes); the block time applies from
        // the moment the agents start, which is what the convergence figure measures.
        let anvil_bin = AnvilConfig::from_repo(&cfg.repo).bin;
        let anvil = self.spawn_service(
            "anvil",
            vec![
                anvil_bin.display().to_string(),
                "--host".into(),
                "0.0.0.0".into(),
                "--port".into(),
                RPC_PORT.to_string(),
            ],
            vec![],
        )?;
        let chain_id = wait_for(
            "anvil",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                check_running(&anvil)?;
                Ok(self.rpc.chain_id().await.ok())
            },
        )
        .await?;
        self.state.chain_id = chain_id;
        let accounts = self.rpc.accounts().await?;
        let deployer = *accounts
            .first()
            .ok_or_else(|| DevnetError::Setup("anvil has no unlocked accounts".into()))?;
        self.state.deployer = deployer;
        let key_file = self.state.dir.join("deployer.key");
        write_secret(&key_file, DEPLOYER_KEY)?;
        self.save()?;

        step(
            3,
            "sponsor signing key (the SponsorPaymaster pays for whatever it signs)",
        );
        let sponsor_signer = self.new_sponsor_key()?;

        // The operators' path (`attestmesh cluster deploy-infra` and `cluster create`), so the
        // devnet exercises exactly what a real deployment runs: deterministic CREATE2 for the
        // EntryPoint (published bytecode, canonical address), facets, factories, registry and
        // paymaster, then the paymaster deposit.
        step(
            4,
            "AttestMesh infra and one cluster through `cluster deploy-infra` / `cluster create` \
             (CREATE2; devtee KMS root allowlisted, any device, factory members)",
        );
        let mut exec = Executor::new(
            self.rpc.clone(),
            chain_id,
            Mode::Send(LocalKey::from_file(&key_file)?),
        );
        let infra = ops_infra::deploy_infra(
            &mut exec,
            &InfraOptions {
                owner: deployer,
                paymaster_signer: sponsor_signer,
                salt: ops_infra::default_salt(),
                entry_point: ops_infra::ENTRY_POINT_V07,
                paymaster_deposit: Some(U256::from(PAYMASTER_DEPOSIT_WEI)),
                // Staked as on Base: public bundlers refuse an unstaked paymaster that reads
                // its own storage.
                paymaster_stake: Some(ops_infra::PaymasterStake::PUBLIC_BUNDLER_MINIMUM),
                from_block: None,
                artifacts: ArtifactSource::Dir(cfg.repo.join("artifacts")),
            },
            None,
        )
        .await?;
        let deployments = infra.deployments;
        // The operator commands read it with `--deployments-dir <dir>/deployments`.
        deployments.save(&self.state.dir.join("deployments"))?;
        let mesh_cidr = attestmesh_core::mesh::MeshCidr::new(MESH_CIDR.0, MESH_CIDR.1)
            .map_err(|e| DevnetError::Setup(format!("mesh CIDR: {e}")))?;
        let cluster_cfg = ClusterConfig {
            owner: deployer,
            mesh_cidr,
            salt: B256::repeat_byte(1),
            kms_roots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
            compose_hashes: vec![],
            devices: vec![],
            app_ids: vec![],
            allow_any_device: true,
            require_tcb_up_to_date: false,
        };
        let plan = ops_cluster::plan_create(&exec, &deployments, &cluster_cfg, false).await?;
        ops_cluster::execute_create(&mut exec, &plan).await?;
        let c = &deployments.contracts;
        self.state.contracts = Contracts {
            entry_point: deployments.entry_point,
            cluster_diamond_factory: c.cluster_diamond_factory,
            cluster_member_factory: c.cluster_member_factory,
            cluster_init: c.cluster_init,
            sponsor_paymaster: c.sponsor_paymaster,
            indexer_registry: Some(c.indexer_registry),
            cluster: plan.predicted,
        };
        self.save()?;

        step(5, "sponsor service and the SponsorPaymaster deposit");
        self.start_sponsor().await?;

        step(
            6,
            "alto bundler (in the gateway namespace, not on the host)",
        );
        self.start_alto(cfg).await?;

        step(
            7,
            &format!(
                "dev gateway on :{GATEWAY_PORT} ({GATEWAY_DOMAIN}, routes for {} node slots and the Indexer)",
                self.state.gateway_slots
            ),
        );
        self.start_gateway().await?;

        step(
            8,
            "Indexer in its own CVM namespace (reached through the gateway) and its registry record",
        );
        self.start_indexer(&key_file).await?;

        step(
            9,
            &format!(
                "{} node namespaces, each with a devtee and a member contract from the factory",
                cfg.nodes
            ),
        );
        for i in 0..cfg.nodes {
            self.add_node_without_agent(i).await?;
        }

        let _: serde_json::Value = self
            .rpc
            .call(
                "evm_setIntervalMining",
                serde_json::json!([self.state.block_time]),
            )
            .await?;
        if !cfg.agents {
            step(10, "agents not started (--no-agents)");
            self.note("agents not started (--no-agents)")?;
            step(11, "ready");
            return Ok(());
        }
        if !has_subcommand(&self.state.exe, "node") {
            step(
                10,
                "agents skipped: this attestmesh build has no `node` subcommand yet",
            );
            self.note("agents skipped: this attestmesh build has no `node` subcommand")?;
            step(11, "ready");
            return Ok(());
        }
        step(
            10,
            &format!(
                "starting {} agents (`attestmesh node`), chain at {} s blocks",
                cfg.nodes, self.state.block_time
            ),
        );
        let t0 = Instant::now();
        for i in 0..cfg.nodes {
            self.start_agent(i)?;
        }
        step(11, "waiting until every node's /healthz is 200");
        let all: Vec<usize> = (0..cfg.nodes).collect();
        self.wait_healthy(&all, cfg.health_timeout, progress)
            .await?;
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.state.convergence_ms = Some(ms);
        self.save()?;
        Ok(())
    }
}
