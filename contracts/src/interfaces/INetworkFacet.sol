// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice WireGuard and heartbeat keys per member; never endpoints (DESIGN §3.4).
interface INetworkFacet {
    event WgKeyPublished(bytes32 indexed memberId, bytes32 wgPubKey);

    function wgPubKeyOf(bytes32 memberId) external view returns (bytes32);
    function edPubKeyOf(bytes32 memberId) external view returns (bytes32);
    /// @dev Members only (reverts IMessageFacet-compatible `NotClusterMember()`).
    function publishWgKey(bytes32 wgPubKey) external;
}
