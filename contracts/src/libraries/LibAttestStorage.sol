// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IAttestFacet} from "../interfaces/IAttestFacet.sol";

/// @notice Membership state (AttestFacet's namespace). MessageFacet and NetworkFacet read it too:
/// they live in the same diamond and must agree on who is a member. Layout is append-only.
library LibAttestStorage {
    /// @dev keccak256(abi.encode(uint256(keccak256("attestmesh.storage.Attest")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant STORAGE_SLOT =
        0x3c8574a13ace1fac0d5d2d224215a029f98ef18cd4a27e018f1cf29650338900;

    /// @dev MemberRecord re-ordered so memberContract and registeredAt share a slot (5 slots, not 6).
    struct StoredMember {
        bytes32 attestorId;
        bytes32 xPubKey;
        bytes32 wgPubKey;
        bytes32 edPubKey;
        address memberContract;
        uint64 registeredAt;
    }

    /// @custom:storage-location erc7201:attestmesh.storage.Attest
    struct AttestStorage {
        address clusterOwner;
        address pendingClusterOwner;
        uint32 meshCidrIp;
        uint8 meshPrefix;
        bytes32 cskCommitment;
        bytes32[] memberIds; // registration order; [0] is the CSK originator
        mapping(bytes32 memberId => StoredMember) members;
        mapping(address memberContract => bytes32) memberIdOf;
        // ---- appended (issue 11): WireGuard key uniqueness. Keys registered before this field
        // existed are not indexed until their member next publishes one.
        mapping(bytes32 wgPubKey => bytes32 memberId) memberIdOfWgKey;
    }

    function s() internal pure returns (AttestStorage storage st) {
        bytes32 slot = STORAGE_SLOT;
        assembly {
            st.slot := slot
        }
    }

    function enforceIsClusterOwner() internal view {
        if (msg.sender != s().clusterOwner) revert IAttestFacet.NotClusterOwner();
    }

    /// @dev memberContract is never zero for a stored member, so it doubles as the existence flag.
    function exists(bytes32 memberId) internal view returns (bool) {
        return s().members[memberId].memberContract != address(0);
    }
}
