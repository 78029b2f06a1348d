//! The shared services of the devnet: sponsor, bundler and dev gateway in the gateway namespace
//! ("the internet"); the Indexer in its own CVM namespace behind the gateway.

use attestmesh_ops::exec::{Executor, LocalKey, Mode};

use super::*;

impl Devnet {
    /// A fresh sponsor signing key per devnet, written to `sponsor.key`: the paymaster trusts
    /// whatever this key signs. Returns its address (the paymaster's `signer`).
    pub(super) fn new_sponsor_key(&self) -> Result<Address, DevnetError> {
        loop {
            let mut bytes = [0u8; 32];
            std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
            if let Ok(k) = OwnerKey::from_bytes(&bytes) {
                write_secret(
                    &self.state.dir.join("sponsor.key"),
                    &alloy_primitives::hex::encode(bytes),
                )?;
                return Ok(k.address());
            }
        }
    }

    /// Starts the sponsor service for the paymaster `deploy-infra` deployed and funded.
    pub(super) async fn start_sponsor(&mut self) -> Result<(), DevnetError> {
        let paymaster = self.state.contracts.sponsor_paymaster;
        let dir = self.state.dir.clone();
        let argv = vec![
            self.exe(),
            "sponsor".into(),
            "--listen".into(),
            format!("0.0.0.0:{SPONSOR_PORT}"),
            "--rpc-url".into(),
            self.state.rpc_url.clone(),
            "--chain-id".into(),
            self.state.chain_id.to_string(),
            "--entry-point".into(),
            self.state.contracts.entry_point.to_string(),
            "--paymaster".into(),
            paymaster.to_string(),
            "--member-factory".into(),
            self.state.contracts.cluster_member_factory.to_string(),
            "--cluster-factory".into(),
            self.state.contracts.cluster_diamond_factory.to_string(),
            "--signer-key-file".into(),
            dir.join("sponsor.key").display().to_string(),
            "--db-path".into(),
            dir.join("sponsor.redb").display().to_string(),
            "--daily-cap".into(),
            "100000".into(),
            // The sponsor pays for this devnet's own cluster only (the factories are open).
            "--trusted-cluster".into(),
            self.state.contracts.cluster.to_string(),
            // Lab runs send many operations from few nodes: budgets and the per-client rate
            // limit far above production defaults, the gas and fee bounds as in production.
            "--daily-wei-per-sender".into(),
            "1000000000000000000000".into(),
            "--daily-wei-per-cluster".into(),
            "1000000000000000000000".into(),
            "--rate-limit-per-sec".into(),
            "500".into(),
            "--rate-limit-burst".into(),
            "1000".into(),
        ];
        let rec = self.spawn_service("sponsor", argv, vec![("LOG".into(), "info".into())])?;
        let url = self.services_url(SPONSOR_PORT);
        let client = RpcClient::new(&url)?.with_timeout(Duration::from_secs(2));
        wait_for(
            "the sponsor service",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                check_running(&rec)?;
                Ok(client
                    .call::<Vec<Address>>("pm_supportedEntryPoints", serde_json::json!([]))
                    .await
                    .ok())
            },
        )
        .await?;
        self.state.sponsor_url = Some(url);
        self.save()
    }

    pub(super) async fn start_alto(&mut self, cfg: &UpConfig) -> Result<(), DevnetError> {
        // alto binds 0.0.0.0 — inside the gateway namespace that is the namespace's own
        // addresses only, so the executor keys' bundler is not exposed on the host's network.
        let alto = AltoConfig::from_repo(&cfg.repo, &self.state.rpc_url, &self.state.dir);
        let argv = vec![
            alto.node.display().to_string(),
            alto.alto_js.display().to_string(),
            "--entrypoints".into(),
            self.state.contracts.entry_point.to_string(),
            "--executor-private-keys".into(),
            ANVIL_KEY_8.into(),
            "--utility-private-key".into(),
            ANVIL_KEY_9.into(),
            "--rpc-url".into(),
            self.state.rpc_url.clone(),
            "--port".into(),
            BUNDLER_PORT.to_string(),
            "--safe-mode".into(),
            "false".into(),
            "--log-level".into(),
            "warn".into(),
        ];
        let rec = self.spawn_service("alto", argv, vec![])?;
        let url = self.services_url(BUNDLER_PORT);
        let client = RpcClient::new(&url)?.with_timeout(Duration::from_secs(2));
        let ep = self.state.contracts.entry_point;
        wait_for(
            "alto",
            Duration::from_secs(90),
            Duration::from_millis(200),
            || async {
                check_running(&rec)?;
                match client
                    .call::<Vec<Address>>("eth_supportedEntryPoints", serde_json::json!([]))
                    .await
                {
                    Ok(eps) if eps.contains(&ep) => Ok(Some(())),
                    Ok(eps) => Err(format!("alto serves {eps:?}, not {ep}")),
                    Err(_) => Ok(None),
                }
            },
        )
        .await?;
        self.state.bundler_url = Some(url);
        self.save()
    }

    /// Whether this devnet runs an Indexer (the binary has the subcommand and the infra has a
    /// registry); the gateway's routes are written before the Indexer starts.
    fn indexer_planned(&self) -> bool {
        self.state.contracts.indexer_registry.is_some()
            && has_subcommand(&self.state.exe, "indexer")
    }

    /// The Indexer in its own "CVM": a namespace linked only to the gateway namespace, its own
    /// devtee, reached — by agents and by the operator alike — only through the gateway, which
    /// terminates TLS for `<registry>-<port>.<domain>` (its app id is the registry, like its
    /// devtee's). Then its record is published as an operator does: the key read from its
    /// `/healthz` through the gateway, `cluster indexer register`.
    pub(super) async fn start_indexer(&mut self, key_file: &Path) -> Result<(), DevnetError> {
        if !has_subcommand(&self.state.exe, "indexer") {
            return self.note("no Indexer: this attestmesh build has no `indexer` subcommand; agents poll the chain");
        }
        let Some(registry) = self.state.contracts.indexer_registry else {
            return self.note("no Indexer: no IndexerRegistry");
        };
        let p = self.state.prefix.clone();
        let ns = format!("{p}ix");
        let (gw_addr, addr) = netns::indexer_link_addrs();
        netns::create_node(
            &self.state.gw_ns,
            &ns,
            &format!("{p}gx"),
            &format!("{p}vx"),
            gw_addr,
            addr,
        )?;
        self.state.indexer_ns = Some(ns.clone());
        self.save()?;
        let idir = self.state.dir.join("indexer");
        std::fs::create_dir_all(&idir)?;
        let dstack = idir.join("dstack.sock");
        let tee = self.spawn_service_in(
            &ns,
            "indexer-devtee",
            vec![
                self.exe(),
                "devtee".into(),
                "--socket".into(),
                dstack.display().to_string(),
                "--app-id".into(),
                registry.to_string(),
            ],
            vec![("LOG".into(), "warn".into())],
        )?;
        wait_socket("the Indexer's devtee", &tee, &dstack).await?;
        let argv = vec![
            self.exe(),
            "indexer".into(),
            "run".into(),
            "--rpc-url".into(),
            self.state.rpc_url.clone(),
            "--cluster-factory".into(),
            self.state.contracts.cluster_diamond_factory.to_string(),
            "--grpc-listen".into(),
            format!("0.0.0.0:{INDEXER_GRPC_PORT}"),
            "--http-listen".into(),
            format!("0.0.0.0:{INDEXER_HTTP_PORT}"),
            "--state-dir".into(),
            idir.join("state").display().to_string(),
            "--dstack-socket".into(),
            dstack.display().to_string(),
        ];
        let rec =
            self.spawn_service_in(&ns, "indexer", argv, vec![("LOG".into(), "info".into())])?;
        let reach = self.gateway()?;
        let health_reach = reach.clone();
        let health = wait_for(
            "the Indexer (through the gateway)",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let (reach, rec) = (health_reach.clone(), rec.clone());
                async move {
                    check_running(&rec)?;
                    let h = tokio::task::spawn_blocking(move || {
                        reach.get_json(registry, INDEXER_HTTP_PORT, "/healthz")
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    Ok(h.filter(|(code, _)| *code == 200).map(|(_, v)| v))
                }
            },
        )
        .await?;
        let pubkey: B256 = health["pubkey"]
            .as_str()
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| {
                DevnetError::Setup(format!("the Indexer's /healthz has no pubkey: {health}"))
            })?;
        let endpoint = reach.url(registry, INDEXER_GRPC_PORT, "");
        // The operators' path (`attestmesh cluster indexer register`).
        let mut exec = Executor::new(
            self.rpc.clone(),
            self.state.chain_id,
            Mode::Send(LocalKey::from_file(key_file)?),
        );
        attestmesh_ops::indexer::register(
            &mut exec,
            registry,
            &endpoint,
            attestmesh_tee::devtee::default_compose_hash(),
            pubkey,
        )
        .await?;
        self.state.indexer_url = Some(endpoint);
        self.save()
    }

    pub(super) async fn start_gateway(&mut self) -> Result<(), DevnetError> {
        let mut routes = String::from("# <app id> <node address>: one line per node slot\n");
        for i in 0..self.state.gateway_slots {
            let member = self.predict_member(i).await?;
            let (_, addr) = netns::node_link_addrs(i)?;
            routes.push_str(&format!("{member:x} {addr}\n"));
        }
        if let Some(registry) = self.state.contracts.indexer_registry
            && self.indexer_planned()
        {
            routes.push_str(&format!(
                "# the Indexer's CVM (its app id is the registry)\n{registry:x} {}\n",
                netns::indexer_link_addrs().1
            ));
        }
        let file = self.state.dir.join("gateway.routes");
        std::fs::write(&file, routes)?;
        // The gateway's dev CA: it terminates `<app>-<port>.<domain>` under `*.<domain>`;
        // agents trust the CA (INDEXER_CA_FILE) as they trust a real gateway's public root.
        let ca = attestmesh_net::tls::dev_ca(GATEWAY_DOMAIN)
            .map_err(|e| DevnetError::Setup(format!("gateway dev CA: {e}")))?;
        let (cert, key) = (
            self.state.dir.join("gateway-cert.pem"),
            self.state.dir.join("gateway-key.pem"),
        );
        std::fs::write(self.gateway_ca_file(), &ca.ca_pem)?;
        std::fs::write(&cert, &ca.leaf_pem)?;
        attestmesh_atomicfile::write(&key, ca.leaf_key_pem.as_bytes(), 0o600)?;
        let argv = vec![
            self.exe(),
            "gateway".into(),
            "--listen".into(),
            format!("0.0.0.0:{GATEWAY_PORT}"),
            "--domain".into(),
            GATEWAY_DOMAIN.into(),
            "--route-file".into(),
            file.display().to_string(),
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
        ];
        let rec = self.spawn_service("gateway", argv, vec![("LOG".into(), "info".into())])?;
        let at = sock(self.state.services_addr, GATEWAY_PORT);
        wait_for(
            "the dev gateway",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                check_running(&rec)?;
                Ok(
                    std::net::TcpStream::connect_timeout(&at, Duration::from_millis(500))
                        .ok()
                        .map(|_| ()),
                )
            },
        )
        .await
    }
}

/// Waits until a devtee's socket exists (the file appears once it listens).
pub(super) async fn wait_socket(
    what: &str,
    rec: &ProcRecord,
    socket: &Path,
) -> Result<(), DevnetError> {
    wait_for(
        what,
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            check_running(rec)?;
            Ok(socket.exists().then_some(()))
        },
    )
    .await
}
