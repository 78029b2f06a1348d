//! The chain half of `devnet up`: anvil, EntryPoint v0.7, the AttestMesh infra, one cluster,
//! the paymaster deposit.

use super::*;

impl Devnet {
    pub(super) async fn build(
        &mut self,
        cfg: &UpConfig,
        progress: Progress<'_>,
    ) -> Result<(), DevnetError> {
        let total = 11;
        let step = |n: usize, msg: &str| progress(&format!("[{n}/{total}] {msg}"));
        let artifacts = Artifacts::new(cfg.repo.join("artifacts"));

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
            "EntryPoint v0.7 at its canonical address (published artifact, deterministic deployer)",
        );
        let entry_point = devstack::deploy_entry_point(&self.rpc, deployer, &artifacts).await?;
        self.state.contracts.entry_point = entry_point;

        step(
            4,
            "AttestMesh infra and one cluster (devtee KMS root allowlisted, any device, factory members)",
        );
        let infra = deploy::deploy_infra(&self.rpc, deployer, &artifacts, entry_point).await?;
        let registry = deploy::deploy(
            &self.rpc,
            deployer,
            &artifacts,
            "IndexerRegistry",
            &deployer.abi_encode(),
        )
        .await?;
        let cidr = attestmesh_core::mesh::MeshCidr::new(MESH_CIDR.0, MESH_CIDR.1)
            .map_err(|e| DevnetError::Setup(format!("mesh CIDR: {e}")))?;
        let args = ClusterInitArgs {
            clusterOwner: deployer,
            meshCidrIp: cidr.ip(),
            meshPrefix: cidr.prefix(),
            memberFactory: infra.member_factory,
            kmsRoots: vec![attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS],
            composeHashes: vec![],
            devices: vec![],
            appIds: vec![],
            allowAnyDevice: true,
            requireTcbUpToDate: false,
        };
        let cluster =
            deploy::deploy_cluster(&self.rpc, deployer, &infra, args, B256::repeat_byte(1)).await?;
        self.state.contracts = Contracts {
            entry_point,
            cluster_diamond_factory: infra.diamond_factory,
            cluster_member_factory: infra.member_factory,
            cluster_init: infra.cluster_init,
            sponsor_paymaster: Address::ZERO,
            indexer_registry: Some(registry),
            cluster,
        };
        self.save()?;

        step(5, "sponsor service and the SponsorPaymaster deposit");
        self.start_sponsor(&artifacts).await?;

        step(
            6,
            "alto bundler (in the gateway namespace, not on the host)",
        );
        self.start_alto(cfg).await?;

        step(7, "Indexer and its registry record");
        self.start_indexer(&key_file).await?;

        step(
            8,
            &format!(
                "dev gateway on :{GATEWAY_PORT} ({GATEWAY_DOMAIN}, routes for {} node slots)",
                self.state.gateway_slots
            ),
        );
        self.start_gateway().await?;

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
