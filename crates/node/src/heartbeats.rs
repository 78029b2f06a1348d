//! The heartbeat I/O shell (DESIGN §7) around `attestmesh_core::liveness::Liveness`.
//!
//! A UDP socket bound to `<mesh IP>:HEARTBEAT_PORT` (so heartbeats only ever travel inside
//! WireGuard), a send tick per interval to every routable member, and every received datagram
//! handed to the sans-IO state machine with its source IP. Membership and keys come from the
//! published chain view only. Up/down transitions become app-API events; the live table and the
//! convergence flag go to the shared state that `/healthz` reads.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use attestmesh_core::liveness::{Event, Liveness, MemberInfo};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::state::{
    ClusterView, Metrics, PeerEvent, PeerEventKind, PeerLiveness, Shared, now_unix_ms,
};

/// How often liveness is re-evaluated between packets: fine enough that a dead peer is reported
/// within "3 intervals + 1" (DESIGN §13) for any interval ≥ 100 ms.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Chain-state facts for liveness: routable members only (a colliding member's heartbeats would
/// arrive from the earlier member's IP, so it is not tracked at all).
pub fn members_of(view: &ClusterView) -> HashMap<B256, MemberInfo> {
    view.members
        .iter()
        .filter(|m| m.routable)
        .map(|m| {
            (
                m.id,
                MemberInfo {
                    ed_pub: m.ed_pub,
                    mesh_ip: m.mesh_ip,
                },
            )
        })
        .collect()
}

/// The heartbeat task.
pub struct Heartbeats {
    pub socket: UdpSocket,
    pub liveness: Liveness,
    pub shared: Arc<Shared>,
    pub port: u16,
    pub interval: Duration,
}

impl Heartbeats {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut cluster_rx: watch::Receiver<Option<Arc<ClusterView>>> = self.shared.watch_cluster();
        let mut targets: Vec<Ipv4Addr> = Vec::new();
        let me = *self.liveness.self_id();
        let mut last_seen: HashMap<B256, u64> = HashMap::new();
        if let Some(v) = cluster_rx.borrow_and_update().clone() {
            targets = self.apply_view(&v, &me);
        }
        let mut send_tick = tokio::time::interval(self.interval);
        send_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll_tick = tokio::time::interval(POLL_EVERY);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = [0u8; 2048];
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                changed = cluster_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(v) = cluster_rx.borrow_and_update().clone() {
                        targets = self.apply_view(&v, &me);
                    }
                }
                _ = send_tick.tick() => {
                    let hb = self.liveness.make_heartbeat(now_unix_ms());
                    for ip in &targets {
                        match self.socket.send_to(&hb, SocketAddr::from((*ip, self.port))).await {
                            Ok(_) => Metrics::inc(&self.shared.metrics.heartbeats_sent),
                            // A peer without a handshake yet makes sends fail (no route or
                            // ENOKEY); it is retried next tick.
                            Err(e) => tracing::debug!(to = %ip, error = %e, "heartbeat send failed"),
                        }
                    }
                }
                r = self.socket.recv_from(&mut buf) => {
                    match r {
                        Ok((n, SocketAddr::V4(from))) => {
                            let now = now_unix_ms();
                            match self.liveness.on_heartbeat(now, *from.ip(), &buf[..n]) {
                                Ok(acc) => {
                                    Metrics::inc(&self.shared.metrics.heartbeats_accepted);
                                    last_seen.insert(acc.peer, now);
                                }
                                Err(reason) => {
                                    Metrics::inc(&self.shared.metrics.heartbeats_dropped);
                                    tracing::debug!(from = %from, %reason, "heartbeat dropped");
                                }
                            }
                        }
                        Ok((_, from)) => {
                            Metrics::inc(&self.shared.metrics.heartbeats_dropped);
                            tracing::debug!(%from, "heartbeat from a non-IPv4 address dropped");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "heartbeat receive failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                _ = poll_tick.tick() => {}
            }
            self.publish(&mut last_seen);
        }
    }

    fn apply_view(&mut self, view: &ClusterView, me: &B256) -> Vec<Ipv4Addr> {
        self.liveness.set_members(&members_of(view));
        view.members
            .iter()
            .filter(|m| m.routable && &m.id != me)
            .map(|m| m.mesh_ip)
            .collect()
    }

    fn publish(&mut self, last_seen: &mut HashMap<B256, u64>) {
        let now = now_unix_ms();
        for ev in self.liveness.poll(now) {
            let (kind, id) = match ev {
                Event::PeerUp(id) => (PeerEventKind::Up, id),
                Event::PeerDown(id, reason) => {
                    tracing::info!(peer = %id, ?reason, "peer down");
                    (PeerEventKind::Down, id)
                }
                Event::Converged => {
                    tracing::info!("mesh converged");
                    continue;
                }
                Event::Diverged => {
                    tracing::info!("mesh diverged");
                    continue;
                }
            };
            if kind == PeerEventKind::Up {
                tracing::info!(peer = %id, "peer up");
            }
            self.shared.emit(PeerEvent {
                kind,
                member_id: id,
                unix_ms: now,
            });
        }
        let members = self.liveness.members();
        last_seen.retain(|id, _| members.contains(id));
        let table: HashMap<B256, PeerLiveness> = members
            .iter()
            .map(|id| {
                (
                    *id,
                    PeerLiveness {
                        live: self.liveness.is_live(id),
                        last_heartbeat_unix_ms: last_seen.get(id).copied().unwrap_or(0),
                    },
                )
            })
            .collect();
        let converged = self.liveness.is_converged();
        let st = self.shared.status();
        let live = table.values().filter(|p| p.live).count() as u32;
        if st.converged != converged || st.live_peers != live || self.shared.liveness() != table {
            self.shared.set_liveness(table, converged);
        }
    }
}

/// Binds the heartbeat socket on the mesh address.
pub async fn bind(mesh_ip: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::new(IpAddr::V4(mesh_ip), port)).await
}
