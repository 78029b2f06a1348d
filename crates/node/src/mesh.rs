//! Reconciling the WireGuard interface with chain state (DESIGN §6).
//!
//! One peer per other member, with the key and the /32 mesh IP from the chain (invariant 2) and
//! the endpoint = the bridge's per-peer loopback socket, which carries datagrams to the member's
//! gateway host. [`plan`] is pure (what should be configured); [`Mesh::reconcile`] applies the
//! difference, so a new member is picked up live and a departed or re-keyed one is removed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use alloy_primitives::B256;
use attestmesh_net::bridge::{Bridge, BridgeConfig};
use attestmesh_net::ingress::IngressLimits;
use attestmesh_net::{DeviceSettings, PeerSettings, PrivateKey, PublicKey, WgDevice};

use crate::config::gateway_host;
use crate::state::ClusterView;

/// One WireGuard peer as chain state dictates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    pub member_id: B256,
    pub wg_pub: B256,
    pub mesh_ip: Ipv4Addr,
    pub host: String,
}

/// The peers this node should have: every other routable member. Unroutable members (mesh-IP
/// collisions) are left out — routing their /32 would hijack the earlier member's traffic.
pub fn plan(view: &ClusterView, me: &B256, wg_tcp_port: u16, domain: &str) -> Vec<DesiredPeer> {
    view.members
        .iter()
        .filter(|m| &m.id != me && m.routable)
        .map(|m| DesiredPeer {
            member_id: m.id,
            wg_pub: m.wg_pub,
            mesh_ip: m.mesh_ip,
            host: gateway_host(m.contract, wg_tcp_port, domain),
        })
        .collect()
}

/// Mesh setup failures.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("wireguard device: {0}")]
    Device(#[from] attestmesh_net::DeviceError),
    #[error("gateway bridge: {0}")]
    Bridge(#[from] attestmesh_net::bridge::BridgeError),
}

/// Mesh settings from the configuration.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub interface: String,
    pub wg_listen_port: u16,
    pub wg_tcp_port: u16,
    pub gateway_domain: String,
    pub gateway_connect: Option<SocketAddr>,
    /// Bridge ingress caps and deadlines (DESIGN §6.3).
    pub ingress: IngressLimits,
}

/// The interface plus the bridge, and what is configured on them.
pub struct Mesh {
    device: Option<WgDevice>,
    bridge: Option<Bridge>,
    settings: MeshSettings,
    configured: HashMap<B256, DesiredPeer>,
}

impl Mesh {
    /// Creates the interface (address `<mesh IP>/<prefix>`) and starts the bridge's TLS ingress.
    pub async fn up(
        settings: MeshSettings,
        wg_secret: [u8; 32],
        my_ip: Ipv4Addr,
        prefix: u8,
        my_host: String,
    ) -> Result<Self, MeshError> {
        let mut ds =
            DeviceSettings::new(PrivateKey::from_bytes(wg_secret), IpAddr::V4(my_ip), prefix);
        ds.name = settings.interface.clone();
        ds.listen_port = settings.wg_listen_port;
        // One worker thread: the agent shares a small VM with the app.
        ds.threads = 1;
        let device = WgDevice::create(ds).await?;
        let bridge = Bridge::start_with_limits(
            BridgeConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], settings.wg_tcp_port)),
                wg_port: device.listen_port(),
                local_host: my_host,
                gateway_connect: settings.gateway_connect,
                gateway_port: 443,
            },
            settings.ingress.clone(),
        )
        .await?;
        Ok(Self {
            device: Some(device),
            bridge: Some(bridge),
            settings,
            configured: HashMap::new(),
        })
    }

    /// Brings the interface in line with `desired`. Per-peer failures are logged and retried at
    /// the next reconcile; they never stop the others.
    pub async fn reconcile(&mut self, desired: &[DesiredPeer]) -> usize {
        let (Some(device), Some(bridge)) = (&self.device, &self.bridge) else {
            return 0;
        };
        let want: HashMap<B256, &DesiredPeer> = desired.iter().map(|p| (p.member_id, p)).collect();
        // Remove departed or changed peers first so a re-keyed member never has two entries.
        let stale: Vec<DesiredPeer> = self
            .configured
            .values()
            .filter(|have| want.get(&have.member_id) != Some(have))
            .cloned()
            .collect();
        for old in stale {
            if let Err(e) = device.remove_peer(&PublicKey(old.wg_pub.0)) {
                tracing::warn!(peer = %old.member_id, error = %e, "removing wireguard peer failed");
                continue;
            }
            bridge.remove_peer(&old.host);
            self.configured.remove(&old.member_id);
            tracing::info!(peer = %old.member_id, "wireguard peer removed");
        }
        for p in desired {
            if self.configured.contains_key(&p.member_id) {
                continue;
            }
            let endpoint = match bridge.add_peer(&p.host).await {
                Ok(ep) => ep,
                Err(e) => {
                    tracing::warn!(peer = %p.member_id, host = %p.host, error = %e, "bridging to peer failed");
                    continue;
                }
            };
            let ps =
                PeerSettings::new(PublicKey(p.wg_pub.0), IpAddr::V4(p.mesh_ip), Some(endpoint));
            match device.set_peer(&ps) {
                Ok(()) => {
                    tracing::info!(peer = %p.member_id, mesh_ip = %p.mesh_ip, host = %p.host, "wireguard peer configured");
                    self.configured.insert(p.member_id, p.clone());
                }
                Err(e) => {
                    bridge.remove_peer(&p.host);
                    tracing::warn!(peer = %p.member_id, error = %e, "configuring wireguard peer failed");
                }
            }
        }
        self.configured.len()
    }

    pub fn settings(&self) -> &MeshSettings {
        &self.settings
    }

    /// Stops the bridge and removes the interface (synchronously: boringtun's threads are joined).
    pub fn down(mut self) {
        self.bridge.take();
        if let Some(d) = self.device.take() {
            d.shutdown();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::state::MemberView;
    use alloy_primitives::Address;
    use attestmesh_core::mesh::MeshCidr;

    fn m(n: u8, routable: bool) -> MemberView {
        MemberView {
            id: B256::repeat_byte(n),
            contract: Address::repeat_byte(n),
            attestor_id: B256::ZERO,
            x_pub: B256::ZERO,
            wg_pub: B256::repeat_byte(n + 100),
            ed_pub: B256::ZERO,
            mesh_ip: Ipv4Addr::new(10, 0, 0, n),
            registered_at: 0,
            routable,
        }
    }

    #[test]
    fn one_peer_per_other_routable_member_with_chain_keys() {
        let view = ClusterView {
            cluster: Address::ZERO,
            cidr: MeshCidr::new(0x0a00_0000, 8).unwrap(),
            members: vec![m(1, true), m(2, true), m(3, false)],
            commitment: B256::ZERO,
            block: 0,
        };
        let p = plan(&view, &B256::repeat_byte(1), 51900, "mesh.example");
        assert_eq!(p.len(), 1, "self and the colliding member are left out");
        assert_eq!(p[0].member_id, B256::repeat_byte(2));
        assert_eq!(p[0].wg_pub, B256::repeat_byte(102));
        assert_eq!(p[0].mesh_ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            p[0].host,
            format!("{}-51900s.mesh.example", "02".repeat(20))
        );
    }
}
