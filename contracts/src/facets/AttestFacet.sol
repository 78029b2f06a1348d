// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {MemberRecord} from "../interfaces/ClusterTypes.sol";
import {LibAttestStorage} from "../libraries/LibAttestStorage.sol";
import {LibBinding} from "../libraries/LibBinding.sol";
import {LibWgKey} from "../libraries/LibWgKey.sol";

/// @notice Who is a member (DESIGN §3.2). Method-neutral: it never learns how a member was
/// attested; attestor facets call `_addMember` through the diamond after they verified a proof.
contract AttestFacet is IAttestFacet {
    // ---------------------------------------------------------------- views

    function isClusterMember(address memberContract) external view returns (bool) {
        return LibAttestStorage.s().memberIdOf[memberContract] != bytes32(0);
    }

    /// @return The member id, or zero when `memberContract` is not a member.
    function memberIdOf(address memberContract) external view returns (bytes32) {
        return LibAttestStorage.s().memberIdOf[memberContract];
    }

    function memberOf(address memberContract) external view returns (MemberRecord memory) {
        bytes32 id = LibAttestStorage.s().memberIdOf[memberContract];
        if (id == bytes32(0)) revert UnknownMember();
        return _record(id);
    }

    function memberById(bytes32 memberId) external view returns (MemberRecord memory) {
        if (!LibAttestStorage.exists(memberId)) revert UnknownMember();
        return _record(memberId);
    }

    function listMembers() external view returns (MemberRecord[] memory list) {
        bytes32[] storage ids = LibAttestStorage.s().memberIds;
        list = new MemberRecord[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            list[i] = _record(ids[i]);
        }
    }

    function memberCount() external view returns (uint256) {
        return LibAttestStorage.s().memberIds.length;
    }

    function clusterOwner() external view returns (address) {
        return LibAttestStorage.s().clusterOwner;
    }

    function pendingClusterOwner() external view returns (address) {
        return LibAttestStorage.s().pendingClusterOwner;
    }

    function meshCidr() external view returns (uint32 ip, uint8 prefix) {
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        return (st.meshCidrIp, st.meshPrefix);
    }

    /// @notice Mesh IP for any id (member or not), so agents and tools can precompute addresses.
    function meshIpOf(bytes32 memberId) external view returns (uint32) {
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        return LibBinding.meshIp(st.meshCidrIp, st.meshPrefix, memberId);
    }

    function cskCommitment() external view returns (bytes32) {
        return LibAttestStorage.s().cskCommitment;
    }

    function memberIdOfWgKey(bytes32 wgPubKey) external view returns (bytes32) {
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        return _holderOf(st, wgPubKey);
    }

    // ---------------------------------------------------------------- mutations

    /// @notice Adds a member. Only the diamond itself may call (msg.sender == address(this)), i.e. a
    /// sibling attestor facet after it verified a proof; nobody can assert membership directly.
    /// `registeredAt` is taken from the block, whatever the caller put in the record.
    function _addMember(MemberRecord calldata record) external returns (bytes32 memberId) {
        if (msg.sender != address(this)) revert OnlyDiamond();
        address mc = record.memberContract;
        if (mc == address(0)) revert ZeroAddress();
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        if (st.memberIdOf[mc] != bytes32(0)) revert AlreadyRegistered();

        memberId = LibBinding.memberId(address(this), mc, record.attestorId);
        _claimWgKey(st, memberId, record.wgPubKey);
        st.members[memberId] = LibAttestStorage.StoredMember({
            attestorId: record.attestorId,
            xPubKey: record.xPubKey,
            wgPubKey: record.wgPubKey,
            edPubKey: record.edPubKey,
            memberContract: mc,
            registeredAt: uint64(block.number)
        });
        st.memberIdOf[mc] = memberId;
        st.memberIds.push(memberId);
        emit MemberRegistered(
            memberId, mc, record.attestorId, record.xPubKey, record.wgPubKey, record.edPubKey
        );
    }

    /// @notice Replaces a member's WireGuard key. Only the diamond itself may call: NetworkFacet's
    /// `publishWgKey` after it resolved the caller to `memberId`. The old key is released (its
    /// index entry goes stale, see `_holderOf`), so the member or anyone may take it again later;
    /// re-publishing the current key is a no-op here.
    function _setWgKey(bytes32 memberId, bytes32 wgPubKey) external {
        if (msg.sender != address(this)) revert OnlyDiamond();
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        LibAttestStorage.StoredMember storage m = st.members[memberId];
        if (m.memberContract == address(0)) revert UnknownMember();
        bytes32 old = m.wgPubKey;
        if (old == wgPubKey) return;
        _claimWgKey(st, memberId, wgPubKey);
        m.wgPubKey = wgPubKey;
    }

    /// @notice The originator (first member) commits keccak256(csk) once; every later member checks
    /// the key it is served against this value (DESIGN §8). Zero is rejected: it means "unset".
    function setCskCommitment(bytes32 commitment) external {
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        if (st.memberIds.length == 0 || st.members[st.memberIds[0]].memberContract != msg.sender) {
            revert NotOriginator();
        }
        if (st.cskCommitment != bytes32(0)) revert CskCommitmentAlreadySet();
        if (commitment == bytes32(0)) revert ZeroCommitment();
        st.cskCommitment = commitment;
        emit CskCommitmentSet(commitment);
    }

    /// @notice Nominates a new cluster owner; takes effect when the nominee accepts.
    function transferClusterOwnership(address newOwner) external {
        LibAttestStorage.enforceIsClusterOwner();
        if (newOwner == address(0)) revert ZeroAddress();
        LibAttestStorage.s().pendingClusterOwner = newOwner;
        emit ClusterOwnershipTransferStarted(msg.sender, newOwner);
    }

    function acceptClusterOwnership() external {
        LibAttestStorage.AttestStorage storage st = LibAttestStorage.s();
        if (msg.sender != st.pendingClusterOwner) revert NotPendingClusterOwner();
        emit ClusterOwnershipTransferred(st.clusterOwner, msg.sender);
        st.clusterOwner = msg.sender;
        st.pendingClusterOwner = address(0);
    }

    /// @dev The one WireGuard key check, shared by registration and rotation: the key must be a
    /// canonical, non-small-order X25519 point that no other member holds; then it is `memberId`'s.
    function _claimWgKey(LibAttestStorage.AttestStorage storage st, bytes32 memberId, bytes32 wgPubKey)
        private
    {
        if (LibWgKey.isLowOrder(wgPubKey)) revert WgKeyLowOrder();
        if (!LibWgKey.isCanonical(wgPubKey)) revert WgKeyNotCanonical();
        bytes32 holder = _holderOf(st, wgPubKey);
        if (holder == memberId) return;
        if (holder != bytes32(0)) revert WgKeyInUse();
        st.memberIdOfWgKey[wgPubKey] = memberId;
    }

    /// @dev The member whose current key is `wgPubKey`, or zero. Rotation does not clear the old
    /// key's index entry (no extra write, no refund that gas estimators miscount); an entry whose
    /// member has moved on to another key is stale and means "free".
    function _holderOf(LibAttestStorage.AttestStorage storage st, bytes32 wgPubKey)
        private
        view
        returns (bytes32 holder)
    {
        holder = st.memberIdOfWgKey[wgPubKey];
        if (holder != bytes32(0) && st.members[holder].wgPubKey != wgPubKey) holder = bytes32(0);
    }

    function _record(bytes32 id) private view returns (MemberRecord memory r) {
        LibAttestStorage.StoredMember storage m = LibAttestStorage.s().members[id];
        r = MemberRecord({
            attestorId: m.attestorId,
            memberContract: m.memberContract,
            xPubKey: m.xPubKey,
            wgPubKey: m.wgPubKey,
            edPubKey: m.edPubKey,
            registeredAt: m.registeredAt
        });
    }
}
