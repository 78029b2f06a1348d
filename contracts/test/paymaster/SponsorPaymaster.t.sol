// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {IPaymaster} from "@account-abstraction/contracts/interfaces/IPaymaster.sol";
import {IStakeManager} from "@account-abstraction/contracts/interfaces/IStakeManager.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {EntryPointDeployer} from "../member/EntryPointDeployer.sol";
import {SponsorPaymaster} from "../../src/paymaster/SponsorPaymaster.sol";
import {ClusterMember} from "../../src/member/ClusterMember.sol";
import {ClusterMemberFactory} from "../../src/member/ClusterMemberFactory.sol";

/// @dev A call target that remembers who called it, so a test can see an op really executed.
contract CallRecorder {
    address public lastCaller;
    uint256 public calls;
    bytes32 public lastTag;

    function record(bytes32 tag) external {
        lastCaller = msg.sender;
        lastTag = tag;
        calls++;
    }
}

/// @dev A call target that burns every unit of gas it is given (then runs out), so an op spends
/// its whole callGasLimit: the most a sponsor-signed op can cost.
contract GasBurner {
    function burn() external pure {
        while (true) {}
    }
}

contract SponsorPaymasterTest is EntryPointDeployer {
    SponsorPaymaster internal paymaster;
    ClusterMember internal member;
    CallRecorder internal recorder;

    address internal pmOwner = makeAddr("paymaster owner");
    uint256 internal signerPk;
    address internal signerAddr;
    uint256 internal ownerPk;
    address internal memberOwner;
    address internal cluster = makeAddr("cluster");

    uint256 internal constant DEPOSIT = 10 ether;

    event SignerChanged(address indexed previousSigner, address indexed newSigner);

    function setUp() public {
        _deployEntryPoint();
        (signerAddr, signerPk) = makeAddrAndKey("sponsor signer");
        (memberOwner, ownerPk) = makeAddrAndKey("member owner");

        paymaster = new SponsorPaymaster(entryPoint, pmOwner, signerAddr);
        vm.deal(pmOwner, 100 ether);
        vm.prank(pmOwner);
        paymaster.deposit{value: DEPOSIT}();

        ClusterMemberFactory factory = new ClusterMemberFactory(address(entryPoint));
        member = ClusterMember(payable(factory.deployMember(cluster, bytes32("node-1"))));
        vm.prank(cluster);
        member.setOwnerFromCluster(memberOwner);

        recorder = new CallRecorder();
        vm.warp(1_700_000_000);
    }

    function _recordOp(bytes32 tag) internal view returns (PackedUserOperation memory op) {
        op = _userOp(
            address(member), _executeCall(address(recorder), 0, abi.encodeCall(CallRecorder.record, (tag)))
        );
    }

    function _window() internal view returns (uint48 validUntil, uint48 validAfter) {
        validUntil = uint48(block.timestamp + 600);
        validAfter = uint48(block.timestamp - 60);
    }

    // ---------------------------------------------------------------------------------------------
    // Construction, ownership, funds
    // ---------------------------------------------------------------------------------------------

    function test_constructor_setsOwnerSignerAndEntryPoint() public {
        assertEq(paymaster.owner(), pmOwner);
        assertEq(paymaster.signer(), signerAddr);
        assertEq(address(paymaster.entryPoint()), CANONICAL_ENTRY_POINT);
        assertEq(paymaster.PAYMASTER_AND_DATA_LENGTH(), 129);

        vm.expectEmit(true, true, false, false);
        emit SignerChanged(address(0), signerAddr);
        SponsorPaymaster other = new SponsorPaymaster(entryPoint, pmOwner, signerAddr);
        assertEq(other.signer(), signerAddr);
    }

    function test_constructor_rejectsZeroOwnerOrSigner() public {
        vm.expectRevert(SponsorPaymaster.ZeroAddress.selector);
        new SponsorPaymaster(entryPoint, address(0), signerAddr);
        vm.expectRevert(SponsorPaymaster.ZeroAddress.selector);
        new SponsorPaymaster(entryPoint, pmOwner, address(0));
    }

    function test_constructor_rejectsNonEntryPoint() public {
        // BasePaymaster checks the IEntryPoint interface id through ERC-165; the recorder has no
        // supportsInterface and no fallback, so the probe reverts without data.
        vm.expectRevert(bytes(""));
        new SponsorPaymaster(IEntryPoint(address(recorder)), pmOwner, signerAddr);
    }

    function test_ownership_isTwoStep() public {
        address next = makeAddr("next owner");
        vm.prank(pmOwner);
        paymaster.transferOwnership(next);
        assertEq(paymaster.owner(), pmOwner, "owner changes only on accept");
        assertEq(paymaster.pendingOwner(), next);

        vm.prank(makeAddr("stranger"));
        vm.expectRevert(
            abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, makeAddr("stranger"))
        );
        paymaster.acceptOwnership();

        vm.prank(next);
        paymaster.acceptOwnership();
        assertEq(paymaster.owner(), next);
        assertEq(paymaster.pendingOwner(), address(0));

        vm.prank(pmOwner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, pmOwner));
        paymaster.setSigner(makeAddr("x"));
    }

    function test_depositWithdrawAndStake_throughRealEntryPoint() public {
        assertEq(paymaster.getDeposit(), DEPOSIT);
        assertEq(entryPoint.balanceOf(address(paymaster)), DEPOSIT);

        address payable sink = payable(makeAddr("sink"));
        vm.prank(pmOwner);
        paymaster.withdrawTo(sink, 1 ether);
        assertEq(sink.balance, 1 ether);
        assertEq(paymaster.getDeposit(), DEPOSIT - 1 ether);

        vm.prank(makeAddr("stranger"));
        vm.expectRevert(
            abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, makeAddr("stranger"))
        );
        paymaster.withdrawTo(sink, 1);

        vm.prank(pmOwner);
        paymaster.addStake{value: 2 ether}(86_400);
        IStakeManager.DepositInfo memory info = entryPoint.getDepositInfo(address(paymaster));
        assertTrue(info.staked);
        assertEq(info.stake, 2 ether);
        assertEq(info.unstakeDelaySec, 86_400);
    }

    function test_unlockAndWithdrawStake_throughRealEntryPoint() public {
        vm.startPrank(pmOwner);
        paymaster.addStake{value: 2 ether}(1);
        paymaster.unlockStake();
        vm.stopPrank();
        IStakeManager.DepositInfo memory info = entryPoint.getDepositInfo(address(paymaster));
        assertFalse(info.staked);
        assertGt(info.withdrawTime, 0);

        address payable sink = payable(makeAddr("stake sink"));
        vm.warp(block.timestamp + 2);
        vm.prank(makeAddr("stranger"));
        vm.expectRevert(
            abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, makeAddr("stranger"))
        );
        paymaster.withdrawStake(sink);
        vm.prank(makeAddr("stranger"));
        vm.expectRevert(
            abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, makeAddr("stranger"))
        );
        paymaster.unlockStake();

        vm.prank(pmOwner);
        paymaster.withdrawStake(sink);
        assertEq(sink.balance, 2 ether);
        assertEq(entryPoint.getDepositInfo(address(paymaster)).stake, 0);
        assertEq(paymaster.getDeposit(), DEPOSIT, "the gas deposit is separate from the stake");
    }

    /// @dev Validation returns an empty context, so the EntryPoint never calls postOp.
    function test_postOp_neverCalledForASponsoredOp() public {
        PackedUserOperation memory op = _recordOp("no postOp");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
        vm.expectCall(address(paymaster), abi.encodeWithSelector(IPaymaster.postOp.selector), 0);
        _handleOp(op);
        assertEq(recorder.calls(), 1, "the op ran");
    }

    /// @dev Were postOp ever called, only the EntryPoint may, and BasePaymaster's default refuses.
    function test_postOp_refusedIfCalled() public {
        vm.expectRevert("Sender not EntryPoint");
        paymaster.postOp(IPaymaster.PostOpMode.opSucceeded, "", 0, 0);
        vm.prank(CANONICAL_ENTRY_POINT);
        vm.expectRevert("must override");
        paymaster.postOp(IPaymaster.PostOpMode.opSucceeded, "", 0, 0);
    }

    /// @dev getHash needs the two paymaster gas words; shorter paymasterAndData is refused.
    function test_getHash_revertsWithoutPaymasterGasFields() public {
        PackedUserOperation memory op = _recordOp("short");
        op.paymasterAndData = abi.encodePacked(address(paymaster), uint128(1), uint120(2)); // 51 bytes
        vm.expectRevert(
            abi.encodeWithSelector(SponsorPaymaster.InvalidPaymasterDataLength.selector, uint256(51))
        );
        paymaster.getHash(op, 1, 0);
        op.paymasterAndData = abi.encodePacked(address(paymaster), uint128(1), uint128(2)); // 52: enough
        paymaster.getHash(op, 1, 0);
    }

    /// @dev Changing any one signed field of the op changes the hash (so a sponsor signature never
    /// carries over to an op that differs in sender, initCode or any gas field).
    function test_getHash_coversEveryOpField() public {
        PackedUserOperation memory op = _recordOp("fields");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        bytes32 h = paymaster.getHash(op, until, afterTs);
        for (uint256 f; f < 8; ++f) {
            PackedUserOperation memory o = _recordOp("fields");
            o.paymasterAndData = bytes.concat(op.paymasterAndData);
            if (f == 0) o.sender = makeAddr("other sender");
            if (f == 1) o.nonce = 7;
            if (f == 2) o.initCode = hex"01";
            if (f == 3) o.callData = hex"02";
            if (f == 4) o.accountGasLimits = bytes32(uint256(o.accountGasLimits) + 1);
            if (f == 5) o.paymasterAndData[51] = bytes1(uint8(o.paymasterAndData[51]) ^ 1); // postOp gas
            if (f == 6) o.preVerificationGas += 1;
            if (f == 7) o.gasFees = bytes32(uint256(o.gasFees) + 1);
            assertTrue(paymaster.getHash(o, until, afterTs) != h, vm.toString(f));
        }
    }

    function test_validatePaymasterUserOp_onlyEntryPoint() public {
        PackedUserOperation memory op = _recordOp("x");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        vm.expectRevert("Sender not EntryPoint");
        paymaster.validatePaymasterUserOp(op, bytes32(0), 0);
    }

    /// @dev ERC-7562 properties of validation, checked directly because no bundler that runs here
    /// enforces the rules against anvil (DESIGN §10): validation writes no storage, reads only
    /// the paymaster's own storage (the signer) and nothing of the sender, and returns an empty
    /// context. Reading its own storage is what requires the paymaster to be staked with the
    /// EntryPoint on public bundlers, which `cluster deploy-infra` does.
    function test_erc7562_validationReadsOnlyItsOwnStorageAndWritesNone() public {
        PackedUserOperation memory op = _recordOp("7562");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        vm.record();
        vm.prank(address(entryPoint));
        (bytes memory context,) = paymaster.validatePaymasterUserOp(op, bytes32(0), 0);
        (bytes32[] memory reads, bytes32[] memory writes) = vm.accesses(address(paymaster));
        assertEq(writes.length, 0, "validation writes no storage");
        assertGt(reads.length, 0, "validation reads the signer: own storage, so a stake is needed");
        (bytes32[] memory senderReads, bytes32[] memory senderWrites) = vm.accesses(op.sender);
        assertEq(senderReads.length + senderWrites.length, 0, "no access to the sender's storage");
        (bytes32[] memory epReads, bytes32[] memory epWrites) = vm.accesses(address(entryPoint));
        assertEq(epReads.length + epWrites.length, 0, "no access to the EntryPoint's storage");
        assertEq(context.length, 0, "an empty context: postOp is never called");
    }

    // ---------------------------------------------------------------------------------------------
    // The hash and the validation data
    // ---------------------------------------------------------------------------------------------

    /// @dev The layout the Rust sponsor service reproduces: twelve ABI words, see the contract doc.
    function test_getHash_matchesDocumentedLayout() public view {
        PackedUserOperation memory op = _recordOp("layout");
        op.initCode = hex"c0ffee";
        op.paymasterAndData = abi.encodePacked(
            address(paymaster),
            uint128(123_456),
            uint128(7_890),
            uint48(2_000_000_000),
            uint48(5),
            new bytes(65)
        );
        bytes32 expected = keccak256(
            abi.encodePacked(
                bytes32(uint256(uint160(op.sender))),
                op.nonce,
                keccak256(op.initCode),
                keccak256(op.callData),
                op.accountGasLimits,
                bytes32((uint256(123_456) << 128) | 7_890),
                op.preVerificationGas,
                op.gasFees,
                block.chainid,
                bytes32(uint256(uint160(address(paymaster)))),
                uint256(2_000_000_000),
                uint256(5)
            )
        );
        assertEq(paymaster.getHash(op, 2_000_000_000, 5), expected);
    }

    /// @dev Known-answer vector for the Rust sponsor service, computed independently with
    /// `cast abi-encode` + `cast keccak` from the documented layout.
    function test_getHash_knownAnswerVector() public {
        address at = 0x2222222222222222222222222222222222222222;
        vm.etch(at, address(paymaster).code);
        vm.chainId(8453);
        PackedUserOperation memory op;
        op.sender = 0x1111111111111111111111111111111111111111;
        op.nonce = 5;
        op.initCode = "";
        op.callData = hex"deadbeef";
        op.accountGasLimits = _packGas(300_000, 1_000_000);
        op.preVerificationGas = 50_000;
        op.gasFees = _packGas(1 gwei, 2 gwei);
        op.paymasterAndData = abi.encodePacked(
            at, uint128(100_000), uint128(0), uint48(1_700_000_600), uint48(1_699_999_940), new bytes(65)
        );
        bytes32 h = SponsorPaymaster(at).getHash(op, 1_700_000_600, 1_699_999_940);
        assertEq(h, 0x45490bfdd9564cc4496028b63064a7dfd0086a99c56f0555f4701b5a137c090f);
        assertEq(
            keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", h)),
            0xf6e4c8240acceb9460b433a0db12c76834ec9d75aebcc20259f265e94b436b08
        );
    }

    function test_getHash_bindsChainPaymasterWindowAndOp() public {
        PackedUserOperation memory op = _recordOp("bind");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        bytes32 h = paymaster.getHash(op, until, afterTs);

        assertTrue(paymaster.getHash(op, until + 1, afterTs) != h, "validUntil");
        assertTrue(paymaster.getHash(op, until, afterTs + 1) != h, "validAfter");

        PackedUserOperation memory op2 = _recordOp("other");
        op2.paymasterAndData = op.paymasterAndData;
        assertTrue(paymaster.getHash(op2, until, afterTs) != h, "callData");

        op2 = _recordOp("bind");
        op2.paymasterAndData = op.paymasterAndData;
        op2.nonce = 1;
        assertTrue(paymaster.getHash(op2, until, afterTs) != h, "nonce");

        // The paymaster signature bytes themselves are not covered.
        op2 = _recordOp("bind");
        op2.paymasterAndData = op.paymasterAndData;
        op2.paymasterAndData[100] = 0xff;
        op2.signature = hex"01";
        assertEq(paymaster.getHash(op2, until, afterTs), h, "signature bytes are outside the hash");

        SponsorPaymaster other = new SponsorPaymaster(entryPoint, pmOwner, signerAddr);
        assertTrue(other.getHash(op, until, afterTs) != h, "paymaster address");

        vm.chainId(8453);
        assertTrue(paymaster.getHash(op, until, afterTs) != h, "chain id");
    }

    function test_validationData_packsWindowAndSigFailed() public {
        PackedUserOperation memory op = _recordOp("pack");
        uint48 until = 2_000_000_000;
        uint48 afterTs = 1_600_000_000;
        _sponsor(op, paymaster, signerPk, until, afterTs);

        vm.prank(CANONICAL_ENTRY_POINT);
        (bytes memory context, uint256 vd) = paymaster.validatePaymasterUserOp(op, bytes32(0), 0);
        assertEq(context.length, 0);
        assertEq(vd, (uint256(until) << 160) | (uint256(afterTs) << 208));

        (uint256 otherPk) = uint256(keccak256("not the signer"));
        _sponsor(op, paymaster, otherPk, until, afterTs);
        vm.prank(CANONICAL_ENTRY_POINT);
        (, vd) = paymaster.validatePaymasterUserOp(op, bytes32(0), 0);
        assertEq(
            vd, 1 | (uint256(until) << 160) | (uint256(afterTs) << 208), "bad signature: flag, no revert"
        );

        // An unrecoverable signature (v = 0) is a failure flag too, never a revert.
        bytes memory pmd = op.paymasterAndData;
        pmd[128] = 0x00;
        op.paymasterAndData = pmd;
        vm.prank(CANONICAL_ENTRY_POINT);
        (, vd) = paymaster.validatePaymasterUserOp(op, bytes32(0), 0);
        assertEq(vd & 1, 1);
    }

    function testFuzz_parsePaymasterAndData_rejectsAnyOtherLength(uint16 len) public {
        len = uint16(bound(len, 0, 2046));
        if (len >= 129) ++len; // every length in [0, 2047] except 129
        vm.expectRevert(
            abi.encodeWithSelector(SponsorPaymaster.InvalidPaymasterDataLength.selector, uint256(len))
        );
        paymaster.parsePaymasterAndData(new bytes(len));
    }

    function test_parsePaymasterAndData_splitsFields() public view {
        bytes memory sig = new bytes(65);
        sig[0] = 0xaa;
        sig[64] = 0x1c;
        bytes memory pmd = abi.encodePacked(
            address(paymaster), uint128(1), uint128(2), uint48(0x0102030405), uint48(0x0a0b0c), sig
        );
        (uint48 until, uint48 afterTs, bytes memory s) = paymaster.parsePaymasterAndData(pmd);
        assertEq(until, 0x0102030405);
        assertEq(afterTs, 0x0a0b0c);
        assertEq(s, sig);
    }

    // ---------------------------------------------------------------------------------------------
    // Through EntryPoint.handleOps
    // ---------------------------------------------------------------------------------------------

    function test_handleOps_sponsoredOpLands_paymasterPays_accountHoldsNothing() public {
        assertEq(address(member).balance, 0);
        assertEq(entryPoint.balanceOf(address(member)), 0);

        PackedUserOperation memory op = _recordOp("sponsored");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
        bytes32 opHash = entryPoint.getUserOpHash(op);

        vm.expectEmit(true, true, true, false, address(entryPoint));
        emit IEntryPoint.UserOperationEvent(opHash, address(member), address(paymaster), 0, true, 0, 0);
        _handleOp(op);

        assertEq(recorder.lastCaller(), address(member), "executed as the member");
        assertEq(recorder.lastTag(), bytes32("sponsored"));
        assertEq(entryPoint.getNonce(address(member), 0), 1);

        uint256 paid = DEPOSIT - paymaster.getDeposit();
        assertGt(paid, 0, "the paymaster deposit paid");
        assertEq(beneficiary.balance, paid, "the bundler got exactly what the paymaster paid");
        assertEq(address(member).balance, 0, "the account holds no ETH");
        assertEq(entryPoint.balanceOf(address(member)), 0, "nor any deposit");
    }

    function test_handleOps_badPaymasterSignature_AA34() public {
        PackedUserOperation memory op = _recordOp("bad");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, uint256(keccak256("impostor")), until, afterTs);
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA34 signature error");
        _handleOp(op);
    }

    function test_handleOps_opChangedAfterSponsoring_AA34() public {
        PackedUserOperation memory op = _recordOp("approved");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        // The account swaps in another call and re-signs: the sponsor signature no longer matches.
        op.callData = _executeCall(address(recorder), 0, abi.encodeCall(CallRecorder.record, ("swapped")));
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA34 signature error");
        _handleOp(op);
        assertEq(recorder.calls(), 0);
    }

    function test_handleOps_gasLimitsRaisedAfterSponsoring_AA34() public {
        PackedUserOperation memory op = _recordOp("gas");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        op.accountGasLimits = _packGas(VERIFICATION_GAS, CALL_GAS * 10);
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA34 signature error");
        _handleOp(op);
    }

    function test_handleOps_expired_AA32() public {
        PackedUserOperation memory op = _recordOp("late");
        _sponsor(op, paymaster, signerPk, uint48(block.timestamp - 1), uint48(block.timestamp - 600));
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA32 paymaster expired or not due");
        _handleOp(op);
    }

    function test_handleOps_expiresWhileWaiting_AA32() public {
        PackedUserOperation memory op = _recordOp("slow");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
        vm.warp(uint256(until) + 1);
        _expectFailedOp("AA32 paymaster expired or not due");
        _handleOp(op);
    }

    function test_handleOps_notYetValid_AA32() public {
        PackedUserOperation memory op = _recordOp("early");
        _sponsor(op, paymaster, signerPk, uint48(block.timestamp + 3600), uint48(block.timestamp + 60));
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA32 paymaster expired or not due");
        _handleOp(op);

        vm.warp(block.timestamp + 61);
        _handleOp(op);
        assertEq(recorder.lastTag(), bytes32("early"));
    }

    function test_handleOps_wrongPaymasterDataLength_AA33() public {
        PackedUserOperation memory op = _recordOp("short");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        bytes memory full = op.paymasterAndData;

        // One byte short (a 64-byte compact signature is not accepted either).
        bytes memory shorter = new bytes(128);
        for (uint256 i; i < 128; i++) {
            shorter[i] = full[i];
        }
        op.paymasterAndData = shorter;
        _signUserOp(op, ownerPk);
        _expectFailedOpWithRevert(
            "AA33 reverted", abi.encodeWithSelector(SponsorPaymaster.InvalidPaymasterDataLength.selector, 128)
        );
        _handleOp(op);

        // Trailing garbage.
        op.paymasterAndData = abi.encodePacked(full, hex"00");
        _signUserOp(op, ownerPk);
        _expectFailedOpWithRevert(
            "AA33 reverted", abi.encodeWithSelector(SponsorPaymaster.InvalidPaymasterDataLength.selector, 130)
        );
        _handleOp(op);

        // Only the static fields.
        op.paymasterAndData = abi.encodePacked(address(paymaster), PM_VERIFICATION_GAS, PM_POST_OP_GAS);
        _signUserOp(op, ownerPk);
        _expectFailedOpWithRevert(
            "AA33 reverted", abi.encodeWithSelector(SponsorPaymaster.InvalidPaymasterDataLength.selector, 52)
        );
        _handleOp(op);
    }

    function test_handleOps_depositTooLow_AA31() public {
        vm.prank(pmOwner);
        paymaster.withdrawTo(payable(pmOwner), DEPOSIT);
        PackedUserOperation memory op = _recordOp("broke");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA31 paymaster deposit too low");
        _handleOp(op);
    }

    function test_signerRotation() public {
        (address newSigner, uint256 newPk) = makeAddrAndKey("rotated signer");

        vm.prank(makeAddr("stranger"));
        vm.expectRevert(
            abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, makeAddr("stranger"))
        );
        paymaster.setSigner(newSigner);

        vm.prank(pmOwner);
        vm.expectRevert(SponsorPaymaster.ZeroAddress.selector);
        paymaster.setSigner(address(0));

        vm.expectEmit(true, true, false, false, address(paymaster));
        emit SignerChanged(signerAddr, newSigner);
        vm.prank(pmOwner);
        paymaster.setSigner(newSigner);
        assertEq(paymaster.signer(), newSigner);

        (uint48 until, uint48 afterTs) = _window();

        // The old signer's sponsorship stops working at once.
        PackedUserOperation memory op = _recordOp("old");
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
        _expectFailedOp("AA34 signature error");
        _handleOp(op);

        // The new signer's works.
        op = _recordOp("new");
        _sponsor(op, paymaster, newPk, until, afterTs);
        _signUserOp(op, ownerPk);
        _handleOp(op);
        assertEq(recorder.lastTag(), bytes32("new"));
        assertLt(paymaster.getDeposit(), DEPOSIT);
    }

    function test_handleOps_replayOfSponsoredOp_AA25() public {
        PackedUserOperation memory op = _recordOp("once");
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
        _handleOp(op);
        _expectFailedOp("AA25 invalid account nonce");
        _handleOp(op);
        assertEq(recorder.calls(), 1);
    }

    // ---------------------------------------------------------------------------------------------
    // Attack: an EOA bundler with a sponsor-signed op (issue 11 hole 2)
    // ---------------------------------------------------------------------------------------------

    /// @dev What the EntryPoint may take from the deposit for `op` at most: every gas limit the
    /// sponsor signed (account verification and call, paymaster verification and postOp,
    /// preVerificationGas) at the signed maxFeePerGas.
    function _signedBound(PackedUserOperation memory op) internal pure returns (uint256) {
        uint256 verification = uint256(op.accountGasLimits) >> 128;
        uint256 call = uint128(uint256(op.accountGasLimits));
        bytes memory pmd = op.paymasterAndData;
        uint256 pmGas;
        assembly ("memory-safe") {
            pmGas := mload(add(pmd, 52)) // bytes 20..51: pmVerificationGasLimit ‖ pmPostOpGasLimit
        }
        uint256 maxFee = uint128(uint256(op.gasFees));
        return (verification + call + (pmGas >> 128) + uint128(pmGas) + op.preVerificationGas) * maxFee;
    }

    /// @dev `op` sponsored and signed by the member owner, calling a target that burns its whole
    /// callGasLimit: the costliest thing the attacker can submit unchanged.
    function _costliestSponsoredOp() internal returns (PackedUserOperation memory op) {
        GasBurner burner = new GasBurner();
        op = _userOp(address(member), _executeCall(address(burner), 0, abi.encodeCall(GasBurner.burn, ())));
        (uint48 until, uint48 afterTs) = _window();
        _sponsor(op, paymaster, signerPk, until, afterTs);
        _signUserOp(op, ownerPk);
    }

    function _handleOpAs(address attacker, address payable attackerBeneficiary, PackedUserOperation memory op)
        internal
    {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.prank(attacker, attacker);
        entryPoint.handleOps(ops, attackerBeneficiary);
    }

    /// @dev (a) The attacker submits the signed op unchanged from its own EOA to its own
    /// beneficiary, with a gas price and a base fee far above what the sponsor signed. The
    /// EntryPoint charges min(maxFeePerGas, priority + basefee) per gas and never more gas than
    /// the signed limits, so the deposit drops by at most the signed bound, and all of what it
    /// drops goes to the attacker's beneficiary (what the operator's gas budget must cover).
    function testAttack_bundlerTakesAtMostTheSignedBound() public {
        address attacker = makeAddr("attacker bundler");
        address payable loot = payable(makeAddr("attacker beneficiary"));
        PackedUserOperation memory op = _costliestSponsoredOp();
        uint256 bound = _signedBound(op);
        assertEq(
            bound,
            (VERIFICATION_GAS + CALL_GAS + PM_VERIFICATION_GAS + PM_POST_OP_GAS + PRE_VERIFICATION_GAS)
                * GAS_PRICE
        );

        vm.txGasPrice(10_000 gwei);
        vm.fee(5_000 gwei);
        uint256 before = paymaster.getDeposit();
        _handleOpAs(attacker, loot, op);
        uint256 drained = before - paymaster.getDeposit();

        assertEq(entryPoint.getNonce(address(member), 0), 1, "the op was included (and failed inside)");
        assertLe(drained, bound, "never more than the signed bound");
        assertGt(drained, bound / 2, "the op really spent its call gas: the bound is not vacuous");
        assertEq(loot.balance, drained, "everything drained went to the attacker's beneficiary");
        emit log_named_uint("signed bound (wei)", bound);
        emit log_named_uint("deposit drop (wei)", drained);

        // The same op once more: the nonce is spent, nothing moves.
        before = paymaster.getDeposit();
        _expectFailedOp("AA25 invalid account nonce");
        _handleOpAs(attacker, loot, op);
        assertEq(paymaster.getDeposit(), before);
    }

    /// @dev (b) The attacker (here even holding the member's owner key, so the account signature
    /// stays valid) raises one gas field or fee of the signed op at a time: the sponsor signature
    /// no longer matches (AA34) and the deposit does not move.
    function testAttack_bundlerRaisesSignedGasOrFee_AA34() public {
        address attacker = makeAddr("attacker bundler");
        address payable loot = payable(makeAddr("attacker beneficiary"));
        PackedUserOperation memory signed = _costliestSponsoredOp();
        vm.txGasPrice(10_000 gwei);
        vm.fee(5_000 gwei);
        for (uint256 f; f < 7; ++f) {
            PackedUserOperation memory op = _copy(signed);
            uint256 v = uint256(op.accountGasLimits) >> 128;
            uint256 c = uint128(uint256(op.accountGasLimits));
            uint256 prio = uint256(op.gasFees) >> 128;
            uint256 maxFee = uint128(uint256(op.gasFees));
            if (f == 0) op.accountGasLimits = _packGas(uint128(v * 10), uint128(c));
            if (f == 1) op.accountGasLimits = _packGas(uint128(v), uint128(c * 10));
            if (f == 2) _setPaymasterGas(op, PM_VERIFICATION_GAS * 10, PM_POST_OP_GAS);
            if (f == 3) _setPaymasterGas(op, PM_VERIFICATION_GAS, 1_000_000);
            if (f == 4) op.preVerificationGas *= 10;
            if (f == 5) op.gasFees = _packGas(uint128(prio), uint128(maxFee * 1000));
            if (f == 6) op.gasFees = _packGas(uint128(prio * 1000), uint128(maxFee * 1000));
            _signUserOp(op, ownerPk);

            uint256 before = paymaster.getDeposit();
            _expectFailedOp("AA34 signature error");
            _handleOpAs(attacker, loot, op);
            assertEq(paymaster.getDeposit(), before, vm.toString(f));
            assertEq(loot.balance, 0, vm.toString(f));
        }
        assertEq(entryPoint.getNonce(address(member), 0), 0, "no variant was included");
    }

    function _copy(PackedUserOperation memory op) internal pure returns (PackedUserOperation memory o) {
        o = PackedUserOperation({
            sender: op.sender,
            nonce: op.nonce,
            initCode: op.initCode,
            callData: op.callData,
            accountGasLimits: op.accountGasLimits,
            preVerificationGas: op.preVerificationGas,
            gasFees: op.gasFees,
            paymasterAndData: bytes.concat(op.paymasterAndData),
            signature: op.signature
        });
    }

    /// @dev Rewrites the paymaster gas words of paymasterAndData, keeping the sponsor signature.
    function _setPaymasterGas(PackedUserOperation memory op, uint128 verification, uint128 postOp)
        internal
        pure
    {
        bytes memory pmd = op.paymasterAndData;
        bytes32 word = bytes32((uint256(verification) << 128) | postOp);
        assembly ("memory-safe") {
            mstore(add(pmd, 52), word)
        }
    }
}
