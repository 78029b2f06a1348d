// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {IMessageFacet} from "../interfaces/IMessageFacet.sol";
import {INetworkFacet} from "../interfaces/INetworkFacet.sol";
import {LibAttestStorage} from "../libraries/LibAttestStorage.sol";
import {LibNetworkStorage} from "../libraries/LibNetworkStorage.sol";

/// @notice WireGuard and heartbeat keys per member (DESIGN §3.4). No endpoints are stored: agents
/// derive them from the member contract address (§6.1), so nothing here can redirect traffic.
contract NetworkFacet is INetworkFacet {
    function wgPubKeyOf(bytes32 memberId) external view returns (bytes32) {
        return _member(memberId).wgPubKey;
    }

    function edPubKeyOf(bytes32 memberId) external view returns (bytes32) {
        return _member(memberId).edPubKey;
    }

    /// @notice Block of the last `publishWgKey` by this member; zero while it still uses the key
    /// it registered with.
    function wgKeyPublishedAt(bytes32 memberId) external view returns (uint64) {
        _member(memberId);
        return LibNetworkStorage.s().wgKeyPublishedAt[memberId];
    }

    /// @notice A member rotates its WireGuard key. The record (AttestFacet's) is the single source
    /// of truth, so the new key replaces the registered one there, through AttestFacet's
    /// diamond-internal `_setWgKey`, which applies the same key checks as registration (a key
    /// another member holds, a small-order or non-canonical key revert).
    function publishWgKey(bytes32 wgPubKey) external {
        bytes32 id = LibAttestStorage.s().memberIdOf[msg.sender];
        if (id == bytes32(0)) revert IMessageFacet.NotClusterMember();
        IAttestFacet(address(this))._setWgKey(id, wgPubKey);
        LibNetworkStorage.s().wgKeyPublishedAt[id] = uint64(block.number);
        emit WgKeyPublished(id, wgPubKey);
    }

    function _member(bytes32 memberId) private view returns (LibAttestStorage.StoredMember storage m) {
        m = LibAttestStorage.s().members[memberId];
        if (m.memberContract == address(0)) revert IAttestFacet.UnknownMember();
    }
}
