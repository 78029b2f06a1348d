// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {MemberRecord} from "./ClusterTypes.sol";

/// @notice Membership, keys, mesh addressing and the CSK commitment (DESIGN §3.2).
interface IAttestFacet {
    error AlreadyRegistered();
    error OnlyDiamond();
    error NotClusterOwner();
    error NotPendingClusterOwner();
    error NotOriginator();
    error CskCommitmentAlreadySet();
    error UnknownMember();
    error ZeroAddress();
    /// @dev Added: a zero CSK commitment is indistinguishable from "not set".
    error ZeroCommitment();
    /// @dev Added (issue 11): another member already uses this WireGuard key; accepting it would
    /// let that member black-hole the key's owner on every node.
    error WgKeyInUse();
    /// @dev Added (issue 11): an encoding of a small-order X25519 point (LibWgKey.isLowOrder).
    error WgKeyLowOrder();
    /// @dev Added (issue 11): not the canonical encoding (bit 255 set, or u >= 2^255 - 19).
    error WgKeyNotCanonical();

    event MemberRegistered(
        bytes32 indexed memberId,
        address indexed memberContract,
        bytes32 indexed attestorId,
        bytes32 xPubKey,
        bytes32 wgPubKey,
        bytes32 edPubKey
    );
    event CskCommitmentSet(bytes32 commitment);
    event ClusterOwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);
    event ClusterOwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    function isClusterMember(address memberContract) external view returns (bool);
    function memberIdOf(address memberContract) external view returns (bytes32);
    function memberOf(address memberContract) external view returns (MemberRecord memory);
    function memberById(bytes32 memberId) external view returns (MemberRecord memory);
    function listMembers() external view returns (MemberRecord[] memory);
    function memberCount() external view returns (uint256);
    function clusterOwner() external view returns (address);
    function pendingClusterOwner() external view returns (address);
    function meshCidr() external view returns (uint32 ip, uint8 prefix);
    function meshIpOf(bytes32 memberId) external view returns (uint32);
    function cskCommitment() external view returns (bytes32);
    /// @return The member whose current WireGuard key is `wgPubKey`, or zero.
    function memberIdOfWgKey(bytes32 wgPubKey) external view returns (bytes32);

    /// @dev Only callable by the diamond itself (a sibling facet, through a self-call).
    function _addMember(MemberRecord calldata record) external returns (bytes32 memberId);
    /// @dev Only callable by the diamond itself: replaces a member's WireGuard key (NetworkFacet's
    /// publishWgKey), under the same key checks as _addMember.
    function _setWgKey(bytes32 memberId, bytes32 wgPubKey) external;
    function setCskCommitment(bytes32 commitment) external;
    function transferClusterOwnership(address newOwner) external;
    function acceptClusterOwnership() external;
}
