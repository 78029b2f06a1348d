// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice NetworkFacet state. The keys themselves live in the member record (one source of
/// truth); this namespace tracks rotations so agents can tell a fresh key from the registered one.
library LibNetworkStorage {
    /// @dev keccak256(abi.encode(uint256(keccak256("attestmesh.storage.Network")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant STORAGE_SLOT =
        0x474b09740077ffacfbf2d439dfedf08d163ee733bb577268273bf24437752a00;

    /// @custom:storage-location erc7201:attestmesh.storage.Network
    struct NetworkStorage {
        mapping(bytes32 memberId => uint64 blockNumber) wgKeyPublishedAt;
    }

    function s() internal pure returns (NetworkStorage storage st) {
        bytes32 slot = STORAGE_SLOT;
        assembly {
            st.slot := slot
        }
    }
}
