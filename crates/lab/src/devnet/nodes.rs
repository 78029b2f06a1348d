//! Node slots: member contracts, devtee + agent per namespace, health and the wait for healthy.

use super::*;

impl Devnet {
    pub(super) async fn predict_member(&self, i: usize) -> Result<Address, DevnetError> {
        Ok(attestmesh_chain::read::view(
            &self.rpc,
            self.state.contracts.cluster_member_factory,
            IClusterMemberFactory::predictMemberAddressCall {
                cluster: self.state.contracts.cluster,
                salt: member_salt(i),
            },
            attestmesh_chain::read::BlockTag::Latest,
        )
        .await
        .map_err(deploy::DeployError::from)?)
    }

    /// Node slot `i`: namespace and link, member contract through the factory (the operator
    /// pays; the node holds no ETH), devtee serving that app id.
    pub(super) async fn add_node_without_agent(&mut self, i: usize) -> Result<(), DevnetError> {
        if i >= self.state.gateway_slots {
            return Err(DevnetError::Setup(format!(
                "node slot {i} has no gateway route (the gateway was started with {} slots)",
                self.state.gateway_slots
            )));
        }
        let p = self.state.prefix.clone();
        let ns = format!("{p}n{i}");
        let (gw_addr, addr) = netns::node_link_addrs(i)?;
        let ndir = self.state.dir.join("nodes").join(format!("n{i}"));
        std::fs::create_dir_all(&ndir)?;
        let cluster = self.state.contracts.cluster;
        let record = NodeRecord {
            index: i,
            ns: ns.clone(),
            addr,
            gw_addr,
            gw_if: format!("{p}g{i}"),
            node_if: format!("{p}v{i}"),
            member_contract: Address::ZERO,
            member_id: B256::ZERO,
            interface: format!("{p}w{i}"),
            dstack_socket: ndir.join("dstack.sock"),
            agent_socket: ndir.join("agent.sock"),
            state_dir: ndir.join("state"),
            health_addr: HEALTH_ADDR.into(),
            devtee: None,
            agent: None,
        };
        for s in [&record.dstack_socket, &record.agent_socket] {
            if s.as_os_str().len() > 107 {
                return Err(DevnetError::Setup(format!(
                    "{} is longer than a unix socket path may be (107 bytes): use a shorter --dir",
                    s.display()
                )));
            }
        }
        self.state.nodes.push(record);
        self.save()?;
        let n = self.state.nodes.len() - 1;
        {
            let r = &self.state.nodes[n];
            netns::create_node(
                &self.state.gw_ns,
                &r.ns,
                &r.gw_if,
                &r.node_if,
                r.gw_addr,
                r.addr,
            )?;
        }
        let member = self.predict_member(i).await?;
        let call = IClusterMemberFactory::deployMemberCall {
            cluster,
            salt: member_salt(i),
        };
        self.rpc
            .transact(
                self.state.deployer,
                Some(self.state.contracts.cluster_member_factory),
                &call.abi_encode(),
            )
            .await?;
        if self.rpc.code_at(member).await?.is_empty() {
            return Err(DevnetError::Setup(format!(
                "the member factory did not deploy node {i}'s member at {member}"
            )));
        }
        self.state.nodes[n].member_contract = member;
        self.state.nodes[n].member_id = attestmesh_core::ids::member_id(
            cluster,
            member,
            attestmesh_core::ids::DSTACK_ATTESTOR_ID,
        );
        let socket = self.state.nodes[n].dstack_socket.clone();
        let _ = std::fs::remove_file(&socket);
        let argv = vec![
            self.exe(),
            "devtee".into(),
            "--socket".into(),
            socket.display().to_string(),
            "--app-id".into(),
            member.to_string(),
        ];
        let log = self.log_path(&format!("n{i}-devtee"));
        let rec = proc::spawn_in_ns(
            &format!("n{i}-devtee"),
            &ns,
            &argv,
            &[("LOG".into(), "warn".into())],
            &log,
        )?;
        self.state.nodes[n].devtee = Some(rec.clone());
        self.save()?;
        wait_socket(&format!("node {i}'s devtee"), &rec, &socket).await
    }

    /// Adds node `index = nodes.len()` to a running devnet and starts its agent (the
    /// "a node joins later" path).
    pub async fn add_node(&mut self) -> Result<usize, DevnetError> {
        let i = self.state.nodes.len();
        self.add_node_without_agent(i).await?;
        self.start_agent(i)?;
        Ok(i)
    }

