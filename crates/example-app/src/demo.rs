//! `demo`: every step of the example against one peer, meant to run on two nodes at once (each
//! one's peer being the other): wait for healthy, list peers, derive the application key, serve
//! the echo on our mesh IP, send the peer a sealed message and receive theirs, and run the
//! authenticated exchange in both directions.
//!
//! Symmetric on purpose: it shows both halves of every interaction (sender and receiver, client
//! and server) with one command, and a run succeeds only if both nodes hold the same CSK, see
//! each other in chain state, and reach each other over the mesh.

use std::time::{Duration, Instant};

use crate::agent::{Agent, PeerInfo, Received, Sent, describe};
use crate::echo::{self, EchoError, EchoServer, PingReport, Served};
use crate::error::AppError;
use crate::ids::PeerSpec;

/// How far back (in blocks) the demo replays messages, so a peer that started a little earlier
/// and already sent is not missed. Subscribing "from now" would race with the peer.
pub const DEFAULT_LOOKBACK_BLOCKS: u64 = 100;

#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The peer; default: the first live peer.
    pub peer: Option<PeerSpec>,
    /// Echo port, ours and the peer's.
    pub port: u16,
    /// Limit of each waiting step (healthy, the peer's echo server, the peer's message, the
    /// peer's ping).
    pub timeout: Duration,
    /// The message to send; default names this node.
    pub text: Option<String>,
    /// Do not wait for the peer's message nor its ping (the peer only runs `serve-echo`).
    pub one_sided: bool,
    pub lookback_blocks: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            peer: None,
            port: echo::DEFAULT_PORT,
            timeout: Duration::from_secs(120),
            text: None,
            one_sided: false,
            lookback_blocks: DEFAULT_LOOKBACK_BLOCKS,
        }
    }
}

/// What the demo established.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub me: PeerInfo,
    pub peer: PeerInfo,
    pub app_key_fingerprint: String,
    pub sent: Sent,
    pub received: Option<Received>,
    pub ping: PingReport,
    pub served: Option<Served>,
}

