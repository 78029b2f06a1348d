//! The calls the policy inspects or makes, as ABI definitions, and the inner-call allowlist.
//!
//! Selectors are pinned against `spec/vectors/selectors.json` (generated with `cast`) in the
//! tests, so a renamed or re-typed contract function breaks a test here instead of silently
//! denying every node.

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolCall;

// `ClusterMember.execute` is the only outer call we sponsor.
use attestmesh_chain::bindings::IClusterMember::executeCall;
use attestmesh_chain::bindings::{IAttestFacet, IDstackFacet, IMessageFacet, INetworkFacet};

/// Inner calls a node makes through `execute(cluster, 0, inner)` (DESIGN §10): registration,
/// sealed messages, the CSK commitment and its WireGuard key. Nothing else is sponsored.
pub const ALLOWED_INNER_SELECTORS: [(&str, [u8; 4]); 4] = [
    (
        "dstack_register",
        IDstackFacet::dstack_registerCall::SELECTOR,
    ),
    ("send", IMessageFacet::sendCall::SELECTOR),
    (
        "setCskCommitment",
        IAttestFacet::setCskCommitmentCall::SELECTOR,
    ),
    ("publishWgKey", INetworkFacet::publishWgKeyCall::SELECTOR),
];

/// A decoded `execute(target, value, data)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterCall {
    /// Where the account forwards the call.
    pub target: Address,
    /// Wei the account would send along.
    pub value: U256,
    /// The inner calldata.
    pub data: Bytes,
}

/// Decodes `callData` as `execute(address,uint256,bytes)`; `None` for anything else, including
/// non-canonical encodings the strict decoder rejects.
pub fn decode_execute(call_data: &[u8]) -> Option<OuterCall> {
    if call_data.len() < 4 || call_data[..4] != executeCall::SELECTOR {
        return None;
    }
    let c = executeCall::abi_decode(call_data).ok()?;
    Some(OuterCall {
        target: c.target,
        value: c.value,
        data: c.data,
    })
}

/// Encodes `execute(target, value, data)` (used by tests, the benchmark and node-side tooling).
pub fn encode_execute(target: Address, value: U256, data: Bytes) -> Vec<u8> {
    executeCall {
        target,
        value,
        data,
    }
    .abi_encode()
}

/// The first four bytes of `inner` if they are on [`ALLOWED_INNER_SELECTORS`].
pub fn allowed_inner(inner: &[u8]) -> Option<&'static str> {
    let sel: [u8; 4] = inner.get(..4)?.try_into().ok()?;
    ALLOWED_INNER_SELECTORS
        .iter()
        .find(|(_, s)| *s == sel)
        .map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_selector(signature_prefix: &str) -> [u8; 4] {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../../spec/vectors/selectors.json"))
                .expect("vectors");
        let cases = doc["cases"].as_array().expect("cases");
        let case = cases
            .iter()
            .find(|c| {
                c["signature"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(signature_prefix))
            })
            .expect("selector in vectors");
        let hex = case["selector"]
            .as_str()
            .expect("selector")
            .trim_start_matches("0x");
        let n = u32::from_str_radix(hex, 16).expect("hex");
        n.to_be_bytes()
    }

    #[test]
    fn selectors_match_cast_vectors() {
        for (name, sel) in ALLOWED_INNER_SELECTORS {
            assert_eq!(sel, vector_selector(&format!("{name}(")), "{name}");
        }
        assert_eq!(executeCall::SELECTOR, vector_selector("execute("));
        use attestmesh_chain::bindings::{IClusterMember, IClusterMemberFactory};
        assert_eq!(
            IClusterMemberFactory::isOurMemberCall::SELECTOR,
            vector_selector("isOurMember(")
        );
        assert_eq!(
            IClusterMember::clusterCall::SELECTOR,
            vector_selector("cluster(")
        );
    }

    #[test]
    fn execute_round_trip_and_rejects_garbage() {
        let inner = Bytes::from(vec![0x3e, 0xeb, 0x8e, 0xe8, 1, 2]);
        let cd = encode_execute(Address::repeat_byte(0xc1), U256::from(5u8), inner.clone());
        let d = decode_execute(&cd).expect("decodes");
        assert_eq!(
            (d.target, d.value, d.data),
            (Address::repeat_byte(0xc1), U256::from(5u8), inner)
        );
        // Cut into the inner bytes themselves (the padding after them is not checked on chain either).
        assert_eq!(decode_execute(&cd[..cd.len() - 32]), None);
        assert_eq!(decode_execute(&[0xb6, 0x1d]), None);
        let mut other = cd.clone();
        other[0] ^= 1;
        assert_eq!(decode_execute(&other), None);
        assert_eq!(
            allowed_inner(&[0x3e, 0xeb, 0x8e, 0xe8]),
            Some("setCskCommitment")
        );
        assert_eq!(allowed_inner(&[0x3e, 0xeb, 0x8e]), None);
        assert_eq!(allowed_inner(&[0xf2, 0x1d, 0x2d, 0x40]), None); // sendOwnerCommand: owner-only
    }
}