    /// The agent's command line for node `i`.
    pub(super) fn agent_argv(&self, i: usize) -> Result<Vec<String>, DevnetError> {
        let n = self
            .state
            .nodes
            .get(i)
            .ok_or_else(|| DevnetError::Setup(format!("no node {i}")))?;
        let s = &self.state;
        let need = |v: &Option<String>, what: &str| {
            v.clone()
                .ok_or_else(|| DevnetError::Setup(format!("{what} is not running")))
        };
        let mut argv = vec![
            self.exe(),
            "node".into(),
            "--dstack-socket".into(),
            n.dstack_socket.display().to_string(),
            "--rpc-url".into(),
            s.rpc_url.clone(),
            "--bundler-url".into(),
            need(&s.bundler_url, "the bundler")?,
            "--paymaster-url".into(),
            need(&s.sponsor_url, "the sponsor service")?,
            "--chain-id".into(),
            s.chain_id.to_string(),
            "--entry-point".into(),
            s.contracts.entry_point.to_string(),
            "--gateway-domain".into(),
            s.gateway_domain.clone(),
            "--gateway-connect".into(),
            sock(s.services_addr, s.gateway_port).to_string(),
            "--agent-socket".into(),
            n.agent_socket.display().to_string(),
            "--health-addr".into(),
            n.health_addr.clone(),
            "--state-dir".into(),
            n.state_dir.display().to_string(),
            "--interface".into(),
            n.interface.clone(),
            "--heartbeat-interval-ms".into(),
            s.heartbeat_interval_ms.to_string(),
            "--poll-interval-ms".into(),
            s.poll_interval_ms.to_string(),
        ];
        if s.indexer_url.is_some()
            && let Some(r) = s.contracts.indexer_registry
        {
            argv.extend(["--indexer-registry".into(), r.to_string()]);
            argv.extend([
                "--indexer-ca-file".into(),
                self.gateway_ca_file().display().to_string(),
            ]);
            // The devnet's Indexer runs on devtee; anvil's chain id lets the agent accept it.
            argv.push("--indexer-allow-simulated-quotes".into());
        }
        Ok(argv)
    }

    /// Starts (or restarts) node `i`'s agent with the same settings, state directory and keys.
    pub fn start_agent(&mut self, i: usize) -> Result<(), DevnetError> {
        let argv = self.agent_argv(i)?;
        let n = &self.state.nodes[i];
        let _ = std::fs::remove_file(&n.agent_socket);
        let log = self.log_path(&format!("n{i}-agent"));
        let rec = proc::spawn_in_ns(
            &format!("n{i}-agent"),
            &n.ns,
            &argv,
            &[("LOG".into(), "info".into())],
            &log,
        )?;
        self.state.nodes[i].agent = Some(rec);
        self.save()
    }

    /// `kill -9` of node `i`'s agent: no chance to clean up, like a crashed VM.
    pub fn kill_agent(&mut self, i: usize) -> Result<(), DevnetError> {
        let Some(rec) = self.state.nodes.get(i).and_then(|n| n.agent.clone()) else {
            return Err(DevnetError::Setup(format!("node {i} has no agent")));
        };
        proc::kill9(rec.pid);
        // A killed userspace WireGuard leaves its UAPI socket behind.
        let _ = std::fs::remove_file(wg_socket(&self.state.nodes[i].interface));
        Ok(())
    }

    /// Node `i`'s `/healthz`: (HTTP status, JSON body), fetched through the gateway.
    pub fn health(&self, i: usize) -> Option<(u16, serde_json::Value)> {
        let n = self.state.nodes.get(i)?;
        node_health(&self.gateway().ok()?, n)
    }

    /// Waits until every listed node answers 200 on `/healthz`, reporting phase changes.
    pub async fn wait_healthy(
        &self,
        nodes: &[usize],
        limit: Duration,
        progress: Progress<'_>,
    ) -> Result<Duration, DevnetError> {
        let t0 = Instant::now();
        let reach = self.gateway()?;
        let mut last: Vec<String> = vec![String::new(); self.state.nodes.len()];
        loop {
            let mut all = true;
            for &i in nodes {
                let Some(n) = self.state.nodes.get(i) else {
                    return Err(DevnetError::Setup(format!("no node {i}")));
                };
                if let Some(a) = &n.agent
                    && !proc::alive(a.pid)
                {
                    return Err(DevnetError::Setup(format!(
                        "node {i}'s agent exited; last log lines ({}):\n{}",
                        a.log.display(),
                        proc::log_tail(&a.log, 20)
                    )));
                }
                let (n2, r2) = (n.clone(), reach.clone());
                let h = tokio::task::spawn_blocking(move || node_health(&r2, &n2))
                    .await
                    .ok()
                    .flatten();
                let (ok, phase) = match &h {
                    Some((200, _)) => (true, "healthy".to_owned()),
                    Some((_, v)) => (false, v["phase"].as_str().unwrap_or("?").to_owned()),
                    None => (false, "starting".to_owned()),
                };
                if let Some(l) = last.get_mut(i)
                    && *l != phase
                {
                    progress(&format!(
                        "      n{i}: {phase} ({:.1} s)",
                        t0.elapsed().as_secs_f64()
                    ));
                    *l = phase;
                }
                all &= ok;
            }
            if all {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > limit {
                return Err(DevnetError::NotReady {
                    what: "every node healthy".into(),
                    after: limit,
                    detail: format!(
                        "see the agents' logs in {}",
                        self.state.dir.join("logs").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The UAPI socket a userspace WireGuard interface serves (`wg show` reads it).
pub(super) fn wg_socket(interface: &str) -> PathBuf {
    PathBuf::from("/var/run/wireguard").join(format!("{interface}.sock"))
}

/// A node's `/healthz` through the gateway, as an operator reaches it on dstack.
pub(super) fn node_health(
    reach: &GatewayReach,
    n: &NodeRecord,
) -> Option<(u16, serde_json::Value)> {
    reach.get_json(n.member_contract, HEALTH_PORT, "/healthz")
}

/// Secrets of the dev stack (published or throwaway keys) still get mode 0600.
pub(super) fn write_secret(path: &Path, text: &str) -> Result<(), DevnetError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}
