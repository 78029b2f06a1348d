//! The binding of a node's three public keys to its owner key, cluster and member (DESIGN §3.5).
//!
//! Layout: `bindHash = keccak256(abi.encode(string "attestmesh.bind.v1", address cluster,
//! address memberContract, bytes32 xPubKey, bytes32 wgPubKey, bytes32 edPubKey))`. The string is
//! dynamic, so the encoding is six head words (the first an offset, 0xc0) followed by the string's
//! length word and its zero-padded bytes. The owner key signs the EIP-191 digest of it.

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::SolValue;

/// Domain tag of the binding; bumping it invalidates every old binding signature.
pub const BIND_TAG: &str = "attestmesh.bind.v1";

/// The three public keys a member registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberPubKeys {
    /// x25519 sealed-box key.
    pub x: B256,
    /// WireGuard static key (x25519).
    pub wg: B256,
    /// Ed25519 heartbeat key.
    pub ed: B256,
}

/// `keccak256(abi.encode("attestmesh.bind.v1", cluster, memberContract, x, wg, ed))`.
pub fn bind_hash(cluster: Address, member_contract: Address, keys: &MemberPubKeys) -> B256 {
    keccak256(
        (
            BIND_TAG.to_string(),
            cluster,
            member_contract,
            keys.x,
            keys.wg,
            keys.ed,
        )
            .abi_encode_params(),
    )
}

/// EIP-191 "personal sign" digest of a 32-byte hash:
/// `keccak256("\x19Ethereum Signed Message:\n32" ‖ hash)`, what OpenZeppelin's
/// `MessageHashUtils.toEthSignedMessageHash(bytes32)` computes.
pub fn eth_signed_hash(hash: &B256) -> B256 {
    let mut buf = [0u8; 28 + 32];
    buf[..28].copy_from_slice(b"\x19Ethereum Signed Message:\n32");
    buf[28..].copy_from_slice(hash.as_slice());
    keccak256(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encoding_layout_is_offset_then_string_tail() {
        let keys = MemberPubKeys {
            x: B256::repeat_byte(1),
            wg: B256::repeat_byte(2),
            ed: B256::repeat_byte(3),
        };
        let cluster = Address::repeat_byte(0xc1);
        let member = Address::repeat_byte(0xa1);
        let mut pre = Vec::new();
        let mut word = [0u8; 32];
        word[31] = 0xc0;
        pre.extend_from_slice(&word);
        for a in [cluster, member] {
            pre.extend_from_slice(&[0u8; 12]);
            pre.extend_from_slice(a.as_slice());
        }
        for k in [keys.x, keys.wg, keys.ed] {
            pre.extend_from_slice(k.as_slice());
        }
        let mut len = [0u8; 32];
        len[31] = BIND_TAG.len() as u8;
        pre.extend_from_slice(&len);
        let mut tag = [0u8; 32];
        tag[..BIND_TAG.len()].copy_from_slice(BIND_TAG.as_bytes());
        pre.extend_from_slice(&tag);
        assert_eq!(bind_hash(cluster, member, &keys), keccak256(&pre));
    }
}
