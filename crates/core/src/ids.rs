//! Member and attestor identifiers (DESIGN §3.2, §3.6).
//!
//! Layout: `memberId = keccak256(abi.encode(address cluster, address memberContract, bytes32 attestorId))`
//! — three static 32-byte words, addresses left-padded with zeros.

use alloy_primitives::{Address, B256, b256, keccak256};
use alloy_sol_types::SolValue;

/// Preimage of the dstack attestor id; the id is its keccak256.
pub const DSTACK_ATTESTOR_LABEL: &str = "attestmesh.attestor.dstack.v1";

/// `keccak256("attestmesh.attestor.dstack.v1")`, precomputed so it can be used in constants;
/// a test checks it against the label.
pub const DSTACK_ATTESTOR_ID: B256 =
    b256!("0xe667d3868df410c9176481bfd7d4bbde4df00391d9720e1761dc40f194d11c9c");

/// The member id the cluster assigns to `member_contract` admitted by `attestor_id`.
pub fn member_id(cluster: Address, member_contract: Address, attestor_id: B256) -> B256 {
    keccak256((cluster, member_contract, attestor_id).abi_encode_params())
}

/// Attestor id for an arbitrary label (new attestation methods get their own label).
pub fn attestor_id(label: &str) -> B256 {
    keccak256(label.as_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dstack_attestor_id_matches_label() {
        assert_eq!(attestor_id(DSTACK_ATTESTOR_LABEL), DSTACK_ATTESTOR_ID);
    }

    #[test]
    fn member_id_layout_is_three_words() {
        let cluster = Address::repeat_byte(0x11);
        let member = Address::repeat_byte(0x22);
        let att = B256::repeat_byte(0x33);
        let mut pre = Vec::new();
        pre.extend_from_slice(&[0u8; 12]);
        pre.extend_from_slice(cluster.as_slice());
        pre.extend_from_slice(&[0u8; 12]);
        pre.extend_from_slice(member.as_slice());
        pre.extend_from_slice(att.as_slice());
        assert_eq!(member_id(cluster, member, att), keccak256(&pre));
    }
}
