// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ClusterInitArgs, MemberRecord} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {LibBinding} from "../../src/libraries/LibBinding.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";

/// @notice Membership views, the self-call-only `_addMember`, the CSK commitment and two-step
/// cluster ownership.
contract AttestFacetTest is ClusterFixture {
    IAttestFacet internal a;
    address internal m1;
    address internal m2;
    bytes32 internal id1;
    bytes32 internal id2;

    function setUp() public override {
        super.setUp();
        a = IAttestFacet(cluster);
    }

    function _two() internal {
        (m1, id1,) = deployAndRegister("first");
        (m2, id2,) = deployAndRegister("second");
    }

    function _record(address mc) internal pure returns (MemberRecord memory r) {
        r = MemberRecord({
            attestorId: keccak256("attestmesh.attestor.voucher.v1"),
            memberContract: mc,
            xPubKey: bytes32(uint256(1)),
            wgPubKey: bytes32(uint256(2)),
            edPubKey: bytes32(uint256(3)),
            registeredAt: 0
        });
    }

    // ------------------------------------------------------------------ views

    function test_emptyCluster() public view {
        assertEq(a.memberCount(), 0);
        assertEq(a.listMembers().length, 0);
        assertEq(a.clusterOwner(), clusterOwner);
        assertEq(a.pendingClusterOwner(), address(0));
        (uint32 ip, uint8 prefix) = a.meshCidr();
        assertEq(ip, MESH_CIDR_IP);
        assertEq(prefix, MESH_PREFIX);
        assertEq(a.cskCommitment(), bytes32(0));
        assertFalse(a.isClusterMember(address(this)));
        assertEq(a.memberIdOf(address(this)), bytes32(0));
    }

    function test_memberViews() public {
        _two();
        assertTrue(a.isClusterMember(m1));
        assertEq(a.memberIdOf(m2), id2);
        assertEq(a.memberOf(m1).memberContract, m1);
        assertEq(a.memberById(id2).memberContract, m2);
        assertEq(a.memberOf(m2).xPubKey, memberKeys("second").xPubKey);
        assertEq(a.memberCount(), 2);
        assertEq(a.listMembers()[0].memberContract, m1, "first registered is originator");
    }

    function test_revert_unknownMember() public {
        vm.expectRevert(IAttestFacet.UnknownMember.selector);
        a.memberOf(address(0xBEEF));
        vm.expectRevert(IAttestFacet.UnknownMember.selector);
        a.memberById(bytes32(uint256(1)));
    }

    function test_meshIpOf_anyId() public view {
        // §3.2 vectors on a 10.13.0.0/16 cluster; ids need not be members.
        assertEq(a.meshIpOf(bytes32(uint256(1))), 168656109);
        assertEq(a.meshIpOf(bytes32(uint256(2))), 168665671);
        assertEq(a.meshIpOf(bytes32(uint256(0xaa))), 168680749);
    }

    function testFuzz_meshIpOf_matchesLib(bytes32 id) public view {
        assertEq(a.meshIpOf(id), LibBinding.meshIp(MESH_CIDR_IP, MESH_PREFIX, id));
    }

    /// @dev For every prefix 8..30, CIDR and id: inside the network, never network nor broadcast.
    function testFuzz_meshIp_inRange(uint32 anyIp, uint8 prefixSeed, bytes32 id) public pure {
        uint8 prefix = uint8(bound(prefixSeed, 8, 30));
        uint32 mask = uint32(~((uint256(1) << (32 - prefix)) - 1));
        uint32 net = anyIp & mask;
        uint32 broadcast = net | ~mask;
        uint32 ip = LibBinding.meshIp(net, prefix, id);
        assertEq(ip & mask, net, "inside the CIDR");
        assertTrue(ip != net, "not the network address");
        assertTrue(ip != broadcast, "not the broadcast address");
        assertGt(ip, net);
        assertLt(ip, broadcast);
    }

    /// @dev The same property for EVERY prefix 8..30 on each run (the bounded fuzz above spreads its
    /// runs over the prefixes; this one leaves none to chance), including the all-zero and all-ones
    /// address space corners.
    function testFuzz_meshIp_everyPrefix(uint32 anyIp, bytes32 id) public pure {
        uint32[3] memory bases = [anyIp, uint32(0), type(uint32).max];
        for (uint256 b; b < bases.length; ++b) {
            for (uint8 prefix = 8; prefix <= 30; ++prefix) {
                uint32 hostMask = uint32((uint256(1) << (32 - prefix)) - 1);
                uint32 net = bases[b] & ~hostMask;
                uint32 ip = LibBinding.meshIp(net, prefix, id);
                assertEq(ip & ~hostMask, net, "inside the CIDR");
                assertGt(ip & hostMask, 0, "not the network address");
                assertLt(ip & hostMask, hostMask, "not the broadcast address");
                // and it is the DESIGN formula: cidr | ((low mod (hosts - 2)) + 1)
                uint256 low = uint32(uint256(keccak256(abi.encode(id))));
                assertEq(ip & hostMask, (low % (uint256(hostMask) + 1 - 2)) + 1);
            }
        }
    }

    /// @dev On chain: a cluster deployed for a random CIDR (any prefix 8..30) answers meshIpOf inside
    /// its CIDR and never with the network or broadcast address.
    /// forge-config: default.fuzz.runs = 64
    function testFuzz_meshIpOf_onChainAnyCidr(uint32 anyIp, uint8 prefixSeed, bytes32 id) public {
        uint8 prefix = uint8(bound(prefixSeed, 8, 30));
        uint32 hostMask = uint32((uint256(1) << (32 - prefix)) - 1);
        uint32 net = anyIp & ~hostMask;
        ClusterInitArgs memory args = defaultClusterArgs();
        args.meshCidrIp = net;
        args.meshPrefix = prefix;
        IAttestFacet c = IAttestFacet(_deployCluster(args, keccak256(abi.encode(net, prefix))));
        (uint32 gotNet, uint8 gotPrefix) = c.meshCidr();
        assertEq(gotNet, net);
        assertEq(gotPrefix, prefix);
        uint32 ip = c.meshIpOf(id);
        assertEq(ip & ~hostMask, net, "inside the CIDR");
        assertTrue(ip != net && ip != (net | hostMask), "neither network nor broadcast");
        assertEq(ip, LibBinding.meshIp(net, prefix, id));
    }

    // ------------------------------------------------------------------ _addMember

    function test_revert_addMember_external() public {
        vm.expectRevert(IAttestFacet.OnlyDiamond.selector);
        a._addMember(_record(address(this)));
        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.OnlyDiamond.selector);
        a._addMember(_record(clusterOwner));
        assertEq(a.memberCount(), 0);
    }

    function test_revert_addMember_callingFacetDirectly() public {
        // The bare facet is its own "diamond": it must not be usable as a side door either —
        // and its storage is not the cluster's.
        vm.expectRevert(IAttestFacet.OnlyDiamond.selector);
        attestFacet._addMember(_record(address(this)));
    }

    function test_addMember_viaSelfCall_setsBlockAndId() public {
        // Simulate a sibling facet: the diamond calling itself.
        vm.roll(4242);
        MemberRecord memory r = _record(address(0xA1));
        r.registeredAt = 7; // ignored: the block decides
        vm.prank(cluster);
        bytes32 id = a._addMember(r);
        assertEq(id, LibBinding.memberId(cluster, address(0xA1), r.attestorId));
        MemberRecord memory got = a.memberById(id);
        assertEq(got.registeredAt, 4242);
        assertEq(got.attestorId, r.attestorId);
        assertEq(got.edPubKey, r.edPubKey);

        vm.prank(cluster);
        vm.expectRevert(IAttestFacet.AlreadyRegistered.selector);
        a._addMember(r);

        r.memberContract = address(0);
        vm.prank(cluster);
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        a._addMember(r);
    }

    // ------------------------------------------------------------------ _setWgKey

    /// @dev The rotation entry point is as closed as _addMember: only a sibling facet (NetworkFacet)
    /// reaches it, so no outsider rewrites a member's key.
    function test_revert_setWgKey_external() public {
        _two();
        bytes32 k = bytes32(uint256(0x2a));
        vm.prank(m1);
        vm.expectRevert(IAttestFacet.OnlyDiamond.selector);
        a._setWgKey(id1, k);
        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.OnlyDiamond.selector);
        a._setWgKey(id1, k);
        vm.expectRevert(IAttestFacet.OnlyDiamond.selector);
        attestFacet._setWgKey(id1, k);
        assertEq(a.memberById(id1).wgPubKey, memberKeys("first").wgPubKey);
    }

    function test_setWgKey_viaSelfCall() public {
        _two();
        bytes32 k = bytes32(uint256(0x2a));
        vm.prank(cluster);
        a._setWgKey(id1, k);
        assertEq(a.memberById(id1).wgPubKey, k);
        assertEq(a.memberIdOfWgKey(k), id1);
        vm.prank(cluster);
        vm.expectRevert(IAttestFacet.UnknownMember.selector);
        a._setWgKey(keccak256("nobody"), bytes32(uint256(0x2b)));
    }

    // ------------------------------------------------------------------ CSK commitment

    function test_setCskCommitment_originator() public {
        _two();
        bytes32 c = keccak256("csk");
        vm.expectEmit(false, false, false, true, cluster);
        emit IAttestFacet.CskCommitmentSet(c);
        vm.prank(m1);
        a.setCskCommitment(c);
        assertEq(a.cskCommitment(), c);
    }

    function test_revert_setCskCommitment_notOriginator() public {
        vm.prank(m1);
        vm.expectRevert(IAttestFacet.NotOriginator.selector); // no members yet
        a.setCskCommitment(keccak256("csk"));
        _two();
        vm.prank(m2);
        vm.expectRevert(IAttestFacet.NotOriginator.selector);
        a.setCskCommitment(keccak256("csk"));
        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.NotOriginator.selector);
        a.setCskCommitment(keccak256("csk"));
        assertEq(a.cskCommitment(), bytes32(0));
    }

    function test_revert_setCskCommitment_once() public {
        _two();
        vm.startPrank(m1);
        a.setCskCommitment(keccak256("csk"));
        vm.expectRevert(IAttestFacet.CskCommitmentAlreadySet.selector);
        a.setCskCommitment(keccak256("another csk"));
        vm.stopPrank();
        assertEq(a.cskCommitment(), keccak256("csk"));
    }

    function test_revert_setCskCommitment_zero() public {
        _two();
        vm.prank(m1);
        vm.expectRevert(IAttestFacet.ZeroCommitment.selector);
        a.setCskCommitment(bytes32(0));
    }

    // ------------------------------------------------------------------ cluster ownership

    function test_clusterOwnership_twoStep() public {
        address next = makeAddr("nextOwner");
        vm.expectEmit(true, true, false, false, cluster);
        emit IAttestFacet.ClusterOwnershipTransferStarted(clusterOwner, next);
        vm.prank(clusterOwner);
        a.transferClusterOwnership(next);
        assertEq(a.pendingClusterOwner(), next);
        assertEq(a.clusterOwner(), clusterOwner, "unchanged until accepted");

        vm.expectEmit(true, true, false, false, cluster);
        emit IAttestFacet.ClusterOwnershipTransferred(clusterOwner, next);
        vm.prank(next);
        a.acceptClusterOwnership();
        assertEq(a.clusterOwner(), next);
        assertEq(a.pendingClusterOwner(), address(0));

        // the new owner administers; the old one no longer can
        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.NotClusterOwner.selector);
        a.transferClusterOwnership(clusterOwner);
    }

    function test_revert_clusterOwnership() public {
        vm.expectRevert(IAttestFacet.NotClusterOwner.selector);
        a.transferClusterOwnership(address(this));
        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        a.transferClusterOwnership(address(0));
        vm.prank(clusterOwner);
        a.transferClusterOwnership(makeAddr("nominee"));
        vm.expectRevert(IAttestFacet.NotPendingClusterOwner.selector);
        a.acceptClusterOwnership();
        vm.prank(clusterOwner);
        vm.expectRevert(IAttestFacet.NotPendingClusterOwner.selector);
        a.acceptClusterOwnership();
    }
}
