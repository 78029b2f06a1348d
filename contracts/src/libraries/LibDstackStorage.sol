// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice DstackFacet state: the dstack admission policy. Only DstackFacet and the cluster
/// initializer touch it (attestation-method isolation, DESIGN §3.6). Append-only.
library LibDstackStorage {
    /// @dev keccak256(abi.encode(uint256(keccak256("attestmesh.storage.Dstack")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant STORAGE_SLOT =
        0x3a6ca0bce3f2eabeff789f3e634310c8ac9ff254a0d573f6389711dd0d3b9600;

    /// @custom:storage-location erc7201:attestmesh.storage.Dstack
    struct DstackStorage {
        mapping(bytes32 => bool) composeHashes;
        mapping(bytes32 => bool) devices;
        mapping(address => bool) kmsRoots;
        mapping(address => bool) appIds;
        address memberFactory;
        bool allowAnyDevice;
        bool requireTcbUpToDate;
    }

    function s() internal pure returns (DstackStorage storage st) {
        bytes32 slot = STORAGE_SLOT;
        assembly {
            st.slot := slot
        }
    }
}
