// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice What every attestor facet offers besides its own policy and registration function, so
/// nothing outside it needs to know the method (DESIGN §3.6).
///
/// Registration convention (every attestation method): the registration function is
/// `f(P proof, address memberContract, bytes32 xPubKey, bytes32 wgPubKey, bytes32 edPubKey)`, where
/// `P` is a dynamic ABI tuple (so argument 0 is an offset) and head word `bindingSignatureField` of
/// `P` (its field of that index when every earlier field takes one head word, i.e. is a value type or
/// dynamic) is the offset of a `bytes`: the future owner key's EIP-191 signature over
/// `LibBinding.bindHash(cluster, memberContract, xPubKey, wgPubKey, edPubKey)`. The attestor
/// verifies the rest of the proof and installs that signer as the member's owner.
interface IAttestor {
    /// @notice How a ClusterMember recognises its one bootstrap operation in this cluster: the
    /// registration function's selector and the index, within its proof tuple, of the binding
    /// signature. Members read it once when they bind (never during validation, ERC-7562).
    function bootstrapRule() external view returns (bytes4 registerSelector, uint8 bindingSignatureField);
}
