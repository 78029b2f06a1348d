//! Mesh IP addressing from chain state (DESIGN §3.2), identical to the Solidity `meshIpOf`.
//!
//! `hosts = 2^(32 - prefix)`, `low = uint32(keccak256(abi.encode(memberId)))` (the last 4 bytes,
//! big-endian), `ip = cidrIp | ((low mod (hosts - 2)) + 1)`: never the network or broadcast
//! address.

use std::net::Ipv4Addr;

use alloy_primitives::{B256, keccak256};

/// Smallest prefix accepted: a /8 is already 16M hosts.
pub const MIN_PREFIX: u8 = 8;
/// Largest prefix accepted: a /30 still has two usable hosts; /31 and /32 have none.
pub const MAX_PREFIX: u8 = 30;

/// Why a mesh CIDR was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MeshCidrError {
    #[error("mesh prefix /{0} out of range: must be {MIN_PREFIX}..={MAX_PREFIX}")]
    PrefixOutOfRange(u8),
    #[error("mesh CIDR {ip}/{prefix} has host bits set: use the network address")]
    HostBitsSet { ip: Ipv4Addr, prefix: u8 },
}

/// A validated mesh network: network address plus prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeshCidr {
    ip: u32,
    prefix: u8,
}

impl MeshCidr {
    /// Validates the prefix range and that `ip` is the network address (host bits zero), as the
    /// contract's initializer requires.
    pub fn new(ip: u32, prefix: u8) -> Result<Self, MeshCidrError> {
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(MeshCidrError::PrefixOutOfRange(prefix));
        }
        let host_mask = u32::MAX >> prefix;
        if ip & host_mask != 0 {
            return Err(MeshCidrError::HostBitsSet {
                ip: Ipv4Addr::from(ip),
                prefix,
            });
        }
        Ok(Self { ip, prefix })
    }

    /// Network address as a big-endian integer (the on-chain `uint32`).
    pub fn ip(&self) -> u32 {
        self.ip
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the network, including network and broadcast.
    pub fn hosts(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The member's mesh address as a big-endian integer.
    pub fn mesh_ip_u32(&self, member_id: &B256) -> u32 {
        let h = keccak256(member_id.as_slice());
        let low = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
        // hosts - 2 >= 2 because prefix <= 30, so the modulus is never zero.
        let usable = self.hosts() - 2;
        let offset = (u64::from(low) % usable) + 1;
        // offset < hosts <= 2^24, so it fits in the host bits.
        self.ip | offset as u32
    }

    /// The member's mesh address.
    pub fn mesh_ip(&self, member_id: &B256) -> Ipv4Addr {
        Ipv4Addr::from(self.mesh_ip_u32(member_id))
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = !(u32::MAX >> self.prefix);
        u32::from(addr) & mask == self.ip
    }
}

impl std::fmt::Display for MeshCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.ip), self.prefix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    fn id(n: u64) -> B256 {
        B256::from(U256::from(n))
    }

    #[test]
    fn design_vectors() {
        let c = MeshCidr::new(0x0a0d_0000, 16).unwrap();
        assert_eq!(c.mesh_ip_u32(&id(1)), 168_656_109);
        assert_eq!(c.mesh_ip(&id(1)), Ipv4Addr::new(10, 13, 124, 237));
        assert_eq!(c.mesh_ip_u32(&id(2)), 168_665_671);
        assert_eq!(c.mesh_ip(&id(2)), Ipv4Addr::new(10, 13, 162, 71));
        assert_eq!(c.mesh_ip_u32(&id(0xaa)), 168_680_749);
        assert_eq!(c.mesh_ip(&id(0xaa)), Ipv4Addr::new(10, 13, 221, 45));
    }

    #[test]
    fn prefix_range_is_enforced() {
        assert_eq!(
            MeshCidr::new(0x0a00_0000, 7),
            Err(MeshCidrError::PrefixOutOfRange(7))
        );
        assert_eq!(
            MeshCidr::new(0x0a00_0000, 31),
            Err(MeshCidrError::PrefixOutOfRange(31))
        );
        assert_eq!(
            MeshCidr::new(0x0a00_0000, 32),
            Err(MeshCidrError::PrefixOutOfRange(32))
        );
        assert!(MeshCidr::new(0x0a00_0000, 8).is_ok());
        assert!(MeshCidr::new(0x0a00_0000, 30).is_ok());
    }

    #[test]
    fn host_bits_are_refused() {
        assert!(matches!(
            MeshCidr::new(0x0a0d_0001, 16),
            Err(MeshCidrError::HostBitsSet { prefix: 16, .. })
        ));
    }

    #[test]
    fn never_network_or_broadcast_for_every_prefix() {
        for prefix in MIN_PREFIX..=MAX_PREFIX {
            let c = MeshCidr::new(0x0a00_0000, prefix).unwrap();
            let broadcast = c.ip() | (u32::MAX >> prefix);
            for n in 0..200u64 {
                let ip = c.mesh_ip_u32(&id(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                assert_ne!(ip, c.ip(), "network address for /{prefix}");
                assert_ne!(ip, broadcast, "broadcast for /{prefix}");
                assert!(c.contains(Ipv4Addr::from(ip)));
            }
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            MeshCidr::new(0x0a0d_0000, 16).unwrap().to_string(),
            "10.13.0.0/16"
        );
    }
}
