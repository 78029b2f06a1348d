//! `devnet status`: what runs, every node's phase and liveness, as a table or JSON.

use super::*;

/// One row of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub namespace: String,
    pub member_contract: Address,
    pub member_id: B256,
    pub mesh_ip: Option<String>,
    pub phase: String,
    pub healthy: bool,
    pub live_peers: Option<u64>,
    pub agent_pid: Option<u32>,
    pub agent_running: bool,
    pub health_url: String,
    pub app_socket: PathBuf,
    pub dstack_socket: PathBuf,
    pub interface: String,
}

/// One service of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub pid: u32,
    pub running: bool,
    pub log: PathBuf,
}

/// What `status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub dir: PathBuf,
    pub chain_id: u64,
    pub block_time: u64,
    pub rpc_url: String,
    pub bundler_url: Option<String>,
    pub sponsor_url: Option<String>,
    pub indexer_url: Option<String>,
    pub gateway: String,
    pub gateway_domain: String,
    pub gateway_namespace: String,
    pub cluster: Address,
    pub contracts: Contracts,
    pub chain_head: Option<u64>,
    pub convergence_ms: Option<u64>,
    pub services: Vec<ServiceStatus>,
    pub nodes: Vec<NodeStatus>,
    pub notes: Vec<String>,
}

/// Reads the state and probes every process and every agent's health.
pub async fn status(dir: &Path) -> Result<Status, DevnetError> {
    let dn = Devnet::open(dir)?;
    let s = &dn.state;
    let head = dn.rpc.block_number().await.ok();
    let reach = dn.gateway()?;
    let mut nodes = Vec::new();
    for n in &s.nodes {
        let (n2, r2) = (n.clone(), reach.clone());
        let h = tokio::task::spawn_blocking(move || node_health(&r2, &n2))
            .await
            .ok()
            .flatten();
        let agent_running = n.agent.as_ref().is_some_and(|a| proc::alive(a.pid));
        let (phase, healthy, mesh_ip, live) = match &h {
            Some((code, v)) => (
                v["phase"].as_str().unwrap_or("?").to_owned(),
                *code == 200,
                v["mesh_ip"].as_str().map(str::to_owned),
                v["live_peers"].as_u64(),
            ),
            None if n.agent.is_none() => ("no agent".into(), false, None, None),
            None if agent_running => ("starting".into(), false, None, None),
            None => ("down".into(), false, None, None),
        };
        nodes.push(NodeStatus {
            name: format!("n{}", n.index),
            namespace: n.ns.clone(),
            member_contract: n.member_contract,
            member_id: n.member_id,
            mesh_ip,
            phase,
            healthy,
            live_peers: live,
            agent_pid: n.agent.as_ref().map(|a| a.pid),
            agent_running,
            health_url: reach.url(n.member_contract, HEALTH_PORT, "/healthz"),
            app_socket: n.agent_socket.clone(),
            dstack_socket: n.dstack_socket.clone(),
            interface: n.interface.clone(),
        });
    }
    Ok(Status {
        dir: s.dir.clone(),
        chain_id: s.chain_id,
        block_time: s.block_time,
        rpc_url: s.rpc_url.clone(),
        bundler_url: s.bundler_url.clone(),
        sponsor_url: s.sponsor_url.clone(),
        indexer_url: s.indexer_url.clone(),
        gateway: sock(s.services_addr, s.gateway_port).to_string(),
        gateway_domain: s.gateway_domain.clone(),
        gateway_namespace: s.gw_ns.clone(),
        cluster: s.contracts.cluster,
        contracts: s.contracts.clone(),
        chain_head: head,
        convergence_ms: s.convergence_ms,
        services: s
            .services
            .iter()
            .map(|p| ServiceStatus {
                name: p.name.clone(),
                pid: p.pid,
                running: proc::alive(p.pid),
                log: p.log.clone(),
            })
            .collect(),
        nodes,
        notes: s.notes.clone(),
    })
}

/// The human-readable form of [`Status`].
pub fn render_status(st: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "devnet {}", st.dir.display());
    let _ = writeln!(
        o,
        "  chain    {} (chain id {}, {} s blocks, head {})",
        st.rpc_url,
        st.chain_id,
        st.block_time,
        st.chain_head
            .map_or("unreachable".into(), |h| h.to_string())
    );
    let _ = writeln!(o, "  cluster  {}", st.cluster);
    let _ = writeln!(
        o,
        "  bundler  {}   sponsor {}   indexer {}",
        st.bundler_url.as_deref().unwrap_or("-"),
        st.sponsor_url.as_deref().unwrap_or("-"),
        st.indexer_url.as_deref().unwrap_or("-")
    );
    let _ = writeln!(o, "  gateway  {} ({})", st.gateway, st.gateway_domain);
    let svc: Vec<String> = st
        .services
        .iter()
        .map(|s| format!("{}{}", s.name, if s.running { "" } else { " (DOWN)" }))
        .collect();
    let _ = writeln!(o, "  services {}", svc.join(", "));
    if let Some(ms) = st.convergence_ms {
        let _ = writeln!(
            o,
            "  converged in {:.1} s after the agents started",
            ms as f64 / 1000.0
        );
    }
    for n in &st.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o.push('\n');
    o.push_str(&render_nodes(&st.nodes));
    o
}

/// The node table of [`render_status`] (header and one row per node), also printed alone by
/// `devnet add` for the node it added.
pub fn render_nodes(nodes: &[NodeStatus]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "  {:<4} {:<10} {:<42} {:<15} {:<14} {:>5}  {:<8}",
        "node", "namespace", "member contract", "mesh IP", "phase", "peers", "agent"
    );
    for n in nodes {
        let _ = writeln!(
            o,
            "  {:<4} {:<10} {:<42} {:<15} {:<14} {:>5}  {:<8}",
            n.name,
            n.namespace,
            n.member_contract.to_string(),
            n.mesh_ip.as_deref().unwrap_or("-"),
            n.phase,
            n.live_peers.map_or("-".into(), |p| p.to_string()),
            match (n.agent_pid, n.agent_running) {
                (Some(pid), true) => pid.to_string(),
                (Some(_), false) => "exited".into(),
                (None, _) => "-".into(),
            }
        );
    }
    o
}
