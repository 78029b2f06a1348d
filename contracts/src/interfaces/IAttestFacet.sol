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

    /// @dev Only callable by the diamond itself (a sibling facet, through a self-call).
    function _addMember(MemberRecord calldata record) external returns (bytes32 memberId);
    function setCskCommitment(bytes32 commitment) external;
    function transferClusterOwnership(address newOwner) external;
    function acceptClusterOwnership() external;
}
