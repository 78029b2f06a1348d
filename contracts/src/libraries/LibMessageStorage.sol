// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice MessageFacet state: which (recipient, envelope id) pairs were used. Append-only.
library LibMessageStorage {
    /// @dev keccak256(abi.encode(uint256(keccak256("attestmesh.storage.Message")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant STORAGE_SLOT =
        0x01ed23594c696028727ead8f00e63e0673d543f2d3613a2c2fc01abf2ca2d100;

    /// @custom:storage-location erc7201:attestmesh.storage.Message
    struct MessageStorage {
        mapping(bytes32 recipientMemberId => mapping(bytes32 envelopeId => bool)) envelopeUsed;
    }

    function s() internal pure returns (MessageStorage storage st) {
        bytes32 slot = STORAGE_SLOT;
        assembly {
            st.slot := slot
        }
    }
}
