// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {ERC1967Utils} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Utils.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {EntryPointDeployer} from "./EntryPointDeployer.sol";
import {StockDstackApp} from "./StockDstackApp.sol";
import {ClusterMember} from "../../src/member/ClusterMember.sol";
import {ClusterMemberFactory} from "../../src/member/ClusterMemberFactory.sol";
import {SponsorPaymaster} from "../../src/paymaster/SponsorPaymaster.sol";
import {IClusterMember, IClusterMemberFactory} from "../../src/interfaces/IClusterMember.sol";
import {IAttestor} from "../../src/interfaces/IAttestor.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {DstackProof} from "../../src/interfaces/ClusterTypes.sol";
import {LibBinding} from "../../src/libraries/LibBinding.sol";

/// @dev A call target: records calls, or reverts with exactly the bytes it is given.
contract ExecTarget {
    address public lastCaller;
    uint256 public lastValue;
    bytes32 public lastTag;

    function record(bytes32 tag) external payable {
        lastCaller = msg.sender;
        lastValue = msg.value;
        lastTag = tag;
    }

    function fail(bytes calldata data) external pure {
        assembly ("memory-safe") {
            calldatacopy(0, data.offset, data.length)
            revert(0, data.length)
        }
    }
}

/// @notice ClusterMember and its factory on their own: binding, the 4337 validation rules (the
/// bootstrap shape is checked without a cluster — validation never calls one), execute,
/// ownership, path A, storage. The end-to-end flows against a real cluster live in
/// ClusterMemberCluster.t.sol.
contract ClusterMemberTest is EntryPointDeployer {
    ClusterMemberFactory internal factory;
    ClusterMember internal member;
    SponsorPaymaster internal paymaster;
    ExecTarget internal target;

    address internal cluster = makeAddr("cluster");
    uint256 internal nodePk;
    address internal nodeKey;
    uint256 internal sponsorPk;

    bytes32 internal constant X = bytes32(uint256(0x1111));
    bytes32 internal constant WG = bytes32(uint256(0x2222));
    bytes32 internal constant ED = bytes32(uint256(0x3333));

    function setUp() public {
        _deployEntryPoint();
        // The stand-in cluster answers the one thing a member asks at bind time: dstack's rule.
        vm.etch(cluster, hex"00");
        vm.mockCall(
            cluster,
            abi.encodeCall(IAttestor.bootstrapRule, ()),
            abi.encode(IDstackFacet.dstack_register.selector, uint8(5))
        );
        factory = new ClusterMemberFactory(address(entryPoint));
        member = ClusterMember(payable(factory.deployMember(cluster, bytes32("node-1"))));
        target = new ExecTarget();
        (nodeKey, nodePk) = makeAddrAndKey("node owner key");
        address sponsor;
        (sponsor, sponsorPk) = makeAddrAndKey("sponsor");
        paymaster = new SponsorPaymaster(entryPoint, address(this), sponsor);
        paymaster.deposit{value: 10 ether}();
        vm.warp(1_700_000_000);
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------

    /// @dev A proof whose only part the account checks — the binding signature — is real; the KMS
    /// chain is the cluster's business and is exercised against a real cluster elsewhere.
    function _proof(uint256 bindingPk, address bindCluster, address bindMember)
        internal
        pure
        returns (DstackProof memory proof)
    {
        proof.ownerPubkey = hex"02aa";
        proof.appPubkey = hex"03bb";
        proof.appSignature = new bytes(65);
        proof.kmsSignature = new bytes(65);
        proof.purpose = "ethereum";
        proof.bindingSignature =
            _personalSign(bindingPk, LibBinding.bindHash(bindCluster, bindMember, X, WG, ED));
    }

    function _registerCall(DstackProof memory proof, address memberArg) internal pure returns (bytes memory) {
        return abi.encodeCall(IDstackFacet.dstack_register, (proof, memberArg, X, WG, ED));
    }

    function _bootstrapCallData() internal view returns (bytes memory) {
        return
            _executeCall(cluster, 0, _registerCall(_proof(nodePk, cluster, address(member)), address(member)));
    }

    function _validate(PackedUserOperation memory op) internal returns (uint256) {
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.prank(CANONICAL_ENTRY_POINT);
        return member.validateUserOp(op, opHash, 0);
    }

    function _expectBootstrapRejected(bytes memory callData, uint256 signerPk) internal {
        PackedUserOperation memory op = _userOp(address(member), callData);
        _signUserOp(op, signerPk);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(IClusterMember.InvalidBootstrapCall.selector);
        member.validateUserOp(op, opHash, 0);

        // And through the real EntryPoint, sponsored like a real bootstrap: AA23 with our error.
        (uint48 until, uint48 afterTs) = (uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _sponsor(op, paymaster, sponsorPk, until, afterTs);
        _signUserOp(op, signerPk);
        _expectFailedOpWithRevert(
            "AA23 reverted", abi.encodeWithSelector(IClusterMember.InvalidBootstrapCall.selector)
        );
        _handleOp(op);
    }

    function _setOwner(address owner_) internal {
        vm.prank(cluster);
        member.setOwnerFromCluster(owner_);
    }

    // ---------------------------------------------------------------------------------------------
    // Storage, construction, binding
    // ---------------------------------------------------------------------------------------------

    function test_storageSlot_isErc7201() public {
        bytes32 expected = keccak256(abi.encode(uint256(keccak256("attestmesh.storage.ClusterMember")) - 1))
            & ~bytes32(uint256(0xff));
        assertEq(expected, 0xeaff3df3ee5169d005a03d5a55e3db27753713bb429f09c0a0f5b446a482f300);
        assertEq(
            vm.load(address(member), expected), bytes32(uint256(uint160(cluster))), "cluster at slot + 0"
        );
        _setOwner(nodeKey);
        // slot + 1: owner (bytes 0..19 from the right), then the appended bootstrap rule packed
        // into the same slot: registerSelector (bytes 20..23), bindingSignatureField (byte 24).
        uint256 packed = uint256(vm.load(address(member), bytes32(uint256(expected) + 1)));
        assertEq(address(uint160(packed)), nodeKey, "owner at slot + 1");
        assertEq(bytes4(uint32(packed >> 160)), IDstackFacet.dstack_register.selector, "rule selector");
        assertEq(uint8(packed >> 192), 5, "rule field");
        assertEq(packed >> 200, 0, "nothing else in slot + 1");
    }

    function test_implementation_isLockedAndBoundToEntryPoint() public {
        ClusterMember impl = ClusterMember(payable(factory.implementation()));
        assertEq(impl.entryPoint(), CANONICAL_ENTRY_POINT);
        assertEq(impl.cluster(), address(0));
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.initialize(cluster);
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.reinitializeFromDstackApp(cluster);
    }

    /// @dev The implementation (and any proxy nobody bound) has no cluster, so the bootstrap rule
    /// has nothing to admit: an op shaped `execute(address(0), 0, dstack_register(..., self, ...))`
    /// whose binding names cluster 0 must not validate, whoever signs it.
    function test_unboundAccount_bootstrapIsInert() public {
        address impl = factory.implementation();
        address unboundProxy = address(new ERC1967Proxy(impl, ""));
        assertEq(ClusterMember(payable(unboundProxy)).cluster(), address(0));
        address[2] memory accounts = [impl, unboundProxy];
        for (uint256 i; i < accounts.length; ++i) {
            address acct = accounts[i];
            bytes memory cd =
                _executeCall(address(0), 0, _registerCall(_proof(nodePk, address(0), acct), acct));
            PackedUserOperation memory op = _userOp(acct, cd);
            _signUserOp(op, nodePk);
            bytes32 opHash = entryPoint.getUserOpHash(op);
            vm.prank(CANONICAL_ENTRY_POINT);
            vm.expectRevert(IClusterMember.InvalidBootstrapCall.selector);
            ClusterMember(payable(acct)).validateUserOp(op, opHash, 0);
        }
        // And through the real EntryPoint, sponsored: AA23 with our error, nothing executes.
        bytes memory implCd =
            _executeCall(address(0), 0, _registerCall(_proof(nodePk, address(0), impl), impl));
        PackedUserOperation memory implOp = _userOp(impl, implCd);
        (uint48 until, uint48 afterTs) = (uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _sponsor(implOp, paymaster, sponsorPk, until, afterTs);
        _signUserOp(implOp, nodePk);
        _expectFailedOpWithRevert(
            "AA23 reverted", abi.encodeWithSelector(IClusterMember.InvalidBootstrapCall.selector)
        );
        _handleOp(implOp);
    }

    function test_constructor_rejectsZeroEntryPoint() public {
        vm.expectRevert(IClusterMember.ZeroAddress.selector);
        new ClusterMember(address(0));
    }

    function test_member_isBoundOnce() public {
        assertEq(member.cluster(), cluster);
        assertEq(member.owner(), address(0));
        assertEq(member.entryPoint(), CANONICAL_ENTRY_POINT);
        assertEq(
            address(uint160(uint256(vm.load(address(member), ERC1967Utils.IMPLEMENTATION_SLOT)))),
            factory.implementation()
        );

        vm.expectRevert(Initializable.InvalidInitialization.selector);
        member.initialize(makeAddr("other cluster"));
        // Path A cannot rebind a factory member either: both paths end at the same version.
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        member.reinitializeFromDstackApp(makeAddr("other cluster"));
        assertEq(member.cluster(), cluster);
    }

    function test_initialize_rejectsZeroCluster() public {
        address impl = factory.implementation();
        vm.expectRevert(IClusterMember.ZeroAddress.selector);
        new ERC1967Proxy(impl, abi.encodeCall(IClusterMember.initialize, (address(0))));
    }

    // ---------------------------------------------------------------------------------------------
    // Factory
    // ---------------------------------------------------------------------------------------------

    function test_factory_predictDeployAndProvenance() public {
        address other = makeAddr("cluster B");
        bytes32 salt = keccak256("node-7");
        address predicted = factory.predictMemberAddress(other, salt);
        assertEq(predicted.code.length, 0);
        assertFalse(factory.isOurMember(predicted));

        vm.expectEmit(true, true, false, true, address(factory));
        emit IClusterMemberFactory.MemberDeployed(predicted, other, salt);
        address deployed = factory.deployMember(other, salt);

        assertEq(deployed, predicted);
        assertTrue(factory.isOurMember(deployed));
        assertEq(ClusterMember(payable(deployed)).cluster(), other);
        assertEq(ClusterMember(payable(deployed)).entryPoint(), CANONICAL_ENTRY_POINT);

        // The cluster is part of the address: same salt, other cluster, other member.
        assertTrue(factory.predictMemberAddress(cluster, salt) != predicted);
        assertTrue(factory.predictMemberAddress(other, keccak256("node-8")) != predicted);
    }

    function test_factory_deployIsIdempotent() public {
        address again = factory.deployMember(cluster, bytes32("node-1"));
        assertEq(again, address(member));
        assertEq(member.cluster(), cluster);
        assertTrue(factory.isOurMember(again));
    }

    function test_factory_isOurMember_rejectsLookalikes() public {
        // Same implementation behind a proxy the factory did not deploy.
        ERC1967Proxy foreign =
            new ERC1967Proxy(factory.implementation(), abi.encodeCall(IClusterMember.initialize, (cluster)));
        assertFalse(factory.isOurMember(address(foreign)));
        assertFalse(factory.isOurMember(factory.implementation()));
        assertFalse(factory.isOurMember(address(0)));
        // Another factory's members are not ours either.
        ClusterMemberFactory otherFactory = new ClusterMemberFactory(address(entryPoint));
        address theirs = otherFactory.deployMember(cluster, bytes32("node-1"));
        assertTrue(otherFactory.isOurMember(theirs));
        assertFalse(factory.isOurMember(theirs));
        assertTrue(theirs != address(member));
    }

    function test_factory_rejectsZeroCluster() public {
        vm.expectRevert(IClusterMember.ZeroAddress.selector);
        factory.deployMember(address(0), bytes32(0));
    }

    function test_factory_deploysThroughUserOpInitCode() public {
        // The factory doubles as an ERC-4337 initCode factory: the EntryPoint's SenderCreator calls
        // deployMember and the account is validated in the same op. Use an owner-less member and
        // a bootstrap-shaped op; prove creation happened even though validation then demands a
        // proper bootstrap.
        bytes32 salt = bytes32("counterfactual");
        address sender = factory.predictMemberAddress(cluster, salt);
        PackedUserOperation memory op = _userOp(sender, hex"");
        op.initCode =
            abi.encodePacked(address(factory), abi.encodeCall(factory.deployMember, (cluster, salt)));
        (uint48 until, uint48 afterTs) = (uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _sponsor(op, paymaster, sponsorPk, until, afterTs);
        _signUserOp(op, nodePk);
        // The initCode ran (the sender exists inside the op), then our validation rejected the op.
        _expectFailedOpWithRevert(
            "AA23 reverted", abi.encodeWithSelector(IClusterMember.InvalidBootstrapCall.selector)
        );
        _handleOp(op);
    }

    // ---------------------------------------------------------------------------------------------
    // setOwnerFromCluster
    // ---------------------------------------------------------------------------------------------

    function test_setOwnerFromCluster_onlyClusterOnceNonZero() public {
        vm.prank(makeAddr("stranger"));
        vm.expectRevert(IClusterMember.OnlyCluster.selector);
        member.setOwnerFromCluster(nodeKey);

        vm.prank(cluster);
        vm.expectRevert(IClusterMember.ZeroAddress.selector);
        member.setOwnerFromCluster(address(0));

        vm.expectEmit(true, false, false, false, address(member));
        emit IClusterMember.OwnerSet(nodeKey);
        _setOwner(nodeKey);
        assertEq(member.owner(), nodeKey);

        vm.prank(cluster);
        vm.expectRevert(IClusterMember.OwnerAlreadySet.selector);
        member.setOwnerFromCluster(makeAddr("usurper"));
        assertEq(member.owner(), nodeKey);
    }

    // ---------------------------------------------------------------------------------------------
    // execute
    // ---------------------------------------------------------------------------------------------

    function test_execute_onlyEntryPoint() public {
        vm.expectRevert(IClusterMember.OnlyEntryPoint.selector);
        member.execute(address(target), 0, abi.encodeCall(ExecTarget.record, ("x")));
        vm.prank(cluster);
        vm.expectRevert(IClusterMember.OnlyEntryPoint.selector);
        member.execute(address(target), 0, abi.encodeCall(ExecTarget.record, ("x")));
        assertEq(target.lastCaller(), address(0));
    }

    function test_execute_fromEntryPoint_callsWithValue() public {
        vm.deal(address(member), 1 ether);
        vm.prank(CANONICAL_ENTRY_POINT);
        member.execute(address(target), 0.25 ether, abi.encodeCall(ExecTarget.record, ("paid")));
        assertEq(target.lastCaller(), address(member));
        assertEq(target.lastValue(), 0.25 ether);
        assertEq(target.lastTag(), bytes32("paid"));
        assertEq(address(member).balance, 0.75 ether);
    }

    function test_execute_bubblesRevertDataUnchanged() public {
        bytes memory customError = abi.encodeWithSelector(IAttestFacet.NotOriginator.selector);
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(customError);
        member.execute(address(target), 0, abi.encodeCall(ExecTarget.fail, (customError)));

        bytes memory odd = hex"deadbeefcafe01";
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(odd);
        member.execute(address(target), 0, abi.encodeCall(ExecTarget.fail, (odd)));

        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(bytes(""));
        member.execute(address(target), 0, abi.encodeCall(ExecTarget.fail, (hex"")));
    }

    function testFuzz_execute_bubblesAnyRevertData(bytes memory data) public {
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(data);
        member.execute(address(target), 0, abi.encodeCall(ExecTarget.fail, (data)));
    }

    function test_receive_acceptsEth() public {
        (bool ok,) = payable(address(member)).call{value: 1 ether}("");
        assertTrue(ok);
        assertEq(address(member).balance, 1 ether);
    }

    // ---------------------------------------------------------------------------------------------
    // validateUserOp — bootstrap (no owner yet)
    // ---------------------------------------------------------------------------------------------

    function test_validateUserOp_onlyEntryPoint() public {
        PackedUserOperation memory op = _userOp(address(member), _bootstrapCallData());
        _signUserOp(op, nodePk);
        vm.expectRevert(IClusterMember.OnlyEntryPoint.selector);
        member.validateUserOp(op, bytes32(0), 0);
    }

    function test_bootstrap_acceptsTheExactShape() public {
        PackedUserOperation memory op = _userOp(address(member), _bootstrapCallData());
        _signUserOp(op, nodePk);
        assertEq(_validate(op), 0);
    }

    function test_bootstrap_paysMissingFundsWhenAsked() public {
        vm.deal(address(member), 1 ether);
        PackedUserOperation memory op = _userOp(address(member), _bootstrapCallData());
        _signUserOp(op, nodePk);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        uint256 epBefore = CANONICAL_ENTRY_POINT.balance;
        vm.prank(CANONICAL_ENTRY_POINT);
        assertEq(member.validateUserOp(op, opHash, 0.1 ether), 0);
        assertEq(address(member).balance, 0.9 ether);
        assertEq(CANONICAL_ENTRY_POINT.balance, epBefore + 0.1 ether);
    }

    function test_bootstrap_rejectsWrongOuterSelector() public {
        bytes memory reg = _registerCall(_proof(nodePk, cluster, address(member)), address(member));
        // The inner call on its own, not wrapped in execute.
        _expectBootstrapRejected(reg, nodePk);
        // execute's arguments under another selector.
        bytes memory cd = _executeCall(cluster, 0, reg);
        cd[0] = 0x00;
        _expectBootstrapRejected(cd, nodePk);
    }

    function test_bootstrap_rejectsOtherTarget() public {
        bytes memory reg = _registerCall(_proof(nodePk, cluster, address(member)), address(member));
        _expectBootstrapRejected(_executeCall(makeAddr("other cluster"), 0, reg), nodePk);
        _expectBootstrapRejected(_executeCall(address(member), 0, reg), nodePk);
    }

    function test_bootstrap_rejectsDirtyTargetAddress() public {
        bytes memory cd = _bootstrapCallData();
        cd[4] = 0x01; // a high byte of the address word: same low 20 bytes, not a clean address
        _expectBootstrapRejected(cd, nodePk);
    }

    function test_bootstrap_rejectsNonzeroValue() public {
        bytes memory reg = _registerCall(_proof(nodePk, cluster, address(member)), address(member));
        _expectBootstrapRejected(_executeCall(cluster, 1, reg), nodePk);
    }

    function test_bootstrap_rejectsOtherInnerSelector() public {
        _expectBootstrapRejected(
            _executeCall(cluster, 0, abi.encodeCall(IAttestFacet.setCskCommitment, (bytes32(uint256(1))))),
            nodePk
        );
        // dstack_register's arguments under another selector.
        bytes memory reg = _registerCall(_proof(nodePk, cluster, address(member)), address(member));
        reg[3] = bytes1(uint8(reg[3]) ^ 0x01);
        _expectBootstrapRejected(_executeCall(cluster, 0, reg), nodePk);
        // An empty inner call.
        _expectBootstrapRejected(_executeCall(cluster, 0, hex""), nodePk);
    }

    function test_bootstrap_rejectsAnotherMemberArgument() public {
        address otherMember = factory.deployMember(cluster, bytes32("node-2"));
        // Registering another member, with a binding that is correct for that member.
        bytes memory reg = _registerCall(_proof(nodePk, cluster, otherMember), otherMember);
        _expectBootstrapRejected(_executeCall(cluster, 0, reg), nodePk);
    }

    function test_bootstrap_rejectsSignerOtherThanBindingSigner() public {
        (, uint256 otherPk) = makeAddrAndKey("somebody else");
        _expectBootstrapRejected(_bootstrapCallData(), otherPk);
    }

    function test_bootstrap_rejectsBindingForOtherClusterOrMember() public {
        // The binding signature covers another cluster: its signer is not the userOp signer.
        bytes memory reg =
            _registerCall(_proof(nodePk, makeAddr("other cluster"), address(member)), address(member));
        _expectBootstrapRejected(_executeCall(cluster, 0, reg), nodePk);
        // ... or another member.
        reg = _registerCall(_proof(nodePk, cluster, makeAddr("other member")), address(member));
        _expectBootstrapRejected(_executeCall(cluster, 0, reg), nodePk);
    }

    function test_bootstrap_rejectsMalformedBindingSignature() public {
        DstackProof memory proof = _proof(nodePk, cluster, address(member));
        proof.bindingSignature = hex"";
        _expectBootstrapRejected(_executeCall(cluster, 0, _registerCall(proof, address(member))), nodePk);
        proof.bindingSignature = new bytes(65);
        _expectBootstrapRejected(_executeCall(cluster, 0, _registerCall(proof, address(member))), nodePk);
    }

    function test_bootstrap_rejectsMalformedUserOpSignature() public {
        PackedUserOperation memory op = _userOp(address(member), _bootstrapCallData());
        op.signature = hex"1234";
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(IClusterMember.InvalidBootstrapCall.selector);
        member.validateUserOp(op, opHash, 0);
    }

    function test_bootstrap_rejectsGarbageCalldata() public {
        _expectBootstrapRejected(hex"", nodePk);
        _expectBootstrapRejected(hex"b61d27", nodePk); // three bytes of execute's selector
        _expectBootstrapRejected(abi.encodePacked(IClusterMember.execute.selector), nodePk);
        _expectBootstrapRejected(abi.encodePacked(IClusterMember.execute.selector, bytes32(0)), nodePk);

        bytes memory good = _bootstrapCallData();
        // Outer `bytes data` offset pointing past the end.
        bytes memory cd = bytes.concat(good);
        _setWord(cd, 4 + 64, type(uint256).max - 31);
        _expectBootstrapRejected(cd, nodePk);
        cd = bytes.concat(good);
        _setWord(cd, 4 + 64, good.length);
        _expectBootstrapRejected(cd, nodePk);
        // Outer length larger than what follows.
        cd = bytes.concat(good);
        _setWord(cd, 4 + 96, type(uint256).max);
        _expectBootstrapRejected(cd, nodePk);

        // Inner: proof offset out of range (inner args start at 4 + 128 + 4).
        uint256 regStart = 4 + 128 + 4;
        cd = bytes.concat(good);
        _setWord(cd, regStart, type(uint256).max);
        _expectBootstrapRejected(cd, nodePk);
        // Inner: bindingSignature offset (sixth proof head word) out of range.
        uint256 proofStart = regStart + _readWord(good, regStart);
        cd = bytes.concat(good);
        _setWord(cd, proofStart + 160, 1 << 200);
        _expectBootstrapRejected(cd, nodePk);
        // Inner: bindingSignature length out of range.
        uint256 sigLenPos = proofStart + _readWord(good, proofStart + 160);
        cd = bytes.concat(good);
        _setWord(cd, sigLenPos, 1 << 100);
        _expectBootstrapRejected(cd, nodePk);
    }

    function testFuzz_bootstrap_garbageAfterSelectorIsRejected(bytes memory junk) public {
        PackedUserOperation memory op =
            _userOp(address(member), abi.encodePacked(IClusterMember.execute.selector, junk));
        _signUserOp(op, nodePk);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(IClusterMember.InvalidBootstrapCall.selector);
        member.validateUserOp(op, opHash, 0);
    }

    /// @dev Cutting a valid bootstrap anywhere before its last meaningful byte is rejected with
    /// our error (the last 28 bytes are ABI padding of the outer `bytes`).
    function testFuzz_bootstrap_truncationIsRejected(uint256 cut) public {
        bytes memory good = _bootstrapCallData();
        uint256 len = bound(cut, 0, good.length - 29);
        bytes memory cd = new bytes(len);
        for (uint256 i; i < len; i++) {
            cd[i] = good[i];
        }
        PackedUserOperation memory op = _userOp(address(member), cd);
        _signUserOp(op, nodePk);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert(IClusterMember.InvalidBootstrapCall.selector);
        member.validateUserOp(op, opHash, 0);
    }

    function test_bootstrap_truncatingOnlyPaddingStillValidates() public {
        // Counterpart of the truncation fuzz: the boundary is exactly the outer padding.
        bytes memory good = _bootstrapCallData();
        bytes memory cd = new bytes(good.length - 28);
        for (uint256 i; i < cd.length; i++) {
            cd[i] = good[i];
        }
        PackedUserOperation memory op = _userOp(address(member), cd);
        _signUserOp(op, nodePk);
        assertEq(_validate(op), 0);
    }

    // ---------------------------------------------------------------------------------------------
    // validateUserOp — after registration
    // ---------------------------------------------------------------------------------------------

    function test_registered_ownerSignatureValidates_othersReturnOne() public {
        _setOwner(nodeKey);
        bytes memory cd = _executeCall(address(target), 0, abi.encodeCall(ExecTarget.record, ("t")));
        PackedUserOperation memory op = _userOp(address(member), cd);
        _signUserOp(op, nodePk);
        assertEq(_validate(op), 0);

        (, uint256 otherPk) = makeAddrAndKey("not the owner");
        _signUserOp(op, otherPk);
        assertEq(_validate(op), 1, "wrong signer: SIG_VALIDATION_FAILED, no revert");

        op.signature = hex"00";
        assertEq(_validate(op), 1, "malformed signature: no revert");
        op.signature = new bytes(65);
        assertEq(_validate(op), 1, "zero signature: no revert");

        // Once registered, the bootstrap shape earns nothing special: still the owner's signature.
        op = _userOp(address(member), _bootstrapCallData());
        _signUserOp(op, otherPk);
        assertEq(_validate(op), 1);
        _signUserOp(op, nodePk);
        assertEq(_validate(op), 0);
    }

    function test_registered_selfFundedOpThroughEntryPoint() public {
        _setOwner(nodeKey);
        vm.deal(address(member), 1 ether);
        PackedUserOperation memory op = _userOp(
            address(member), _executeCall(address(target), 0, abi.encodeCall(ExecTarget.record, ("self")))
        );
        _signUserOp(op, nodePk);
        _handleOp(op);
        assertEq(target.lastCaller(), address(member));
        assertEq(target.lastTag(), bytes32("self"));
        uint256 spent = 1 ether - address(member).balance - entryPoint.balanceOf(address(member));
        assertGt(spent, 0, "the member paid its own prefund");
        assertEq(beneficiary.balance, spent, "and exactly that went to the bundler");
    }

    function test_registered_badSignatureThroughEntryPoint_AA24() public {
        _setOwner(nodeKey);
        PackedUserOperation memory op = _userOp(
            address(member), _executeCall(address(target), 0, abi.encodeCall(ExecTarget.record, ("x")))
        );
        (uint48 until, uint48 afterTs) = (uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _sponsor(op, paymaster, sponsorPk, until, afterTs);
        (, uint256 otherPk) = makeAddrAndKey("not the owner");
        _signUserOp(op, otherPk);
        _expectFailedOp("AA24 signature error");
        _handleOp(op);
        assertEq(target.lastCaller(), address(0));
    }

    function test_registered_revertingCallIsReportedNotFatal() public {
        _setOwner(nodeKey);
        bytes memory err = abi.encodeWithSelector(IAttestFacet.NotOriginator.selector);
        PackedUserOperation memory op = _userOp(
            address(member), _executeCall(address(target), 0, abi.encodeCall(ExecTarget.fail, (err)))
        );
        (uint48 until, uint48 afterTs) = (uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _sponsor(op, paymaster, sponsorPk, until, afterTs);
        _signUserOp(op, nodePk);
        bytes32 opHash = entryPoint.getUserOpHash(op);
        // execute bubbles the exact revert data, which the EntryPoint reports.
        vm.expectEmit(true, true, false, true, address(entryPoint));
        emit IEntryPoint.UserOperationRevertReason(opHash, address(member), 0, err);
        _handleOp(op);
        assertEq(
            entryPoint.getNonce(address(member), 0), 1, "the nonce is used even though the call reverted"
        );
    }

    // ---------------------------------------------------------------------------------------------
    // Path A: a stock dstack app proxy becomes a ClusterMember
    // ---------------------------------------------------------------------------------------------

    function _stockApp(address appOwner) internal returns (StockDstackApp app) {
        StockDstackApp impl = new StockDstackApp();
        app = StockDstackApp(
            address(
                new ERC1967Proxy(
                    address(impl), abi.encodeCall(StockDstackApp.initialize, (appOwner, bytes32("c")))
                )
            )
        );
    }

    function test_pathA_ownerUpgradesStockAppIntoMember() public {
        address appOwner = makeAddr("app owner");
        StockDstackApp app = _stockApp(appOwner);
        assertTrue(app.allowedComposeHashes(bytes32("c")));
        address impl = factory.implementation();

        vm.expectEmit(true, false, false, false, address(app));
        emit IClusterMember.ClusterBound(cluster);
        vm.prank(appOwner);
        app.upgradeToAndCall(impl, abi.encodeCall(IClusterMember.reinitializeFromDstackApp, (cluster)));

        ClusterMember converted = ClusterMember(payable(address(app)));
        assertEq(address(uint160(uint256(vm.load(address(app), ERC1967Utils.IMPLEMENTATION_SLOT)))), impl);
        assertEq(converted.cluster(), cluster);
        assertEq(converted.owner(), address(0), "the 4337 owner comes only from registration");
        assertEq(converted.entryPoint(), CANONICAL_ENTRY_POINT);
        assertFalse(factory.isOurMember(address(app)), "provenance is the cluster's app-id allowlist");

        // Exactly once.
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        converted.reinitializeFromDstackApp(makeAddr("other cluster"));
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        converted.initialize(makeAddr("other cluster"));
        assertEq(converted.cluster(), cluster);

        // And it now behaves as a member: the cluster installs the owner, the EntryPoint drives it.
        vm.prank(cluster);
        converted.setOwnerFromCluster(nodeKey);
        PackedUserOperation memory op = _userOp(
            address(converted), _executeCall(address(target), 0, abi.encodeCall(ExecTarget.record, ("pathA")))
        );
        (uint48 until, uint48 afterTs) = (uint48(block.timestamp + 600), uint48(block.timestamp - 60));
        _sponsor(op, paymaster, sponsorPk, until, afterTs);
        _signUserOp(op, nodePk);
        _handleOp(op);
        assertEq(target.lastCaller(), address(converted));
    }

    function test_pathA_onlyTheStockOwnerCanConvert() public {
        StockDstackApp app = _stockApp(makeAddr("app owner"));
        address impl = factory.implementation();
        vm.prank(makeAddr("intruder"));
        vm.expectRevert(StockDstackApp.NotOwner.selector);
        app.upgradeToAndCall(impl, abi.encodeCall(IClusterMember.reinitializeFromDstackApp, (cluster)));
        // Calling the reinitializer on the stock app itself reaches no such function (no fallback:
        // an empty revert).
        vm.expectRevert(bytes(""));
        IClusterMember(address(app)).reinitializeFromDstackApp(cluster);
    }

    function test_pathA_rejectsZeroCluster() public {
        address appOwner = makeAddr("app owner");
        StockDstackApp app = _stockApp(appOwner);
        address impl = factory.implementation();
        vm.prank(appOwner);
        vm.expectRevert(IClusterMember.ZeroAddress.selector);
        app.upgradeToAndCall(impl, abi.encodeCall(IClusterMember.reinitializeFromDstackApp, (address(0))));
    }

    // ---------------------------------------------------------------------------------------------
    // Byte helpers
    // ---------------------------------------------------------------------------------------------

    function _setWord(bytes memory b, uint256 pos, uint256 value) internal pure {
        assembly ("memory-safe") {
            mstore(add(add(b, 0x20), pos), value)
        }
    }

    function _readWord(bytes memory b, uint256 pos) internal pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := mload(add(add(b, 0x20), pos))
        }
    }
}
