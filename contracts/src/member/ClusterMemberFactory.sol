// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {Create2} from "@openzeppelin/contracts/utils/Create2.sol";

import {IClusterMember, IClusterMemberFactory} from "../interfaces/IClusterMember.sol";
import {ClusterMember} from "./ClusterMember.sol";

/// @title ClusterMemberFactory — CREATE2 deployer of ClusterMember proxies (DESIGN §3.7)
/// @notice Deploys one ERC-1967 proxy per node, initialised for its cluster in the proxy's
/// constructor (so a member is never visible unbound). The cluster's DstackFacet trusts
/// `isOurMember` as the provenance check of a registering member contract.
///
/// Addresses: the CREATE2 salt is `keccak256(abi.encode(cluster, salt))`, and the proxy's init
/// code commits to `initialize(cluster)` as well. Mixing the cluster into the salt keeps the salt
/// namespaces of different clusters apart explicitly; anybody may call `deployMember` for any
/// (cluster, salt) — the result is the same member bound to the same cluster, so front-running a
/// deployment changes nothing. The deployer is deliberately not part of the salt, so a member can
/// also be created through a userOp's `initCode` (`factory ‖ deployMember(cluster, salt)`), where
/// the caller is the EntryPoint's SenderCreator. Binding reads the cluster's bootstrap rule
/// (ClusterMember._readBootstrapRule), so under ERC-7562 that path needs a staked factory; AttestMesh
/// deploys members with a plain transaction.
contract ClusterMemberFactory is IClusterMemberFactory {
    /// @inheritdoc IClusterMemberFactory
    address public immutable implementation;

    mapping(address member => bool) private _ours;

    constructor(address entryPoint) {
        implementation = address(new ClusterMember(entryPoint));
    }

    /// @inheritdoc IClusterMemberFactory
    /// @dev Idempotent: returns the existing member if (cluster, salt) was deployed before, so it
    /// also works as an ERC-4337 initCode factory.
    function deployMember(address cluster, bytes32 salt) external returns (address member) {
        if (cluster == address(0)) revert IClusterMember.ZeroAddress();
        member = predictMemberAddress(cluster, salt);
        if (member.code.length != 0) return member;
        address deployed = address(
            new ERC1967Proxy{salt: _create2Salt(cluster, salt)}(
                implementation, abi.encodeCall(IClusterMember.initialize, (cluster))
            )
        );
        // Holds by construction; cheap insurance that `isOurMember` never marks a foreign address.
        assert(deployed == member);
        _ours[member] = true;
        emit MemberDeployed(member, cluster, salt);
    }

    /// @inheritdoc IClusterMemberFactory
    function predictMemberAddress(address cluster, bytes32 salt) public view returns (address) {
        return Create2.computeAddress(_create2Salt(cluster, salt), keccak256(_initCode(cluster)));
    }

    /// @inheritdoc IClusterMemberFactory
    function isOurMember(address member) external view returns (bool) {
        return _ours[member];
    }

    function _create2Salt(address cluster, bytes32 salt) private pure returns (bytes32) {
        return keccak256(abi.encode(cluster, salt));
    }

    function _initCode(address cluster) private view returns (bytes memory) {
        return abi.encodePacked(
            type(ERC1967Proxy).creationCode,
            abi.encode(implementation, abi.encodeCall(IClusterMember.initialize, (cluster)))
        );
    }
}