/// Runs the demo, narrating each step through `log`.
pub async fn run(
    agent: &mut Agent,
    cfg: &DemoConfig,
    log: &mut (dyn FnMut(String) + Send),
) -> Result<DemoReport, AppError> {
    log(format!(
        "waiting for the agent on {} to be healthy",
        agent.socket().display()
    ));
    let status = agent
        .wait_healthy(cfg.timeout, |s| log(format!("  {}", describe(s))))
        .await?;

    let me = agent.me().await?;
    log(format!("this node: {} mesh IP {}", me.id, me.mesh_ip));
    let peers = agent.peers().await?;
    for p in &peers {
        log(format!(
            "peer: {} mesh IP {} {}",
            p.id,
            p.mesh_ip,
            if p.live { "live" } else { "not live" }
        ));
    }
    let peer = match &cfg.peer {
        Some(spec) => crate::agent::resolve(&peers, spec)?,
        None => peers
            .iter()
            .find(|p| p.live)
            .or_else(|| peers.first())
            .cloned()
            .ok_or(AppError::NoPeers)?,
    };
    log(format!("demo peer: {} mesh IP {}", peer.id, peer.mesh_ip));

    let key = agent.app_key(None).await?;
    let fingerprint = key.fingerprint();
    log(format!("app key fingerprint: {fingerprint}"));

    // Our half of the exchange first, so the peer can reach us while we reach it.
    let listener = echo::bind(&me, cfg.port).await?;
    log(format!("serving the echo on {}:{}", me.mesh_ip, cfg.port));
    let (served_tx, mut served_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = EchoServer::new(key.clone(), me.id, agent.clone());
    let server_task = tokio::spawn(server.run(listener, served_tx, async {
        let _ = stop_rx.await;
    }));
    let result = steps(
        agent,
        cfg,
        log,
        &me,
        &peer,
        &key,
        status.chain_head,
        &mut served_rx,
    )
    .await;
    let _ = stop_tx.send(());
    let _ = server_task.await;
    let (sent, received, ping, served) = result?;
    Ok(DemoReport {
        me,
        peer,
        app_key_fingerprint: fingerprint,
        sent,
        received,
        ping,
        served,
    })
}

type Steps = (Sent, Option<Received>, PingReport, Option<Served>);

#[allow(clippy::too_many_arguments)]
async fn steps(
    agent: &mut Agent,
    cfg: &DemoConfig,
    log: &mut (dyn FnMut(String) + Send),
    me: &PeerInfo,
    peer: &PeerInfo,
    key: &crate::AppKey,
    head: u64,
    served_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Served>,
) -> Result<Steps, AppError> {
    // Subscribe before sending anything, replaying a little history (see DEFAULT_LOOKBACK_BLOCKS).
    let from_block = head.saturating_sub(cfg.lookback_blocks).max(1);
    let mut inbox = if cfg.one_sided {
        None
    } else {
        log(format!("subscribing to messages from block {from_block}"));
        Some(agent.subscribe(from_block).await?)
    };

    let text = cfg
        .text
        .clone()
        .unwrap_or_else(|| format!("hello from {} (attestmesh example)", me.id));
    let sent = agent.send(peer.id, text.as_bytes()).await?;
    log(format!(
        "sent {} bytes to {}: envelope 0x{} tx 0x{}",
        text.len(),
        peer.id,
        hex::encode(sent.envelope_id),
        hex::encode(sent.tx_hash)
    ));

    let ping = ping_until(key, me, peer, cfg.port, cfg.timeout, log).await?;
    log(format!(
        "ping {} at {}: ok, peer proved the same app key, echoed {} bytes in {:?}",
        ping.peer,
        ping.addr,
        ping.echoed.len(),
        ping.rtt
    ));

    let mut received = None;
    if let Some(inbox) = inbox.as_mut() {
        let deadline = Instant::now() + cfg.timeout;
        loop {
            let m = inbox
                .next_within(deadline.saturating_duration_since(Instant::now()))
                .await
                .map_err(|e| match e {
                    AppError::Timeout { waited, .. } => AppError::Timeout {
                        waited,
                        what: format!("a message from {}", peer.id),
                    },
                    e => e,
                })?;
            if m.sender == peer.id {
                log(format!(
                    "received from {} (block {}, envelope 0x{}): {}",
                    m.sender,
                    m.block_number,
                    hex::encode(m.envelope_id),
                    m.text()
                ));
                received = Some(m);
                break;
            }
            log(format!("(skipping a message from {})", m.sender));
        }
    }

    let mut served = None;
    if !cfg.one_sided {
        let deadline = Instant::now() + cfg.timeout;
        loop {
            let s = tokio::time::timeout(
                deadline.saturating_duration_since(Instant::now()),
                served_rx.recv(),
            )
            .await
            .map_err(|_| AppError::Timeout {
                waited: cfg.timeout,
                what: format!("{} to complete an exchange with our echo server", peer.id),
            })?
            .ok_or(AppError::StreamEnded("echo server"))?;
            match &s.result {
                Ok(n) if s.client == Some(peer.id) => {
                    log(format!(
                        "served {} from {}: ok, {n} bytes echoed",
                        peer.id, s.source
                    ));
                    served = Some(s);
                    break;
                }
                Ok(_) => log(format!("served another member from {}", s.source)),
                Err(e) => log(format!("refused an exchange from {}: {e}", s.source)),
            }
        }
    }
    Ok((sent, received, ping, served))
}

/// Pings until the peer's echo server answers (it may still be starting), failing at once on
/// anything but "not reachable yet".
pub async fn ping_until(
    key: &crate::AppKey,
    me: &PeerInfo,
    peer: &PeerInfo,
    port: u16,
    timeout: Duration,
    log: &mut (dyn FnMut(String) + Send),
) -> Result<PingReport, AppError> {
    let deadline = Instant::now() + timeout;
    let payload = format!("challenge from {}", me.id);
    let mut said = false;
    loop {
        match echo::ping(key, me, peer, port, payload.as_bytes()).await {
            Ok(r) => return Ok(r),
            Err(e @ (EchoError::Connect { .. } | EchoError::Timeout(_)))
                if Instant::now() < deadline =>
            {
                if !said {
                    log(format!("waiting for {}'s echo server: {e}", peer.id));
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
