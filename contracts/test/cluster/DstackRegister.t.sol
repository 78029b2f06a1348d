// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {console2} from "forge-std/console2.sol";
import {Vm} from "forge-std/Vm.sol";
import {ClusterInitArgs, DstackProof, MemberRecord} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {LibBinding} from "../../src/libraries/LibBinding.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {DstackChain} from "../utils/DstackChain.sol";
import {TestAppMember} from "../utils/TestAppMember.sol";

/// @notice dstack_register end to end through real signature chains, and every way to break
/// admission (DESIGN §1 invariant 1, §3.5).
contract DstackRegisterTest is ClusterFixture {
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;

    address internal member;
    DstackChain.MemberKeys internal keys;
    DstackProof internal proof;

    function setUp() public override {
        super.setUp();
        member = newMember(cluster, "m1");
        keys = memberKeys("m1");
        proof = buildProof(cluster, member, keys);
    }

    function _register(DstackProof memory p) internal returns (bytes32) {
        return IDstackFacet(cluster).dstack_register(p, member, keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    function _expectRegisterRevert(DstackProof memory p, bytes4 err) internal {
        vm.expectRevert(err);
        _register(p);
        assertEq(IAttestFacet(cluster).memberCount(), 0, "nothing registered");
    }

    // ------------------------------------------------------------------ happy paths

    function test_registerThreeMembers_fullChain() public {
        string[3] memory labels = ["node-a", "node-b", "node-c"];
        address[3] memory members;
        bytes32[3] memory ids;
        for (uint256 i; i < 3; ++i) {
            vm.roll(100 + i);
            (members[i], ids[i],) = deployAndRegister(labels[i]);
        }
        IAttestFacet a = IAttestFacet(cluster);
        assertEq(a.memberCount(), 3);
        MemberRecord[] memory list = a.listMembers();
        assertEq(list.length, 3);
        for (uint256 i; i < 3; ++i) {
            DstackChain.MemberKeys memory k = memberKeys(labels[i]);
            bytes32 expectedId = LibBinding.memberId(cluster, members[i], LibBinding.DSTACK_ATTESTOR_ID);
            assertEq(ids[i], expectedId, "memberId formula");
            assertEq(a.memberIdOf(members[i]), expectedId);
            assertTrue(a.isClusterMember(members[i]));
            // registration order, index 0 = CSK originator
            assertEq(list[i].memberContract, members[i], "listMembers order");
            assertEq(list[i].attestorId, LibBinding.DSTACK_ATTESTOR_ID);
            assertEq(list[i].xPubKey, k.xPubKey);
            assertEq(list[i].wgPubKey, k.wgPubKey);
            assertEq(list[i].edPubKey, k.edPubKey);
            assertEq(list[i].registeredAt, 100 + i, "registeredAt = block number");
            MemberRecord memory byId = a.memberById(expectedId);
            assertEq(keccak256(abi.encode(byId)), keccak256(abi.encode(list[i])));
            // mesh IP: formula, inside 10.13.0.0/16, not network/broadcast
            uint32 ip = a.meshIpOf(expectedId);
            assertEq(ip, LibBinding.meshIp(MESH_CIDR_IP, MESH_PREFIX, expectedId));
            assertEq(ip & 0xffff0000, MESH_CIDR_IP);
            assertTrue(ip != MESH_CIDR_IP && ip != (MESH_CIDR_IP | 0xffff));
            // the attested owner key now owns the 4337 account
            assertEq(IClusterMember(members[i]).owner(), vm.addr(k.ownerKey), "member owner installed");
        }
        assertTrue(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    }

    function test_register_emitsEvents() public {
        bytes32 id = LibBinding.memberId(cluster, member, LibBinding.DSTACK_ATTESTOR_ID);
        vm.expectEmit(true, true, true, true, cluster);
        emit IAttestFacet.MemberRegistered(
            id, member, LibBinding.DSTACK_ATTESTOR_ID, keys.xPubKey, keys.wgPubKey, keys.edPubKey
        );
        vm.expectEmit(true, false, false, false, member);
        emit IClusterMember.OwnerSet(vm.addr(keys.ownerKey));
        vm.expectEmit(true, false, false, true, cluster);
        emit IDstackFacet.DstackMemberRegistered(id, vm.addr(keys.ownerKey));
        assertEq(_register(proof), id);
    }

    function test_register_anySubmitterWorks() public {
        // The proof authenticates, not msg.sender: a stranger can relay it.
        vm.prank(makeAddr("stranger"));
        bytes32 id = _register(proof);
        assertEq(IAttestFacet(cluster).memberIdOf(member), id);
    }

    function test_register_allowlistedAppId() public {
        TestAppMember app = new TestAppMember(cluster);
        vm.prank(clusterOwner);
        IDstackFacet(cluster).addAllowedAppId(address(app));
        DstackChain.MemberKeys memory k = memberKeys("path-a");
        bytes32 id = registerMember(cluster, address(app), k);
        assertEq(id, LibBinding.memberId(cluster, address(app), LibBinding.DSTACK_ATTESTOR_ID));
        assertEq(app.owner(), vm.addr(k.ownerKey));
    }

    /// @dev Signature chains from random KMS root, app and owner keys and random public keys.
    function testFuzz_register_randomChain(
        bytes32 kmsSeed,
        bytes32 appSeed,
        bytes32 ownerSeed,
        bytes32 x,
        bytes32 wgSeed
    ) public {
        bytes32 wg = DstackChain.wgKeyFrom(wgSeed);
        uint256 root = DstackChain.toPrivateKey(kmsSeed);
        vm.prank(clusterOwner);
        IDstackFacet(cluster).addAllowedKmsRoot(vm.addr(root));
        DstackChain.MemberKeys memory k = DstackChain.MemberKeys({
            appKey: DstackChain.toPrivateKey(appSeed),
            ownerKey: DstackChain.toPrivateKey(ownerSeed),
            xPubKey: x,
            wgPubKey: wg,
            edPubKey: keccak256(abi.encode(x, wg))
        });
        DstackProof memory p = DstackChain.buildProof(root, k, cluster, member);
        bytes32 id = IDstackFacet(cluster).dstack_register(p, member, k.xPubKey, k.wgPubKey, k.edPubKey);
        assertEq(id, LibBinding.memberId(cluster, member, LibBinding.DSTACK_ATTESTOR_ID));
        assertEq(IClusterMember(member).owner(), vm.addr(k.ownerKey));
        assertEq(IAttestFacet(cluster).memberOf(member).wgPubKey, wg);
    }

    function test_register_gas() public {
        uint256 g = gasleft();
        _register(proof);
        uint256 used = g - gasleft();
        console2.log("dstack_register gas", used);
        assertLt(used, 400_000, "registration stays cheap for sponsors");
    }

    // ------------------------------------------------------------------ step 1: member provenance

    function test_revert_notOurMember_randomContract() public {
        TestAppMember app = new TestAppMember(cluster); // not allowlisted, not from the factory
        DstackProof memory p = buildProof(cluster, address(app), keys);
        vm.expectRevert(IDstackFacet.NotOurMember.selector);
        IDstackFacet(cluster).dstack_register(p, address(app), keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    function test_revert_notOurMember_eoa() public {
        address eoa = makeAddr("eoa");
        DstackProof memory p = buildProof(cluster, eoa, keys);
        vm.expectRevert(IDstackFacet.NotOurMember.selector);
        IDstackFacet(cluster).dstack_register(p, eoa, keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    function test_revert_notOurMember_factoryMemberOfOtherCluster() public {
        address other = _deployCluster(defaultClusterArgs(), bytes32(uint256(2)));
        // member is a genuine factory member, but bound to `cluster`, not `other`.
        DstackProof memory p = buildProof(other, member, keys);
        vm.expectRevert(IDstackFacet.NotOurMember.selector);
        IDstackFacet(other).dstack_register(p, member, keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    function test_revert_notOurMember_appIdRemoved() public {
        TestAppMember app = new TestAppMember(cluster);
        vm.startPrank(clusterOwner);
        IDstackFacet(cluster).addAllowedAppId(address(app));
        IDstackFacet(cluster).removeAllowedAppId(address(app));
        vm.stopPrank();
        DstackProof memory p = buildProof(cluster, address(app), keys);
        vm.expectRevert(IDstackFacet.NotOurMember.selector);
        IDstackFacet(cluster).dstack_register(p, address(app), keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    function test_revert_notOurMember_noFactoryConfigured() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        args.memberFactory = address(0);
        address c = _deployCluster(args, bytes32(uint256(3)));
        address m = newMember(c, "x");
        DstackProof memory p = buildProof(c, m, keys);
        vm.expectRevert(IDstackFacet.NotOurMember.selector);
        IDstackFacet(c).dstack_register(p, m, keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    // ------------------------------------------------------------------ step 2: KMS link

    function test_revert_unknownKmsRoot() public {
        DstackProof memory p = proof;
        p.kmsSignature = DstackChain.kmsSignature(0xBAD, member, p.appPubkey);
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_kmsRootRemoved() public {
        vm.prank(clusterOwner);
        IDstackFacet(cluster).removeAllowedKmsRoot(kmsRoot);
        _expectRegisterRevert(proof, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_proofForAnotherMemberContract() public {
        // A complete valid proof for m2, submitted for `member`: the KMS issued that app key for m2.
        address m2 = newMember(cluster, "m2");
        DstackProof memory p = buildProof(cluster, m2, keys);
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_kmsSignedOtherAppKey() public {
        DstackProof memory p = proof;
        p.kmsSignature = DstackChain.kmsSignature(kmsRootKey, member, DstackChain.compressedPubkey(0xA99));
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    // ------------------------------------------------------------------ step 3: app link

    function test_revert_appSignatureOverAnotherKey() public {
        DstackProof memory p = proof;
        p.appSignature =
            DstackChain.appSignature(keys.appKey, p.purpose, DstackChain.compressedPubkey(0x0771));
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_appSignatureByAnotherAppKey() public {
        DstackProof memory p = proof;
        p.appSignature = DstackChain.appSignature(0xA99, p.purpose, p.ownerPubkey);
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_ownerKeySwapped() public {
        // Attacker keeps the real chain but swaps in their own owner key (and binds with it).
        uint256 attackerKey = 0xA77AC;
        DstackProof memory p = proof;
        p.ownerPubkey = DstackChain.compressedPubkey(attackerKey);
        p.bindingSignature = DstackChain.bindingSignature(
            attackerKey, cluster, member, keys.xPubKey, keys.wgPubKey, keys.edPubKey
        );
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_purposeChanged() public {
        DstackProof memory p = proof;
        p.purpose = "other";
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    // ------------------------------------------------------------------ step 4: binding

    function test_revert_otherXKey() public {
        vm.expectRevert(IDstackFacet.BindingMismatch.selector);
        IDstackFacet(cluster)
            .dstack_register(proof, member, bytes32(uint256(1)), keys.wgPubKey, keys.edPubKey);
    }

    function test_revert_otherWgKey() public {
        vm.expectRevert(IDstackFacet.BindingMismatch.selector);
        IDstackFacet(cluster).dstack_register(proof, member, keys.xPubKey, bytes32(uint256(1)), keys.edPubKey);
    }

    function test_revert_otherEdKey() public {
        vm.expectRevert(IDstackFacet.BindingMismatch.selector);
        IDstackFacet(cluster).dstack_register(proof, member, keys.xPubKey, keys.wgPubKey, bytes32(uint256(1)));
    }

    function test_revert_bindingByOtherKey() public {
        DstackProof memory p = proof;
        p.bindingSignature = DstackChain.bindingSignature(
            keys.appKey, cluster, member, keys.xPubKey, keys.wgPubKey, keys.edPubKey
        );
        _expectRegisterRevert(p, IDstackFacet.BindingMismatch.selector);
    }

    function test_revert_bindingWithoutEip191() public {
        DstackProof memory p = proof;
        p.bindingSignature = DstackChain.sign65(
            keys.ownerKey, DstackChain.bindHash(cluster, member, keys.xPubKey, keys.wgPubKey, keys.edPubKey)
        );
        _expectRegisterRevert(p, IDstackFacet.BindingMismatch.selector);
    }

    function test_revert_replayProofOnAnotherCluster_allowlistedApp() public {
        // The same app id is allowlisted in A and B, both trust the same KMS root. A proof that
        // registered it in A must not register it in B: the binding names cluster A.
        address clusterB = _deployCluster(defaultClusterArgs(), bytes32(uint256(7)));
        TestAppMember app = new TestAppMember(cluster);
        vm.prank(clusterOwner);
        IDstackFacet(cluster).addAllowedAppId(address(app));
        vm.prank(clusterOwner);
        IDstackFacet(clusterB).addAllowedAppId(address(app));

        DstackProof memory p = buildProof(cluster, address(app), keys);
        IDstackFacet(cluster).dstack_register(p, address(app), keys.xPubKey, keys.wgPubKey, keys.edPubKey);

        vm.expectRevert(IDstackFacet.BindingMismatch.selector);
        IDstackFacet(clusterB).dstack_register(p, address(app), keys.xPubKey, keys.wgPubKey, keys.edPubKey);
        assertEq(IAttestFacet(clusterB).memberCount(), 0);
    }

    function test_revert_replayProofOnAnotherCluster_factoryMember() public {
        address clusterB = _deployCluster(defaultClusterArgs(), bytes32(uint256(8)));
        _register(proof);
        vm.expectRevert(IDstackFacet.NotOurMember.selector);
        IDstackFacet(clusterB).dstack_register(proof, member, keys.xPubKey, keys.wgPubKey, keys.edPubKey);
    }

    // ------------------------------------------------------------------ step 5 / re-registration

    function test_revert_alreadyRegistered_sameProof() public {
        _register(proof);
        vm.expectRevert(IAttestFacet.AlreadyRegistered.selector);
        _register(proof);
    }

    function test_revert_alreadyRegistered_newKeys() public {
        _register(proof);
        // Even a fully valid chain with fresh keys cannot overwrite an existing record (§4 lost state).
        DstackChain.MemberKeys memory k2 = memberKeys("m1-reborn");
        DstackProof memory p2 = buildProof(cluster, member, k2);
        vm.expectRevert(IAttestFacet.AlreadyRegistered.selector);
        IDstackFacet(cluster).dstack_register(p2, member, k2.xPubKey, k2.wgPubKey, k2.edPubKey);
        assertEq(IAttestFacet(cluster).memberOf(member).xPubKey, keys.xPubKey);
    }

    // ------------------------------------------------------------------ signature encodings

    /// @dev (r, N - s, v ^ 1) recovers the same signer through ecrecover; OpenZeppelin must reject it.
    function _highS(bytes memory sig) internal pure returns (bytes memory) {
        (bytes32 r, bytes32 s, uint8 v) = _split(sig);
        return abi.encodePacked(r, bytes32(DstackChain.N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
    }

    function _split(bytes memory sig) internal pure returns (bytes32 r, bytes32 s, uint8 v) {
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
    }

    function test_highS_isStillEcrecoverValid() public view {
        // Sanity: the malleated signature really is valid for raw ecrecover, so rejection is OZ's doing.
        (bytes32 r, bytes32 s, uint8 v) = _split(_highS(proof.kmsSignature));
        assertEq(ecrecover(DstackChain.kmsDigest(member, proof.appPubkey), v, r, s), kmsRoot);
    }

    function test_revert_highS_kms() public {
        DstackProof memory p = proof;
        p.kmsSignature = _highS(p.kmsSignature);
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_highS_app() public {
        DstackProof memory p = proof;
        p.appSignature = _highS(p.appSignature);
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_highS_binding() public {
        DstackProof memory p = proof;
        p.bindingSignature = _highS(p.bindingSignature);
        _expectRegisterRevert(p, IDstackFacet.BindingMismatch.selector);
    }

    function test_revert_vNotNormalised() public {
        // dstack emits v in {0,1}; it must be normalised to 27/28 before it goes on chain (§4.1).
        DstackProof memory p = proof;
        (bytes32 r, bytes32 s, uint8 v) = _split(p.kmsSignature);
        p.kmsSignature = abi.encodePacked(r, s, v - 27);
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
    }

    function test_revert_signatureLength() public {
        DstackProof memory p = proof;
        (bytes32 r, bytes32 s,) = _split(p.appSignature);
        p.appSignature = abi.encodePacked(r, s); // 64 bytes (EIP-2098 compact is not accepted)
        _expectRegisterRevert(p, IDstackFacet.InvalidSigChain.selector);
        p = proof;
        p.bindingSignature = "";
        _expectRegisterRevert(p, IDstackFacet.BindingMismatch.selector);
    }

    // ------------------------------------------------------------------ public key encodings

    function test_revert_ownerPubkeyLength() public {
        DstackProof memory p = proof;
        p.ownerPubkey = _slice(proof.ownerPubkey, 32);
        _expectRegisterRevert(p, IDstackFacet.InvalidPubKeyLength.selector);
        p.ownerPubkey = abi.encodePacked(proof.ownerPubkey, bytes1(0));
        _expectRegisterRevert(p, IDstackFacet.InvalidPubKeyLength.selector);
        p.ownerPubkey = "";
        _expectRegisterRevert(p, IDstackFacet.InvalidPubKeyLength.selector);
    }

    function test_revert_appPubkeyUncompressed() public {
        Vm.Wallet memory w = vm.createWallet(keys.appKey);
        DstackProof memory p = proof;
        p.appPubkey = abi.encodePacked(bytes1(0x04), w.publicKeyX, w.publicKeyY);
        _expectRegisterRevert(p, IDstackFacet.InvalidPubKeyLength.selector);
    }

    function test_revert_pubkeyPrefix() public {
        DstackProof memory p = proof;
        bytes memory bad = bytes.concat(proof.ownerPubkey);
        bad[0] = 0x04;
        p.ownerPubkey = bad;
        _expectRegisterRevert(p, IDstackFacet.InvalidPubKeyLength.selector);
        bad[0] = 0x00;
        _expectRegisterRevert(p, IDstackFacet.InvalidPubKeyLength.selector);
    }

    function test_revert_pubkeyNotOnCurve() public {
        DstackProof memory p = proof;
        p.appPubkey = abi.encodePacked(bytes1(0x02), bytes32(uint256(5))); // 5^3 + 7 is no square mod p
        _expectRegisterRevert(p, IDstackFacet.PointNotOnCurve.selector);
        p = proof;
        p.ownerPubkey = abi.encodePacked(bytes1(0x03), bytes32(uint256(0)));
        _expectRegisterRevert(p, IDstackFacet.PointNotOnCurve.selector);
    }

    function test_revert_pubkeyXNotInField() public {
        DstackProof memory p = proof;
        // x = p + 1 ≡ 1 (mod p) and 1 is on the curve: only the range check can catch it.
        p.ownerPubkey = abi.encodePacked(bytes1(0x02), bytes32(P + 1));
        _expectRegisterRevert(p, IDstackFacet.PointNotOnCurve.selector);
    }

    function _slice(bytes memory b, uint256 len) internal pure returns (bytes memory out) {
        out = new bytes(len);
        for (uint256 i; i < len; ++i) {
            out[i] = b[i];
        }
    }
}
