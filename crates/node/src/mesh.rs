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
use crate::state::{ClusterView, MemberView};

/// One WireGuard peer as chain state dictates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    pub member_id: B256,
    pub wg_pub: B256,
    pub mesh_ip: Ipv4Addr,
    pub host: String,
}

/// Why a member's peer is not configured. Every node reads the same chain state and resolves
/// conflicts by registration order, so all nodes refuse the same member (DESIGN §3.2, §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Routing the later member's /32 would hijack the earlier member's traffic.
    #[error(
        "mesh IP collision: member {later} has mesh IP {ip} of earlier member {earlier}; refusing to route the later member's /32"
    )]
    MeshIpCollision {
        earlier: B256,
        later: B256,
        ip: Ipv4Addr,
    },
    /// WireGuard identifies a peer by its public key: a second peer entry with the same key
    /// would take over the first one's allowed-ips and endpoint and black-hole it.
    #[error(
        "duplicate WireGuard key: member {later} publishes key {key} of earlier member {earlier}; refusing to configure the later member's peer"
    )]
    DuplicateWgKey {
        earlier: B256,
        later: B256,
        key: B256,
    },
    /// A low-order point (all zero among them) gives an all-zero shared secret: the tunnel
    /// would authenticate nobody.
    #[error(
        "weak WireGuard key: member {member} publishes the low-order point {key}; refusing to configure its peer"
    )]
    WeakWgKey { member: B256, key: B256 },
}

impl Refusal {
    /// The member whose peer is not configured.
    pub fn refused(&self) -> B256 {
        match self {
            Refusal::MeshIpCollision { later, .. } | Refusal::DuplicateWgKey { later, .. } => {
                *later
            }
            Refusal::WeakWgKey { member, .. } => *member,
        }
    }
}

/// Whether `key` is a low-order Curve25519 point (all zero included). X25519 clamps every
/// scalar to a multiple of the cofactor 8 and below the group order, so the product with one
/// fixed scalar is the identity (all-zero output) exactly for the points of order dividing 8,
/// whatever their encoding.
pub fn is_low_order(key: &B256) -> bool {
    let probe = x25519_dalek::StaticSecret::from([0x42u8; 32]);
    !probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(key.0))
        .was_contributory()
}

/// The members that must not be configured, in registration order: a weak key, a mesh IP or a
/// WireGuard key already held by an earlier member. A refused member claims neither its IP nor
/// its key, so only configured members decide later conflicts.
pub fn refusals(members: &[MemberView]) -> Vec<Refusal> {
    let mut ip_owner: HashMap<Ipv4Addr, B256> = HashMap::new();
    let mut key_owner: HashMap<B256, B256> = HashMap::new();
    let mut out = Vec::new();
    for m in members {
        let refusal = if is_low_order(&m.wg_pub) {
            Some(Refusal::WeakWgKey {
                member: m.id,
                key: m.wg_pub,
            })
        } else if let Some(first) = ip_owner.get(&m.mesh_ip) {
            Some(Refusal::MeshIpCollision {
                earlier: *first,
                later: m.id,
                ip: m.mesh_ip,
            })
        } else {
            key_owner
                .get(&m.wg_pub)
                .map(|first| Refusal::DuplicateWgKey {
                    earlier: *first,
                    later: m.id,
                    key: m.wg_pub,
                })
        };
        match refusal {
            Some(r) => out.push(r),
            None => {
                ip_owner.insert(m.mesh_ip, m.id);
                key_owner.insert(m.wg_pub, m.id);
            }
        }
    }
    out
}

/// What the interface should carry, and whom chain state names but we refuse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub peers: Vec<DesiredPeer>,
    /// Every refused member (this node included, if it is one), for the log and metrics.
    pub refused: Vec<Refusal>,
}

