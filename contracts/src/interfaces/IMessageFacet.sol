// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Sealed messages through the chain; the ciphertext lives only in the event (DESIGN §3.3).
interface IMessageFacet {
    error NotClusterMember();
    error RecipientNotMember();
    error DuplicateEnvelope();

    event MessageSent(
        bytes32 indexed senderMemberId,
        bytes32 indexed recipientMemberId,
        bytes32 indexed envelopeId,
        bytes ciphertext
    );

    function send(bytes32 recipientMemberId, bytes32 envelopeId, bytes calldata ciphertext) external;
    /// @dev Cluster owner only; sender id = keccak256(abi.encodePacked("attestmesh.cluster-owner.v1", owner)).
    function sendOwnerCommand(bytes32 recipientMemberId, bytes32 envelopeId, bytes calldata ciphertext)
        external;
    function envelopeUsed(bytes32 recipientMemberId, bytes32 envelopeId) external view returns (bool);
}
