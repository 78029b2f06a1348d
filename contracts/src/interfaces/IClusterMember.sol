// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AppBootInfo} from "./ClusterTypes.sol";

/// @notice One per node: the node's dstack app id, its msg.sender towards the cluster, and its
/// ERC-4337 v0.7 account (DESIGN §3.7).
interface IClusterMember {
    error OnlyEntryPoint();
    error OnlyCluster();
    error OnlyClusterOwner();
    error OwnerAlreadySet();
    error InvalidBootstrapCall();
    error ZeroAddress();

    event OwnerSet(address indexed owner);
    event ClusterBound(address indexed cluster);

    function cluster() external view returns (address);
    function owner() external view returns (address);
    /// @notice The bootstrap rule read from the cluster at bind time (IAttestor.bootstrapRule);
    /// zero if the cluster gave none.
    function bootstrapRule() external view returns (bytes4 registerSelector, uint8 bindingSignatureField);
    function entryPoint() external view returns (address);
    function initialize(address cluster) external;
    function execute(address target, uint256 value, bytes calldata data) external;
    function setOwnerFromCluster(address owner) external;
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason);
    function reinitializeFromDstackApp(address cluster) external;
}

/// @notice The boot gate a dstack KMS asks an app id (dstack's IAppAuth.isAppAllowed); the member
/// forwards it to its cluster.
interface IAppBootGate {
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason);
}

interface IClusterMemberFactory {
    event MemberDeployed(address indexed member, address indexed cluster, bytes32 salt);

    function implementation() external view returns (address);
    function deployMember(address cluster, bytes32 salt) external returns (address member);
    function predictMemberAddress(address cluster, bytes32 salt) external view returns (address);
    function isOurMember(address member) external view returns (bool);
}
