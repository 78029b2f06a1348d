// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice The fixed hashes that tie a node's keys to a cluster and member (DESIGN §3.2, §3.5).
/// Both the DstackFacet and the ClusterMember bootstrap rule compute them, so they live here once.
library LibBinding {
    /// @dev Identifies the dstack attestation method in MemberRecord.attestorId.
    bytes32 internal constant DSTACK_ATTESTOR_ID = keccak256("attestmesh.attestor.dstack.v1");

    /// @dev keccak256(abi.encode("attestmesh.bind.v1", cluster, memberContract, x, wg, ed)).
    function bindHash(
        address cluster,
        address memberContract,
        bytes32 xPubKey,
        bytes32 wgPubKey,
        bytes32 edPubKey
    ) internal pure returns (bytes32) {
        return keccak256(
            abi.encode("attestmesh.bind.v1", cluster, memberContract, xPubKey, wgPubKey, edPubKey)
        );
    }

    /// @dev keccak256(abi.encode(cluster, memberContract, attestorId)).
    function memberId(address cluster, address memberContract, bytes32 attestorId)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(cluster, memberContract, attestorId));
    }

    /// @dev Mesh IP of a member: never the network or broadcast address of the CIDR.
    function meshIp(uint32 cidrIp, uint8 prefix, bytes32 id) internal pure returns (uint32) {
        uint256 hosts = uint256(1) << (32 - prefix);
        uint32 low = uint32(uint256(keccak256(abi.encode(id))));
        return cidrIp | uint32((uint256(low) % (hosts - 2)) + 1);
    }
}
