// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {IMessageFacet} from "../interfaces/IMessageFacet.sol";
import {LibAttestStorage} from "../libraries/LibAttestStorage.sol";
import {LibMessageStorage} from "../libraries/LibMessageStorage.sol";

/// @notice Sealed messages through the chain (DESIGN §3.3). The ciphertext is only emitted, never
/// stored: the chain orders and authenticates messages, the log carries them.
contract MessageFacet is IMessageFacet {
    /// @dev Prefix of the synthetic sender id used for cluster-owner commands.
    bytes internal constant OWNER_SENDER_DOMAIN = "attestmesh.cluster-owner.v1";

    /// @notice Sender id comes from msg.sender's membership, so a member cannot speak for another.
    function send(bytes32 recipientMemberId, bytes32 envelopeId, bytes calldata ciphertext) external {
        bytes32 sender = LibAttestStorage.s().memberIdOf[msg.sender];
        if (sender == bytes32(0)) revert NotClusterMember();
        _deliver(sender, recipientMemberId, envelopeId, ciphertext);
    }

    /// @notice The cluster owner's channel to a member; sender id =
    /// keccak256(abi.encodePacked("attestmesh.cluster-owner.v1", owner)), which no member id can equal
    /// in practice, so recipients can tell owner commands from peer messages.
    function sendOwnerCommand(bytes32 recipientMemberId, bytes32 envelopeId, bytes calldata ciphertext)
        external
    {
        address owner = LibAttestStorage.s().clusterOwner;
        if (msg.sender != owner) revert IAttestFacet.NotClusterOwner();
        _deliver(
            keccak256(abi.encodePacked(OWNER_SENDER_DOMAIN, owner)), recipientMemberId, envelopeId, ciphertext
        );
    }

    function envelopeUsed(bytes32 recipientMemberId, bytes32 envelopeId) external view returns (bool) {
        return LibMessageStorage.s().envelopeUsed[recipientMemberId][envelopeId];
    }

    /// @dev (recipient, envelopeId) is single-use across members and owner alike, so a recipient can
    /// dedupe on the pair no matter which path a message came through.
    function _deliver(bytes32 sender, bytes32 recipient, bytes32 envelopeId, bytes calldata ciphertext)
        private
    {
        if (!LibAttestStorage.exists(recipient)) revert RecipientNotMember();
        mapping(bytes32 => bool) storage used = LibMessageStorage.s().envelopeUsed[recipient];
        if (used[envelopeId]) revert DuplicateEnvelope();
        used[envelopeId] = true;
        emit MessageSent(sender, recipient, envelopeId, ciphertext);
    }
}
