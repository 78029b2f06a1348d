// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {console2} from "forge-std/console2.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IMessageFacet} from "../../src/interfaces/IMessageFacet.sol";
import {INetworkFacet} from "../../src/interfaces/INetworkFacet.sol";
import {NetworkFacet} from "../../src/facets/NetworkFacet.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {DstackChain} from "../utils/DstackChain.sol";

/// @notice MessageFacet (§3.3) and NetworkFacet (§3.4).
contract MessageNetworkTest is ClusterFixture {
    IMessageFacet internal msgs;
    INetworkFacet internal net;
    address internal alice;
    address internal bob;
    bytes32 internal aliceId;
    bytes32 internal bobId;

    function setUp() public override {
        super.setUp();
        msgs = IMessageFacet(cluster);
        net = INetworkFacet(cluster);
        (alice, aliceId,) = deployAndRegister("alice");
        (bob, bobId,) = deployAndRegister("bob");
    }

    // ------------------------------------------------------------------ send

    function test_send() public {
        bytes memory ct = hex"deadbeefcafe";
        vm.expectEmit(true, true, true, true, cluster);
        emit IMessageFacet.MessageSent(aliceId, bobId, bytes32(uint256(1)), ct);
        vm.prank(alice);
        msgs.send(bobId, bytes32(uint256(1)), ct);
        assertTrue(msgs.envelopeUsed(bobId, bytes32(uint256(1))));
        assertFalse(msgs.envelopeUsed(aliceId, bytes32(uint256(1))));
    }

    function test_send_senderIdFromMsgSender() public {
        // Bob cannot speak as Alice: the sender id is always the caller's own.
        vm.recordLogs();
        vm.prank(bob);
        msgs.send(bobId, bytes32(uint256(9)), hex"01");
        assertEq(vm.getRecordedLogs()[0].topics[1], bobId);
    }

    function test_send_sameEnvelopeOtherRecipient() public {
        vm.startPrank(alice);
        msgs.send(bobId, bytes32(uint256(1)), hex"01");
        msgs.send(aliceId, bytes32(uint256(1)), hex"02"); // to self, same envelope id, other recipient
        vm.stopPrank();
        assertTrue(msgs.envelopeUsed(aliceId, bytes32(uint256(1))));
    }

    function test_revert_send_notMember() public {
        vm.expectRevert(IMessageFacet.NotClusterMember.selector);
        msgs.send(bobId, bytes32(uint256(1)), hex"01");
        vm.prank(clusterOwner);
        vm.expectRevert(IMessageFacet.NotClusterMember.selector);
        msgs.send(bobId, bytes32(uint256(1)), hex"01");
    }

    function test_revert_send_recipientNotMember() public {
        vm.prank(alice);
        vm.expectRevert(IMessageFacet.RecipientNotMember.selector);
        msgs.send(keccak256("nobody"), bytes32(uint256(1)), hex"01");
    }

    function test_revert_send_duplicateEnvelope() public {
        vm.prank(alice);
        msgs.send(bobId, bytes32(uint256(1)), hex"01");
        vm.prank(alice);
        vm.expectRevert(IMessageFacet.DuplicateEnvelope.selector);
        msgs.send(bobId, bytes32(uint256(1)), hex"02");
        // another sender cannot reuse it either: the pair is the recipient's dedupe key
        vm.prank(bob);
        vm.expectRevert(IMessageFacet.DuplicateEnvelope.selector);
        msgs.send(bobId, bytes32(uint256(1)), hex"03");
    }

    function test_send_gas_1KiB() public {
        bytes memory ct = new bytes(1024);
        for (uint256 i; i < ct.length; ++i) {
            ct[i] = bytes1(uint8(uint256(keccak256(abi.encode(i)))));
        }
        vm.prank(alice);
        uint256 g = gasleft();
        msgs.send(bobId, bytes32(uint256(77)), ct);
        uint256 used = g - gasleft();
        console2.log("MessageFacet.send 1 KiB gas (execution, excl. 21k base + calldata)", used);
        assertLt(used, 60_000, "ciphertext is only logged, never stored");
    }

    // ------------------------------------------------------------------ owner commands

    function test_sendOwnerCommand() public {
        bytes32 ownerSender = keccak256(abi.encodePacked("attestmesh.cluster-owner.v1", clusterOwner));
        vm.expectEmit(true, true, true, true, cluster);
        emit IMessageFacet.MessageSent(ownerSender, aliceId, bytes32(uint256(5)), hex"c0ffee");
        vm.prank(clusterOwner);
        msgs.sendOwnerCommand(aliceId, bytes32(uint256(5)), hex"c0ffee");
        assertTrue(msgs.envelopeUsed(aliceId, bytes32(uint256(5))));
    }

    /// @dev The owner sender id is derived from the CURRENT cluster owner: after a two-step transfer
    /// the new owner speaks under its own id and the old owner no longer can.
    function test_sendOwnerCommand_senderIdFollowsOwner() public {
        address next = makeAddr("next cluster owner");
        vm.prank(clusterOwner);
        IAttestFacet(cluster).transferClusterOwnership(next);
        vm.prank(next);
        IAttestFacet(cluster).acceptClusterOwnership();

        bytes32 nextSender = keccak256(abi.encodePacked("attestmesh.cluster-owner.v1", next));
        vm.expectEmit(true, true, true, true, cluster);
        emit IMessageFacet.MessageSent(nextSender, bobId, bytes32(uint256(6)), hex"0a");
        vm.prank(next);
        msgs.sendOwnerCommand(bobId, bytes32(uint256(6)), hex"0a");

        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.NotClusterOwner.selector);
        msgs.sendOwnerCommand(bobId, bytes32(uint256(7)), hex"0b");
    }

    /// @dev Each member's messages carry its own id, whoever the recipient.
    function test_send_eachSenderUnderItsOwnId() public {
        vm.expectEmit(true, true, true, true, cluster);
        emit IMessageFacet.MessageSent(aliceId, bobId, bytes32(uint256(11)), hex"aa");
        vm.prank(alice);
        msgs.send(bobId, bytes32(uint256(11)), hex"aa");
        vm.expectEmit(true, true, true, true, cluster);
        emit IMessageFacet.MessageSent(bobId, aliceId, bytes32(uint256(11)), hex"bb");
        vm.prank(bob);
        msgs.send(aliceId, bytes32(uint256(11)), hex"bb");
    }

    function test_revert_sendOwnerCommand() public {
        vm.prank(alice);
        vm.expectRevert(IAttestFacet.NotClusterOwner.selector);
        msgs.sendOwnerCommand(bobId, bytes32(uint256(1)), hex"01");
        vm.prank(clusterOwner);
        vm.expectRevert(IMessageFacet.RecipientNotMember.selector);
        msgs.sendOwnerCommand(keccak256("nobody"), bytes32(uint256(1)), hex"01");
        // envelope namespace is shared with member messages
        vm.prank(alice);
        msgs.send(bobId, bytes32(uint256(3)), hex"01");
        vm.prank(clusterOwner);
        vm.expectRevert(IMessageFacet.DuplicateEnvelope.selector);
        msgs.sendOwnerCommand(bobId, bytes32(uint256(3)), hex"01");
    }

    // ------------------------------------------------------------------ network

    function test_keyViews() public view {
        assertEq(net.wgPubKeyOf(aliceId), memberKeys("alice").wgPubKey);
        assertEq(net.edPubKeyOf(bobId), memberKeys("bob").edPubKey);
        assertEq(NetworkFacet(cluster).wgKeyPublishedAt(aliceId), 0);
    }

    function test_revert_keyViews_unknown() public {
        vm.expectRevert(IAttestFacet.UnknownMember.selector);
        net.wgPubKeyOf(keccak256("nobody"));
        vm.expectRevert(IAttestFacet.UnknownMember.selector);
        net.edPubKeyOf(keccak256("nobody"));
        vm.expectRevert(IAttestFacet.UnknownMember.selector);
        NetworkFacet(cluster).wgKeyPublishedAt(keccak256("nobody"));
    }

    function test_publishWgKey() public {
        bytes32 k = DstackChain.wgKeyFrom(keccak256("rotated wg key"));
        vm.roll(777);
        vm.expectEmit(true, false, false, true, cluster);
        emit INetworkFacet.WgKeyPublished(aliceId, k);
        vm.prank(alice);
        net.publishWgKey(k);
        assertEq(net.wgPubKeyOf(aliceId), k);
        assertEq(IAttestFacet(cluster).memberOf(alice).wgPubKey, k, "record updated");
        assertEq(NetworkFacet(cluster).wgKeyPublishedAt(aliceId), 777);
        assertEq(net.wgPubKeyOf(bobId), memberKeys("bob").wgPubKey, "others untouched");
        assertEq(net.edPubKeyOf(aliceId), memberKeys("alice").edPubKey, "ed key untouched");
    }

    function test_revert_publishWgKey_notMember() public {
        vm.expectRevert(IMessageFacet.NotClusterMember.selector);
        net.publishWgKey(keccak256("k"));
        vm.prank(clusterOwner);
        vm.expectRevert(IMessageFacet.NotClusterMember.selector);
        net.publishWgKey(keccak256("k"));
    }
}
