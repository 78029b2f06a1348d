// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {ERC1967Utils} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Utils.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {DstackChain} from "../utils/DstackChain.sol";
import {EntryPointDeployer} from "./EntryPointDeployer.sol";
import {StockDstackApp} from "./StockDstackApp.sol";
import {ClusterMember} from "../../src/member/ClusterMember.sol";
import {SponsorPaymaster} from "../../src/paymaster/SponsorPaymaster.sol";
import {AppBootInfo, DstackProof} from "../../src/interfaces/ClusterTypes.sol";
import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IAttestor} from "../../src/interfaces/IAttestor.sol";
import {IDiamondCut} from "../../src/diamond/IDiamondCut.sol";
import {VoucherAttestorFacet} from "../utils/VoucherAttestorFacet.sol";
import {IMessageFacet} from "../../src/interfaces/IMessageFacet.sol";

/// @notice ClusterMember against a real cluster (diamond + facets from the cluster factory) and a
/// real dstack signature chain, driven through the real EntryPoint v0.7 with the SponsorPaymaster
/// paying: the node never holds ETH.
contract ClusterMemberClusterTest is ClusterFixture, EntryPointDeployer {
    SponsorPaymaster internal paymaster;
    uint256 internal sponsorPk;
    uint256 internal constant PM_DEPOSIT = 10 ether;

    function _entryPointAddress() internal override returns (address) {
        return address(_deployEntryPoint());
    }

    function setUp() public override {
        super.setUp();
        address sponsor;
        (sponsor, sponsorPk) = makeAddrAndKey("sponsor service");
        paymaster = new SponsorPaymaster(entryPoint, address(this), sponsor);
        paymaster.deposit{value: PM_DEPOSIT}();
        vm.warp(1_700_000_000);
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------

    function _registerCallData(address member, DstackProof memory proof, DstackChain.MemberKeys memory k)
        internal
        view
        returns (bytes memory)
    {
        return _executeCall(
            cluster,
            0,
            abi.encodeCall(IDstackFacet.dstack_register, (proof, member, k.xPubKey, k.wgPubKey, k.edPubKey))
        );
    }

    /// @dev A sponsored op from `sender`, signed by `signerKey`, the way the agent builds it (§10):
    /// sponsorship first, then the account signature over the hash that commits to it.
    function _sponsoredOp(address sender, bytes memory callData, uint256 signerKey)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        op = _userOp(sender, callData);
        _sponsor(op, paymaster, sponsorPk, uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _signUserOp(op, signerKey);
    }

    function _bootstrap(address member, DstackChain.MemberKeys memory k) internal returns (uint256 gasUsed) {
        PackedUserOperation memory op =
            _sponsoredOp(member, _registerCallData(member, buildProof(cluster, member, k), k), k.ownerKey);
        gasUsed = _handleOpMeasured(op);
    }

    function _expectAA23InvalidBootstrap() internal {
        _expectFailedOpWithRevert(
            "AA23 reverted", abi.encodeWithSelector(IClusterMember.InvalidBootstrapCall.selector)
        );
    }

    // ---------------------------------------------------------------------------------------------
    // Bootstrap: a zero-ETH member registers itself
    // ---------------------------------------------------------------------------------------------

    function test_bootstrap_sponsoredRegistrationThenOwnerOps() public {
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        address ownerKey = vm.addr(k.ownerKey);
        assertEq(member.balance, 0);
        assertEq(IClusterMember(member).owner(), address(0));

        bytes32 expectedId =
            keccak256(abi.encode(cluster, member, keccak256("attestmesh.attestor.dstack.v1")));
        vm.expectEmit(true, true, true, true, cluster);
        emit IAttestFacet.MemberRegistered(
            expectedId, member, keccak256("attestmesh.attestor.dstack.v1"), k.xPubKey, k.wgPubKey, k.edPubKey
        );
        vm.expectEmit(true, false, false, true, cluster);
        emit IDstackFacet.DstackMemberRegistered(expectedId, ownerKey);
        uint256 gasUsed = _bootstrap(member, k);
        emit log_named_uint("gas: sponsored bootstrap handleOps (dstack_register)", gasUsed);

        IAttestFacet attest = IAttestFacet(cluster);
        assertTrue(attest.isClusterMember(member));
        assertEq(attest.memberIdOf(member), expectedId);
        assertEq(attest.memberOf(member).xPubKey, k.xPubKey);
        assertEq(IClusterMember(member).owner(), ownerKey, "the attested owner key now controls the account");
        assertEq(member.balance, 0, "the node holds no ETH");
        assertEq(entryPoint.balanceOf(member), 0);
        uint256 paid = PM_DEPOSIT - paymaster.getDeposit();
        assertGt(paid, 0);
        assertEq(beneficiary.balance, paid, "the paymaster paid the bundler");

        // A post-registration op signed by the owner key: the originator commits the CSK.
        bytes32 commitment = keccak256("csk");
        PackedUserOperation memory op = _sponsoredOp(
            member,
            _executeCall(cluster, 0, abi.encodeCall(IAttestFacet.setCskCommitment, (commitment))),
            k.ownerKey
        );
        vm.expectEmit(false, false, false, true, cluster);
        emit IAttestFacet.CskCommitmentSet(commitment);
        _handleOp(op);
        assertEq(attest.cskCommitment(), commitment);
        assertEq(member.balance, 0);
    }

    function test_twoNodesRegisterAndMessage() public {
        address a = newMember(cluster, "node-a");
        address b = newMember(cluster, "node-b");
        DstackChain.MemberKeys memory ka = memberKeys("node-a");
        DstackChain.MemberKeys memory kb = memberKeys("node-b");
        _bootstrap(a, ka);
        _bootstrap(b, kb);
        assertEq(IAttestFacet(cluster).memberCount(), 2);

        bytes32 idA = IAttestFacet(cluster).memberIdOf(a);
        bytes32 idB = IAttestFacet(cluster).memberIdOf(b);
        bytes memory sealedBox = hex"5ea1ed0b0c";
        PackedUserOperation memory op = _sponsoredOp(
            a,
            _executeCall(cluster, 0, abi.encodeCall(IMessageFacet.send, (idB, bytes32("env-1"), sealedBox))),
            ka.ownerKey
        );
        vm.expectEmit(true, true, true, true, cluster);
        emit IMessageFacet.MessageSent(idA, idB, bytes32("env-1"), sealedBox);
        _handleOp(op);
        assertTrue(IMessageFacet(cluster).envelopeUsed(idB, bytes32("env-1")));

        // B's key cannot drive A's account.
        op = _sponsoredOp(
            a,
            _executeCall(cluster, 0, abi.encodeCall(IMessageFacet.send, (idB, bytes32("env-2"), sealedBox))),
            kb.ownerKey
        );
        _expectFailedOp("AA24 signature error");
        _handleOp(op);
    }

    function test_bootstrap_counterfactualMemberDeployedAndRegisteredInOneOp() public {
        bytes32 salt = "counterfactual";
        address member = memberFactory.predictMemberAddress(cluster, salt);
        assertEq(member.code.length, 0);
        DstackChain.MemberKeys memory k = memberKeys("node-cf");

        PackedUserOperation memory op =
            _userOp(member, _registerCallData(member, buildProof(cluster, member, k), k));
        op.initCode = abi.encodePacked(
            address(memberFactory), abi.encodeCall(memberFactory.deployMember, (cluster, salt))
        );
        _sponsor(op, paymaster, sponsorPk, uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _signUserOp(op, k.ownerKey);
        _handleOp(op);

        assertTrue(memberFactory.isOurMember(member));
        assertTrue(IAttestFacet(cluster).isClusterMember(member));
        assertEq(IClusterMember(member).owner(), vm.addr(k.ownerKey));
        assertEq(member.balance, 0);
    }

    // ---------------------------------------------------------------------------------------------
    // Bootstrap rejections with real proofs
    // ---------------------------------------------------------------------------------------------

    function test_bootstrap_rejectsUserOpSignerOtherThanBindingSigner() public {
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        DstackChain.MemberKeys memory thief = memberKeys("thief");
        PackedUserOperation memory op = _sponsoredOp(
            member, _registerCallData(member, buildProof(cluster, member, k), k), thief.ownerKey
        );
        _expectAA23InvalidBootstrap();
        _handleOp(op);
        assertFalse(IAttestFacet(cluster).isClusterMember(member));
    }

    function test_bootstrap_rejectsRegisteringAnotherMember() public {
        address a = newMember(cluster, "node-a");
        address b = newMember(cluster, "node-b");
        DstackChain.MemberKeys memory kb = memberKeys("node-b");
        // A fully valid proof for B, submitted through A's account by B's own key.
        PackedUserOperation memory op =
            _sponsoredOp(a, _registerCallData(b, buildProof(cluster, b, kb), kb), kb.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);
    }

    function test_bootstrap_rejectsReplayOfAnotherNodesProof() public {
        address a = newMember(cluster, "node-a");
        address b = newMember(cluster, "node-b");
        DstackChain.MemberKeys memory kb = memberKeys("node-b");
        // B's proof, with A as the member argument, signed by B's key: the binding covers B.
        bytes memory cd = _executeCall(
            cluster,
            0,
            abi.encodeCall(
                IDstackFacet.dstack_register,
                (buildProof(cluster, b, kb), a, kb.xPubKey, kb.wgPubKey, kb.edPubKey)
            )
        );
        PackedUserOperation memory op = _sponsoredOp(a, cd, kb.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);
    }

    function test_bootstrap_rejectsOtherCluster() public {
        address other = _deployCluster(defaultClusterArgs(), bytes32(uint256(7)));
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        // A proof that is valid for `other`, sent to `other`: the member is bound to `cluster`.
        bytes memory cd = _executeCall(
            other,
            0,
            abi.encodeCall(
                IDstackFacet.dstack_register,
                (buildProof(other, member, k), member, k.xPubKey, k.wgPubKey, k.edPubKey)
            )
        );
        PackedUserOperation memory op = _sponsoredOp(member, cd, k.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);
    }

    // ---------------------------------------------------------------------------------------------
    // Bootstrap rule: the member asks the cluster's attestor once, at bind time (DESIGN §3.6, §3.7)
    // ---------------------------------------------------------------------------------------------

    function test_bind_readsTheClustersBootstrapRule() public {
        address member = newMember(cluster, "node-a");
        (bytes4 sel, uint8 field) = IClusterMember(member).bootstrapRule();
        assertEq(sel, IDstackFacet.dstack_register.selector);
        assertEq(field, 5, "DstackProof.bindingSignature");
        (bytes4 clusterSel, uint8 clusterField) = IAttestor(cluster).bootstrapRule();
        assertEq(clusterSel, sel);
        assertEq(clusterField, field);
    }

    /// @dev A cluster whose attestor is another method (the test voucher attestor, cut in instead
    /// of DstackFacet's registration): the same member contract bootstraps with that method's
    /// registration function and rejects dstack_register, with no new member code.
    function _voucherCluster() internal returns (address vc, uint256 voucherPk) {
        address voucherKey;
        (voucherKey, voucherPk) = makeAddrAndKey("voucher authority");
        vc = _deployCluster(defaultClusterArgs(), bytes32(uint256(0xc0ffee)));
        VoucherAttestorFacet voucher = new VoucherAttestorFacet(voucherKey);
        IDiamondCut.FacetCut[] memory cuts = new IDiamondCut.FacetCut[](2);
        bytes4[] memory removed = new bytes4[](2);
        removed[0] = IDstackFacet.dstack_register.selector;
        removed[1] = IAttestor.bootstrapRule.selector;
        cuts[0] = IDiamondCut.FacetCut(address(0), IDiamondCut.FacetCutAction.Remove, removed);
        bytes4[] memory added = new bytes4[](2);
        added[0] = VoucherAttestorFacet.voucher_register.selector;
        added[1] = IAttestor.bootstrapRule.selector;
        cuts[1] = IDiamondCut.FacetCut(address(voucher), IDiamondCut.FacetCutAction.Add, added);
        vm.prank(clusterOwner);
        IDiamondCut(vc).diamondCut(cuts, address(0), "");
    }

    function _voucherRegisterCallData(
        address vc,
        address member,
        uint256 voucherPk,
        DstackChain.MemberKeys memory k
    ) internal view returns (bytes memory) {
        address owner_ = vm.addr(k.ownerKey);
        VoucherAttestorFacet.VoucherProof memory proof = VoucherAttestorFacet.VoucherProof({
            voucher: _personalSign(voucherPk, keccak256(abi.encode(vc, member, owner_))),
            bindingSignature: DstackChain.bindingSignature(
                k.ownerKey, vc, member, k.xPubKey, k.wgPubKey, k.edPubKey
            ),
            owner: owner_
        });
        return _executeCall(
            vc,
            0,
            abi.encodeCall(
                VoucherAttestorFacet.voucher_register, (proof, member, k.xPubKey, k.wgPubKey, k.edPubKey)
            )
        );
    }

    function test_bootstrap_otherAttestationMethod_acceptsItsSelectorRejectsDstackRegister() public {
        (address vc, uint256 voucherPk) = _voucherCluster();
        address member = newMember(vc, "voucher-node");
        DstackChain.MemberKeys memory k = memberKeys("voucher-node");
        (bytes4 sel, uint8 field) = IClusterMember(member).bootstrapRule();
        assertEq(sel, VoucherAttestorFacet.voucher_register.selector);
        assertEq(field, 1);

        // dstack_register (a well-formed dstack bootstrap for this member) is not this cluster's rule.
        bytes memory dstackCd = _executeCall(
            vc,
            0,
            abi.encodeCall(
                IDstackFacet.dstack_register,
                (buildProof(vc, member, k), member, k.xPubKey, k.wgPubKey, k.edPubKey)
            )
        );
        PackedUserOperation memory op = _sponsoredOp(member, dstackCd, k.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);

        // A voucher registration signed by someone other than the binding signer is refused too.
        DstackChain.MemberKeys memory thief = memberKeys("thief");
        op = _sponsoredOp(member, _voucherRegisterCallData(vc, member, voucherPk, k), thief.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);

        // The voucher method's own bootstrap op validates and registers the member.
        op = _sponsoredOp(member, _voucherRegisterCallData(vc, member, voucherPk, k), k.ownerKey);
        _handleOp(op);
        assertTrue(IAttestFacet(vc).isClusterMember(member));
        assertEq(
            IAttestFacet(vc).memberOf(member).attestorId, keccak256("attestmesh.attestor.voucher.test.v1")
        );
        assertEq(IClusterMember(member).owner(), vm.addr(k.ownerKey));
    }

    /// @dev And the other way round: a member of a dstack cluster refuses the voucher shape.
    function test_bootstrap_dstackCluster_rejectsOtherMethodsSelector() public {
        (, uint256 voucherPk) = _voucherCluster();
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        PackedUserOperation memory op =
            _sponsoredOp(member, _voucherRegisterCallData(cluster, member, voucherPk, k), k.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);
    }

    /// @dev A "cluster" that names no bootstrap rule (no code, or no IAttestor) binds a member that
    /// can never bootstrap: fail closed.
    function test_bind_clusterWithoutRule_neverBootstraps() public {
        address nowhere = makeAddr("not a cluster");
        address member = memberFactory.deployMember(nowhere, "node-a");
        (bytes4 sel, uint8 field) = IClusterMember(member).bootstrapRule();
        assertEq(sel, bytes4(0));
        assertEq(field, 0);
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        bytes memory cd = _executeCall(
            nowhere,
            0,
            abi.encodeCall(
                IDstackFacet.dstack_register,
                (buildProof(nowhere, member, k), member, k.xPubKey, k.wgPubKey, k.edPubKey)
            )
        );
        PackedUserOperation memory op = _sponsoredOp(member, cd, k.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);
    }

    // ---------------------------------------------------------------------------------------------
    // Bootstrap: the bytes validation parses are the bytes execution decodes
    // ---------------------------------------------------------------------------------------------

    /// @dev ABI tail of a dynamic `bytes`/`string`: length word, data, zero padding.
    function _tail(bytes memory data) internal pure returns (bytes memory) {
        return bytes.concat(bytes32(data.length), data, new bytes((32 - (data.length % 32)) % 32));
    }

    /// @dev `execute(cluster, 0, dstack_register(proof, member, x, wg, ed))`, ABI-valid but far from
    /// canonical: junk gaps after every head, the proof's first five tails in reverse order, and an
    /// unreferenced `decoyBinding` tail right before the tail the proof's sixth head word points to
    /// (`referencedBinding`). A decoder that follows offsets finds only `referencedBinding`.
    function _nonCanonicalBootstrap(
        DstackProof memory p,
        address member,
        DstackChain.MemberKeys memory k,
        bytes memory referencedBinding,
        bytes memory decoyBinding
    ) internal view returns (bytes memory) {
        bytes32 junk = bytes32(type(uint256).max);
        // dstack_register head: proof offset past two junk words, then the static arguments.
        bytes memory inner = bytes.concat(
            IDstackFacet.dstack_register.selector,
            abi.encode(uint256(5 * 32 + 64), member, k.xPubKey, k.wgPubKey, k.edPubKey),
            junk,
            junk,
            _nonCanonicalProof(p, referencedBinding, decoyBinding)
        );
        // execute head: the `bytes data` offset skips one junk word.
        return bytes.concat(
            IClusterMember.execute.selector,
            abi.encode(cluster, uint256(0), uint256(4 * 32)),
            junk,
            _tail(inner)
        );
    }

    /// @dev The DstackProof tuple: six head offsets, a junk word, the first five tails in reverse
    /// order, the decoy tail, then the referenced binding tail.
    function _nonCanonicalProof(
        DstackProof memory p,
        bytes memory referencedBinding,
        bytes memory decoyBinding
    ) internal pure returns (bytes memory) {
        bytes[5] memory firstFive = [
            p.ownerPubkey, p.appPubkey, p.appSignature, p.kmsSignature, bytes(p.purpose)
        ];
        uint256[6] memory off;
        uint256 pos = 6 * 32 + 32; // proof head, then one junk word
        bytes memory tails;
        for (uint256 i = 5; i > 0; --i) {
            off[i - 1] = pos;
            bytes memory t = _tail(firstFive[i - 1]);
            tails = bytes.concat(tails, t);
            pos += t.length;
        }
        bytes memory decoy = _tail(decoyBinding);
        off[5] = pos + decoy.length;
        return bytes.concat(
            abi.encodePacked(off[0], off[1], off[2], off[3], off[4], off[5]),
            bytes32(type(uint256).max),
            tails,
            decoy,
            _tail(referencedBinding)
        );
    }

    function test_bootstrap_nonCanonicalEncoding_validatesAndRegistersTheSameKeys() public {
        address member = newMember(cluster, "node-nc");
        DstackChain.MemberKeys memory k = memberKeys("node-nc");
        DstackChain.MemberKeys memory thief = memberKeys("thief");
        DstackProof memory proof = buildProof(cluster, member, k);
        bytes memory thiefBinding =
            DstackChain.bindingSignature(thief.ownerKey, cluster, member, k.xPubKey, k.wgPubKey, k.edPubKey);
        bytes memory cd = _nonCanonicalBootstrap(proof, member, k, proof.bindingSignature, thiefBinding);
        _handleOp(_sponsoredOp(member, cd, k.ownerKey));
        assertTrue(IAttestFacet(cluster).isClusterMember(member));
        assertEq(IClusterMember(member).owner(), vm.addr(k.ownerKey));
        assertEq(IAttestFacet(cluster).memberOf(member).xPubKey, k.xPubKey);
        assertEq(IAttestFacet(cluster).memberOf(member).edPubKey, k.edPubKey);
    }

    /// @dev The unreferenced decoy is signed by the userOp signer; the referenced binding is not.
    /// Validation must follow the offsets (as execution will) and refuse.
    function test_bootstrap_nonCanonicalEncoding_unreferencedDecoyIsIgnored() public {
        address member = newMember(cluster, "node-nc");
        DstackChain.MemberKeys memory k = memberKeys("node-nc");
        DstackChain.MemberKeys memory thief = memberKeys("thief");
        DstackProof memory proof = buildProof(cluster, member, k);
        bytes memory thiefBinding =
            DstackChain.bindingSignature(thief.ownerKey, cluster, member, k.xPubKey, k.wgPubKey, k.edPubKey);
        bytes memory cd = _nonCanonicalBootstrap(proof, member, k, proof.bindingSignature, thiefBinding);
        PackedUserOperation memory op = _sponsoredOp(member, cd, thief.ownerKey);
        _expectAA23InvalidBootstrap();
        _handleOp(op);
        assertFalse(IAttestFacet(cluster).isClusterMember(member));
    }

    /// @dev Mirror image: the thief's binding is the referenced one and signs the op, so the account
    /// accepts the shape — and the cluster, decoding the very same bytes, finds that binding signer
    /// is not the attested owner key. Nothing is admitted, no owner installed.
    function test_bootstrap_nonCanonicalEncoding_referencedThiefBindingFailsInExecution() public {
        address member = newMember(cluster, "node-nc");
        DstackChain.MemberKeys memory k = memberKeys("node-nc");
        DstackChain.MemberKeys memory thief = memberKeys("thief");
        DstackProof memory proof = buildProof(cluster, member, k);
        bytes memory thiefBinding =
            DstackChain.bindingSignature(thief.ownerKey, cluster, member, k.xPubKey, k.wgPubKey, k.edPubKey);
        bytes memory cd = _nonCanonicalBootstrap(proof, member, k, thiefBinding, proof.bindingSignature);
        PackedUserOperation memory op = _sponsoredOp(member, cd, thief.ownerKey);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.expectEmit(true, true, false, true, address(entryPoint));
        emit IEntryPoint.UserOperationRevertReason(
            opHash, member, 0, abi.encodeWithSelector(IDstackFacet.BindingMismatch.selector)
        );
        _handleOp(op);
        assertFalse(IAttestFacet(cluster).isClusterMember(member));
        assertEq(IClusterMember(member).owner(), address(0));
    }

    /// @dev Honest limit: the account checks only the shape and the binding signer — the KMS chain
    /// is the cluster's job. A proof from an untrusted KMS passes validation, the registration call
    /// reverts in execution (the paymaster pays for it), and nothing is admitted.
    function test_bootstrap_untrustedKmsFailsInExecution() public {
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        DstackProof memory proof =
            DstackChain.buildProof(DstackChain.toPrivateKey(keccak256("rogue kms")), k, cluster, member);
        PackedUserOperation memory op = _sponsoredOp(member, _registerCallData(member, proof, k), k.ownerKey);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.expectEmit(true, true, false, true, address(entryPoint));
        emit IEntryPoint.UserOperationRevertReason(
            opHash, member, 0, abi.encodeWithSelector(IDstackFacet.InvalidSigChain.selector)
        );
        _handleOp(op);
        assertFalse(IAttestFacet(cluster).isClusterMember(member));
        assertEq(IClusterMember(member).owner(), address(0));
        assertLt(paymaster.getDeposit(), PM_DEPOSIT);
    }

    function test_registered_badSignature_AA24_andBootstrapShapeNoLongerSpecial() public {
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        _bootstrap(member, k);

        PackedUserOperation memory op = _sponsoredOp(
            member,
            _executeCall(cluster, 0, abi.encodeCall(IAttestFacet.setCskCommitment, (bytes32("x")))),
            memberKeys("intruder").ownerKey
        );
        _expectFailedOp("AA24 signature error");
        _handleOp(op);
        assertEq(IAttestFacet(cluster).cskCommitment(), bytes32(0));

        // Re-submitting the registration is an ordinary owner op now, and the cluster refuses it.
        op = _sponsoredOp(member, _registerCallData(member, buildProof(cluster, member, k), k), k.ownerKey);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.expectEmit(true, true, false, true, address(entryPoint));
        emit IEntryPoint.UserOperationRevertReason(
            opHash, member, 1, abi.encodeWithSelector(IAttestFacet.AlreadyRegistered.selector)
        );
        _handleOp(op);
    }

    // ---------------------------------------------------------------------------------------------
    // Boot gate forwarding
    // ---------------------------------------------------------------------------------------------

    function _assertSameAnswer(address member, AppBootInfo memory info, bool allowed, string memory reason)
        internal
        view
    {
        (bool ok, string memory why) = IClusterMember(member).isAppAllowed(info);
        (bool okC, string memory whyC) = IDstackFacet(cluster).isAppAllowed(info);
        assertEq(ok, okC);
        assertEq(why, whyC);
        assertEq(ok, allowed);
        assertEq(why, reason);
    }

    function test_isAppAllowed_forwardsToCluster() public {
        address member = newMember(cluster, "node-a");
        AppBootInfo memory info = allowedBootInfo(member);
        _assertSameAnswer(member, info, true, "");

        info.composeHash = keccak256("unknown compose");
        _assertSameAnswer(member, info, false, "compose hash not allowed");

        info = allowedBootInfo(member);
        info.deviceId = keccak256("unknown device");
        _assertSameAnswer(member, info, false, "device not allowed");

        info = allowedBootInfo(member);
        info.tcbStatus = "OutOfDate";
        _assertSameAnswer(member, info, false, "tcb not up to date");

        // The KMS asks the app id; a member of another cluster is not admissible here.
        address stranger = newMember(_deployCluster(defaultClusterArgs(), bytes32(uint256(9))), "node-x");
        _assertSameAnswer(member, allowedBootInfo(stranger), false, "appId not allowlisted");

        // Policy changes show through at once.
        vm.prank(clusterOwner);
        IDstackFacet(cluster).removeComposeHash(COMPOSE_HASH);
        _assertSameAnswer(member, allowedBootInfo(member), false, "compose hash not allowed");
    }

    // ---------------------------------------------------------------------------------------------
    // Upgrades: the cluster owner only
    // ---------------------------------------------------------------------------------------------

    function _implOf(address proxy) internal view returns (address) {
        return address(uint160(uint256(vm.load(proxy, ERC1967Utils.IMPLEMENTATION_SLOT))));
    }

    function test_upgrade_onlyClusterOwner_stateSurvives() public {
        address member = newMember(cluster, "node-a");
        DstackChain.MemberKeys memory k = memberKeys("node-a");
        _bootstrap(member, k);
        ClusterMember v2 = new ClusterMember(address(entryPoint));

        vm.prank(vm.addr(k.ownerKey));
        vm.expectRevert(IClusterMember.OnlyClusterOwner.selector);
        ClusterMember(payable(member)).upgradeToAndCall(address(v2), "");

        vm.prank(makeAddr("stranger"));
        vm.expectRevert(IClusterMember.OnlyClusterOwner.selector);
        ClusterMember(payable(member)).upgradeToAndCall(address(v2), "");

        vm.prank(clusterOwner);
        ClusterMember(payable(member)).upgradeToAndCall(address(v2), "");
        assertEq(_implOf(member), address(v2));
        assertEq(IClusterMember(member).cluster(), cluster);
        assertEq(IClusterMember(member).owner(), vm.addr(k.ownerKey));

        // Still a working account after the upgrade.
        PackedUserOperation memory op = _sponsoredOp(
            member,
            _executeCall(cluster, 0, abi.encodeCall(IAttestFacet.setCskCommitment, (bytes32("c")))),
            k.ownerKey
        );
        _handleOp(op);
        assertEq(IAttestFacet(cluster).cskCommitment(), bytes32("c"));
    }

    function test_upgrade_followsClusterOwnershipTransfer() public {
        address member = newMember(cluster, "node-a");
        address newOwner = makeAddr("new cluster owner");
        ClusterMember v2 = new ClusterMember(address(entryPoint));

        vm.prank(clusterOwner);
        IAttestFacet(cluster).transferClusterOwnership(newOwner);
        vm.prank(newOwner);
        vm.expectRevert(IClusterMember.OnlyClusterOwner.selector);
        ClusterMember(payable(member)).upgradeToAndCall(address(v2), ""); // not accepted yet

        vm.prank(newOwner);
        IAttestFacet(cluster).acceptClusterOwnership();

        vm.prank(clusterOwner);
        vm.expectRevert(IClusterMember.OnlyClusterOwner.selector);
        ClusterMember(payable(member)).upgradeToAndCall(address(v2), "");

        vm.prank(newOwner);
        ClusterMember(payable(member)).upgradeToAndCall(address(v2), "");
        assertEq(_implOf(member), address(v2));
    }

    function test_upgrade_rejectsNonUupsImplementation() public {
        address member = newMember(cluster, "node-a");
        vm.prank(clusterOwner);
        vm.expectRevert(
            abi.encodeWithSelector(ERC1967Utils.ERC1967InvalidImplementation.selector, address(paymaster))
        );
        ClusterMember(payable(member)).upgradeToAndCall(address(paymaster), "");
    }

    // ---------------------------------------------------------------------------------------------
    // Path A end to end
    // ---------------------------------------------------------------------------------------------

    function test_pathA_stockAppBecomesMemberAndRegisters() public {
        address appOwner = makeAddr("operator");
        StockDstackApp stockImpl = new StockDstackApp();
        address app = address(
            new ERC1967Proxy(
                address(stockImpl), abi.encodeCall(StockDstackApp.initialize, (appOwner, COMPOSE_HASH))
            )
        );

        address memberImpl = memberFactory.implementation();
        vm.prank(appOwner);
        StockDstackApp(app)
            .upgradeToAndCall(memberImpl, abi.encodeCall(IClusterMember.reinitializeFromDstackApp, (cluster)));
        assertEq(IClusterMember(app).cluster(), cluster);

        // Not a factory member: not admissible until the cluster owner allowlists the app id.
        _assertSameAnswer(app, allowedBootInfo(app), false, "appId not allowlisted");
        DstackChain.MemberKeys memory k = memberKeys("path-a");
        PackedUserOperation memory op =
            _sponsoredOp(app, _registerCallData(app, buildProof(cluster, app, k), k), k.ownerKey);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.expectEmit(true, true, false, true, address(entryPoint));
        emit IEntryPoint.UserOperationRevertReason(
            opHash, app, 0, abi.encodeWithSelector(IDstackFacet.NotOurMember.selector)
        );
        _handleOp(op);
        assertFalse(IAttestFacet(cluster).isClusterMember(app));

        vm.prank(clusterOwner);
        IDstackFacet(cluster).addAllowedAppId(app);
        _assertSameAnswer(app, allowedBootInfo(app), true, "");
        _bootstrap(app, k);
        assertTrue(IAttestFacet(cluster).isClusterMember(app));
        assertEq(IClusterMember(app).owner(), vm.addr(k.ownerKey));
        assertEq(app.balance, 0);

        // From now on the cluster owner, not the former app owner, controls upgrades.
        ClusterMember v2 = new ClusterMember(address(entryPoint));
        vm.prank(appOwner);
        vm.expectRevert(IClusterMember.OnlyClusterOwner.selector);
        ClusterMember(payable(app)).upgradeToAndCall(address(v2), "");
        vm.prank(clusterOwner);
        ClusterMember(payable(app)).upgradeToAndCall(address(v2), "");
        assertEq(_implOf(app), address(v2));
    }
}
