// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IDiamondCut} from "../diamond/IDiamondCut.sol";
import {IDiamondLoupe} from "../diamond/IDiamondLoupe.sol";
import {IDiamondOwnership, IERC173} from "../diamond/IERC173.sol";
import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {IAttestor} from "../interfaces/IAttestor.sol";
import {IDstackFacet} from "../interfaces/IDstackFacet.sol";
import {IMessageFacet} from "../interfaces/IMessageFacet.sol";
import {INetworkFacet} from "../interfaces/INetworkFacet.sol";

/// @notice The selector table of a cluster, per facet. Built from the interfaces, so a signature
/// change is a compile error here rather than a silently unroutable function.
library LibClusterSelectors {
    /// @dev NetworkFacet.wgKeyPublishedAt(bytes32): an addition beyond INetworkFacet.
    bytes4 internal constant WG_KEY_PUBLISHED_AT = bytes4(keccak256("wgKeyPublishedAt(bytes32)"));

    function diamondCut() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](1);
        s[0] = IDiamondCut.diamondCut.selector;
    }

    function diamondLoupe() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](5);
        s[0] = IDiamondLoupe.facets.selector;
        s[1] = IDiamondLoupe.facetFunctionSelectors.selector;
        s[2] = IDiamondLoupe.facetAddresses.selector;
        s[3] = IDiamondLoupe.facetAddress.selector;
        s[4] = IERC165.supportsInterface.selector;
    }

    function ownership() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](4);
        s[0] = IERC173.owner.selector;
        s[1] = IERC173.transferOwnership.selector;
        s[2] = IDiamondOwnership.pendingOwner.selector;
        s[3] = IDiamondOwnership.acceptOwnership.selector;
    }

    function attest() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](17);
        s[0] = IAttestFacet.isClusterMember.selector;
        s[1] = IAttestFacet.memberIdOf.selector;
        s[2] = IAttestFacet.memberOf.selector;
        s[3] = IAttestFacet.memberById.selector;
        s[4] = IAttestFacet.listMembers.selector;
        s[5] = IAttestFacet.memberCount.selector;
        s[6] = IAttestFacet.clusterOwner.selector;
        s[7] = IAttestFacet.pendingClusterOwner.selector;
        s[8] = IAttestFacet.meshCidr.selector;
        s[9] = IAttestFacet.meshIpOf.selector;
        s[10] = IAttestFacet.cskCommitment.selector;
        s[11] = IAttestFacet._addMember.selector;
        s[12] = IAttestFacet.setCskCommitment.selector;
        s[13] = IAttestFacet.transferClusterOwnership.selector;
        s[14] = IAttestFacet.acceptClusterOwnership.selector;
        s[15] = IAttestFacet.memberIdOfWgKey.selector;
        s[16] = IAttestFacet._setWgKey.selector;
    }

    function message() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](3);
        s[0] = IMessageFacet.send.selector;
        s[1] = IMessageFacet.sendOwnerCommand.selector;
        s[2] = IMessageFacet.envelopeUsed.selector;
    }

    function network() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](4);
        s[0] = INetworkFacet.wgPubKeyOf.selector;
        s[1] = INetworkFacet.edPubKeyOf.selector;
        s[2] = INetworkFacet.publishWgKey.selector;
        s[3] = WG_KEY_PUBLISHED_AT;
    }

    function dstack() internal pure returns (bytes4[] memory s) {
        s = new bytes4[](20);
        s[0] = IDstackFacet.addComposeHash.selector;
        s[1] = IDstackFacet.removeComposeHash.selector;
        s[2] = IDstackFacet.addDevice.selector;
        s[3] = IDstackFacet.removeDevice.selector;
        s[4] = IDstackFacet.setAllowAnyDevice.selector;
        s[5] = IDstackFacet.setRequireTcbUpToDate.selector;
        s[6] = IDstackFacet.addAllowedKmsRoot.selector;
        s[7] = IDstackFacet.removeAllowedKmsRoot.selector;
        s[8] = IDstackFacet.addAllowedAppId.selector;
        s[9] = IDstackFacet.removeAllowedAppId.selector;
        s[10] = IDstackFacet.allowedComposeHashes.selector;
        s[11] = IDstackFacet.allowedDeviceIds.selector;
        s[12] = IDstackFacet.allowAnyDevice.selector;
        s[13] = IDstackFacet.requireTcbUpToDate.selector;
        s[14] = IDstackFacet.allowedKmsRoots.selector;
        s[15] = IDstackFacet.allowedAppIds.selector;
        s[16] = IDstackFacet.memberFactory.selector;
        s[17] = IDstackFacet.isAppAllowed.selector;
        s[18] = IDstackFacet.dstack_register.selector;
        s[19] = IAttestor.bootstrapRule.selector;
    }
}
