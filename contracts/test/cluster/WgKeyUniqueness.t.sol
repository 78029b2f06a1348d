// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {console2} from "forge-std/console2.sol";
import {DstackProof} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {INetworkFacet} from "../../src/interfaces/INetworkFacet.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {DstackChain} from "../utils/DstackChain.sol";

/// @notice Issue 11 hole 5: a member's WireGuard key is its identity on every node's device, so
/// no member may take a key another member holds, nor a small-order or non-canonical one, at
/// registration (DstackFacet) or rotation (NetworkFacet). Both paths share AttestFacet's check.
contract WgKeyUniquenessTest is ClusterFixture {
    /// @dev p = 2^255 - 19 as the little-endian bytes32 WireGuard uses.
    bytes32 internal constant P_LE = 0xedffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f;

    address internal alice;
    bytes32 internal aliceId;
    DstackChain.MemberKeys internal aliceKeys;
    address internal bob;
    bytes32 internal bobId;
    DstackChain.MemberKeys internal bobKeys;

    function setUp() public override {
        super.setUp();
        (alice, aliceId, aliceKeys) = deployAndRegister("alice");
        (bob, bobId, bobKeys) = deployAndRegister("bob");
    }

    /// @dev Every encoding of a small-order point: the seven canonical u-coordinates of
    /// libsodium's blocklist (0, 1, the two of order 8, p - 1, and p, p + 1 for 0 and 1), each
    /// also with bit 255 set (X25519 ignores it).
    function lowOrderKeys() internal pure returns (bytes32[14] memory keys) {
        bytes32[7] memory u = [
            bytes32(0),
            bytes32(0x0100000000000000000000000000000000000000000000000000000000000000),
            bytes32(0xe0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800),
            bytes32(0x5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157),
            bytes32(0xecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f),
            P_LE,
            bytes32(0xeeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f)
        ];
        for (uint256 i; i < 7; ++i) {
            keys[2 * i] = u[i];
            keys[2 * i + 1] = u[i] | bytes32(uint256(0x80));
        }
    }

    /// @dev Registers a fresh member `label` with its own keys except the WireGuard key.
    function _registerWithWgKey(string memory label, bytes32 wg) internal returns (address member) {
        member = newMember(cluster, keccak256(bytes(label)));
        DstackChain.MemberKeys memory k = memberKeys(label);
        k.wgPubKey = wg;
        DstackProof memory proof = buildProof(cluster, member, k);
        vm.prank(relayer);
        IDstackFacet(cluster).dstack_register(proof, member, k.xPubKey, k.wgPubKey, k.edPubKey);
    }

    function _expectRegisterRevert(string memory label, bytes32 wg, bytes4 err) internal {
        uint256 before = attestOf(cluster).memberCount();
        address member = newMember(cluster, keccak256(bytes(label)));
        DstackChain.MemberKeys memory k = memberKeys(label);
        k.wgPubKey = wg;
        DstackProof memory proof = buildProof(cluster, member, k);
        vm.prank(relayer);
        vm.expectRevert(err);
        IDstackFacet(cluster).dstack_register(proof, member, k.xPubKey, k.wgPubKey, k.edPubKey);
        assertEq(attestOf(cluster).memberCount(), before, "nobody registered");
        assertFalse(attestOf(cluster).isClusterMember(member));
    }

    function _expectPublishRevert(address member, bytes32 wg, bytes4 err) internal {
        bytes32 id = attestOf(cluster).memberIdOf(member);
        bytes32 held = INetworkFacet(cluster).wgPubKeyOf(id);
        vm.prank(member);
        vm.expectRevert(err);
        INetworkFacet(cluster).publishWgKey(wg);
        assertEq(INetworkFacet(cluster).wgPubKeyOf(id), held, "key unchanged");
    }

    // ------------------------------------------------------------------ attacks

    /// @dev A node that registers with a member's WireGuard key would have every node route that
    /// member's tunnel to it (or drop both).
    function testAttack_registerWithAnothersWgKey() public {
        _expectRegisterRevert("mallory", aliceKeys.wgPubKey, IAttestFacet.WgKeyInUse.selector);
        assertEq(INetworkFacet(cluster).wgPubKeyOf(aliceId), aliceKeys.wgPubKey);
        assertEq(attestOf(cluster).memberIdOfWgKey(aliceKeys.wgPubKey), aliceId);
    }

    function testAttack_publishAnothersWgKey() public {
        _expectPublishRevert(bob, aliceKeys.wgPubKey, IAttestFacet.WgKeyInUse.selector);
        assertEq(attestOf(cluster).memberIdOfWgKey(aliceKeys.wgPubKey), aliceId);
    }

    /// @dev The index follows rotation: Alice's new key is hers, at registration and rotation.
    function testAttack_takeAnothersRotatedWgKey() public {
        bytes32 rotated = DstackChain.wgKeyFrom(keccak256("alice rotated"));
        vm.prank(alice);
        INetworkFacet(cluster).publishWgKey(rotated);
        _expectPublishRevert(bob, rotated, IAttestFacet.WgKeyInUse.selector);
        _expectRegisterRevert("mallory", rotated, IAttestFacet.WgKeyInUse.selector);
    }

    /// @dev The same point under another encoding (bit 255 set, or u + p) must not slip past the
    /// index: only canonical encodings are accepted at all.
    function testAttack_aliasOfAnothersWgKey() public {
        bytes32 topBit = aliceKeys.wgPubKey | bytes32(uint256(0x80));
        _expectPublishRevert(bob, topBit, IAttestFacet.WgKeyNotCanonical.selector);
        _expectRegisterRevert("mallory", topBit, IAttestFacet.WgKeyNotCanonical.selector);
        // u = p + 2: the non-canonical encoding of u = 2 (not small order).
        bytes32 pPlus2 = bytes32(0xefffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f);
        _expectPublishRevert(bob, pPlus2, IAttestFacet.WgKeyNotCanonical.selector);
        _expectRegisterRevert("mallory", pPlus2, IAttestFacet.WgKeyNotCanonical.selector);
    }

    /// @dev A small-order key makes every node's Diffie-Hellman with it a value anyone can
    /// compute; WireGuard implementations refuse such peers, so the member would be unreachable.
    function testAttack_lowOrderWgKey_register() public {
        bytes32[14] memory keys = lowOrderKeys();
        for (uint256 i; i < keys.length; ++i) {
            _expectRegisterRevert("mallory", keys[i], IAttestFacet.WgKeyLowOrder.selector);
        }
    }

    function testAttack_lowOrderWgKey_publish() public {
        bytes32[14] memory keys = lowOrderKeys();
        for (uint256 i; i < keys.length; ++i) {
            _expectPublishRevert(alice, keys[i], IAttestFacet.WgKeyLowOrder.selector);
        }
    }

    // ------------------------------------------------------------------ rotation

    /// @dev Rotating frees the old key: its owner may return to it, and once free, anyone may use
    /// it. Re-publishing the current key is accepted (idempotent) and keeps the index.
    function test_rotate_releasesOldKey_andOwnerMayReuseIt() public {
        bytes32 k1 = aliceKeys.wgPubKey;
        bytes32 k2 = DstackChain.wgKeyFrom(keccak256("alice k2"));
        vm.startPrank(alice);
        INetworkFacet(cluster).publishWgKey(k2);
        assertEq(attestOf(cluster).memberIdOfWgKey(k1), bytes32(0), "k1 released");
        assertEq(attestOf(cluster).memberIdOfWgKey(k2), aliceId);
        INetworkFacet(cluster).publishWgKey(k1);
        assertEq(INetworkFacet(cluster).wgPubKeyOf(aliceId), k1, "back to k1");
        assertEq(attestOf(cluster).memberIdOfWgKey(k1), aliceId);
        assertEq(attestOf(cluster).memberIdOfWgKey(k2), bytes32(0), "k2 released");
        INetworkFacet(cluster).publishWgKey(k1);
        assertEq(attestOf(cluster).memberIdOfWgKey(k1), aliceId, "re-publish keeps the claim");
        INetworkFacet(cluster).publishWgKey(k2);
        vm.stopPrank();

        // k1 is nobody's now: Bob may take it, then Alice may not.
        vm.prank(bob);
        INetworkFacet(cluster).publishWgKey(k1);
        assertEq(attestOf(cluster).memberIdOfWgKey(k1), bobId);
        assertEq(attestOf(cluster).memberIdOfWgKey(bobKeys.wgPubKey), bytes32(0));
        _expectPublishRevert(alice, k1, IAttestFacet.WgKeyInUse.selector);
        // and a new member may register with Bob's released key
        address carol = _registerWithWgKey("carol", bobKeys.wgPubKey);
        assertEq(attestOf(cluster).memberIdOfWgKey(bobKeys.wgPubKey), attestOf(cluster).memberIdOf(carol));
    }

    /// @dev Random canonical keys: the index always names exactly the member holding each key.
    function testFuzz_rotate_indexFollowsKeys(bytes32 seedA, bytes32 seedB) public {
        bytes32 ka = DstackChain.wgKeyFrom(seedA);
        bytes32 kb = DstackChain.wgKeyFrom(seedB);
        vm.prank(alice);
        INetworkFacet(cluster).publishWgKey(ka);
        if (ka == kb) {
            _expectPublishRevert(bob, kb, IAttestFacet.WgKeyInUse.selector);
            return;
        }
        vm.prank(bob);
        INetworkFacet(cluster).publishWgKey(kb);
        assertEq(attestOf(cluster).memberIdOfWgKey(ka), aliceId);
        assertEq(attestOf(cluster).memberIdOfWgKey(kb), bobId);
        if (aliceKeys.wgPubKey != ka && aliceKeys.wgPubKey != kb) {
            assertEq(attestOf(cluster).memberIdOfWgKey(aliceKeys.wgPubKey), bytes32(0));
        }
    }

    function test_publishWgKey_gas() public {
        bytes32 k = DstackChain.wgKeyFrom(keccak256("gas"));
        vm.prank(alice);
        uint256 g = gasleft();
        INetworkFacet(cluster).publishWgKey(k);
        console2.log("publishWgKey gas (execution)", g - gasleft());
    }
}