/// The peers this node should have: every other member that [`refusals`] does not refuse. The
/// check runs here too, not only through `routable`, so no view can configure a conflicting peer.
pub fn plan(view: &ClusterView, me: &B256, wg_tcp_port: u16, domain: &str) -> Plan {
    let refused = refusals(&view.members);
    let peers = view
        .members
        .iter()
        .filter(|m| &m.id != me && m.routable)
        .filter(|m| refused.iter().all(|r| r.refused() != m.id))
        .map(|m| DesiredPeer {
            member_id: m.id,
            wg_pub: m.wg_pub,
            mesh_ip: m.mesh_ip,
            host: gateway_host(m.contract, wg_tcp_port, domain),
        })
        .collect();
    Plan { peers, refused }
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
    ///
    /// The key comes as a [`PrivateKey`] (zeroized on drop), not raw bytes: arguments of an
    /// async fn live in its future until it completes, and a plain array there is never wiped.
    pub async fn up(
        settings: MeshSettings,
        wg_secret: PrivateKey,
        my_ip: Ipv4Addr,
        prefix: u8,
        my_host: String,
    ) -> Result<Self, MeshError> {
        let mut ds = DeviceSettings::new(wg_secret, IpAddr::V4(my_ip), prefix);
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

    /// Each configured peer's WireGuard counters, read from the device now. A device that does
    /// not answer gives an empty table (logged): metrics go quiet, the mesh is untouched.
    pub fn peer_stats(&self) -> HashMap<B256, crate::state::WgPeerStats> {
        let Some(device) = &self.device else {
            return HashMap::new();
        };
        let status = match device.status() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "reading wireguard counters failed");
                return HashMap::new();
            }
        };
        let now = crate::state::now_unix_ms();
        let by_key: HashMap<[u8; 32], B256> = self
            .configured
            .values()
            .map(|p| (p.wg_pub.0, p.member_id))
            .collect();
        status
            .peers
            .iter()
            .filter_map(|p| {
                let member = *by_key.get(&p.public_key.0)?;
                let handshake = p.last_handshake_age.map(|age| {
                    now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
                });
                Some((
                    member,
                    crate::state::WgPeerStats {
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                        last_handshake_unix_ms: handshake,
                        path: crate::state::PeerPath::Bridge,
                    },
                ))
            })
            .collect()
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
        let p = plan(&view, &B256::repeat_byte(1), 51900, "mesh.example").peers;
        assert_eq!(p.len(), 1, "self and the colliding member are left out");
        assert_eq!(p[0].member_id, B256::repeat_byte(2));
        assert_eq!(p[0].wg_pub, B256::repeat_byte(102));
        assert_eq!(p[0].mesh_ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            p[0].host,
            format!("{}-51900s.mesh.example", "02".repeat(20))
        );
    }

    fn view_of(mut members: Vec<MemberView>) -> ClusterView {
        crate::chainview::mark_collisions(&mut members);
        ClusterView {
            cluster: Address::ZERO,
            cidr: MeshCidr::new(0x0a00_0000, 8).unwrap(),
            members,
            commitment: B256::ZERO,
            block: 0,
        }
    }

    /// Hole 5: member 3 publishes member 2's WireGuard key. Configuring both would give one
    /// boringtun peer entry two allowed-ips (or replace 2's endpoint), black-holing member 2.
    #[test]
    fn attack_duplicate_wg_key_is_not_configured() {
        let mut members = vec![m(1, true), m(2, true), m(3, true)];
        members[2].wg_pub = members[1].wg_pub;
        let view = view_of(members);
        let p = plan(&view, &B256::repeat_byte(1), 51900, "mesh.example");
        let ids: Vec<B256> = p.peers.iter().map(|d| d.member_id).collect();
        assert_eq!(
            ids,
            vec![B256::repeat_byte(2)],
            "the earlier member keeps the key"
        );
        assert_eq!(
            p.refused,
            vec![Refusal::DuplicateWgKey {
                earlier: B256::repeat_byte(2),
                later: B256::repeat_byte(3),
                key: B256::repeat_byte(102),
            }]
        );
        let line = p.refused[0].to_string();
        assert!(
            line.contains(&B256::repeat_byte(2).to_string())
                && line.contains(&B256::repeat_byte(3).to_string()),
            "the log line names both members: {line}"
        );
        assert!(!view.members[2].routable && view.members[1].routable);
        // The check holds in `plan` itself, even for a view nobody marked.
        let mut unmarked = view.clone();
        unmarked.members.iter_mut().for_each(|m| m.routable = true);
        assert_eq!(
            plan(&unmarked, &B256::repeat_byte(1), 51900, "x")
                .peers
                .len(),
            1
        );
        // And the later member, planning for itself, sees why it is refused.
        let own = plan(&view, &B256::repeat_byte(3), 51900, "x");
        assert!(
            own.refused
                .iter()
                .any(|r| r.refused() == B256::repeat_byte(3))
        );
    }

    /// Hole 5: all-zero and other low-order keys give an all-zero Diffie-Hellman output.
    #[test]
    fn attack_low_order_wg_keys_are_not_configured() {
        let mut members = vec![m(1, true), m(2, true), m(3, true), m(4, true)];
        members[1].wg_pub = B256::ZERO;
        members[2].wg_pub = B256::from(alloy_primitives::hex!(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
        ));
        let view = view_of(members);
        let p = plan(&view, &B256::repeat_byte(1), 51900, "mesh.example");
        let ids: Vec<B256> = p.peers.iter().map(|d| d.member_id).collect();
        assert_eq!(ids, vec![B256::repeat_byte(4)]);
        assert!(matches!(
            p.refused[..],
            [Refusal::WeakWgKey { .. }, Refusal::WeakWgKey { .. }]
        ));
        // Every libsodium-listed low-order encoding is caught, honest keys are not.
        for k in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ] {
            let key: B256 = k.parse().unwrap();
            assert!(is_low_order(&key), "{k}");
        }
        let honest = attestmesh_core::keys::X25519Secret::from_seed([7; 32]).public();
        assert!(!is_low_order(&honest));
    }
}
