// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";
import {SponsorPaymaster} from "../../src/paymaster/SponsorPaymaster.sol";

/// @notice Puts the real, published ERC-4337 EntryPoint v0.7 at its canonical address inside the
/// forge EVM and offers the userOp plumbing the member and paymaster tests share.
///
/// The runtime code cannot simply be etched: the EntryPoint's constructor deploys its
/// SenderCreator and keeps its address in an immutable. So the artifact's creation code is run
/// through the deterministic deployment proxy with the published salt, exactly as on a live chain,
/// and the resulting address is checked against the canonical one.
abstract contract EntryPointDeployer is Test {
    address internal constant CANONICAL_ENTRY_POINT = 0x0000000071727De22E5E9d8BAf0edAc6f37da032;
    address internal constant DETERMINISTIC_DEPLOYER = 0x4e59b44847b379578588920cA78FbF26c0B4956C;
    bytes32 internal constant ENTRY_POINT_V07_SALT =
        0x90d8084deab30c2a37c45e8d47f49f2f7965183cb6990a98943ef94940681de3;
    /// @dev Runtime code of Arachnid's deterministic deployment proxy: calldata = salt ‖ initcode,
    /// returns the 20-byte address of the CREATE2-deployed contract.
    bytes internal constant DETERMINISTIC_DEPLOYER_CODE =
        hex"7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3";
    string internal constant ENTRY_POINT_ARTIFACT =
        "../node_modules/@account-abstraction/contracts/artifacts/EntryPoint.json";

    IEntryPoint internal entryPoint;
    address payable internal beneficiary = payable(makeAddr("beneficiary"));
    address internal bundler = makeAddr("bundler");

    function _deployEntryPoint() internal returns (IEntryPoint) {
        if (CANONICAL_ENTRY_POINT.code.length == 0) {
            if (DETERMINISTIC_DEPLOYER.code.length == 0) {
                vm.etch(DETERMINISTIC_DEPLOYER, DETERMINISTIC_DEPLOYER_CODE);
            }
            bytes memory initCode = vm.parseJsonBytes(vm.readFile(ENTRY_POINT_ARTIFACT), ".bytecode");
            (bool ok, bytes memory ret) =
                DETERMINISTIC_DEPLOYER.call(abi.encodePacked(ENTRY_POINT_V07_SALT, initCode));
            require(ok && ret.length == 20, "EntryPoint deployment failed");
            require(address(bytes20(ret)) == CANONICAL_ENTRY_POINT, "EntryPoint not at its canonical address");
        }
        entryPoint = IEntryPoint(CANONICAL_ENTRY_POINT);
        return entryPoint;
    }

    // ---------------------------------------------------------------------------------------------
    // UserOperation plumbing
    // ---------------------------------------------------------------------------------------------

    uint128 internal constant VERIFICATION_GAS = 300_000;
    uint128 internal constant CALL_GAS = 1_000_000;
    uint128 internal constant PM_VERIFICATION_GAS = 100_000;
    uint128 internal constant PM_POST_OP_GAS = 0;
    uint256 internal constant PRE_VERIFICATION_GAS = 50_000;
    /// @dev maxPriorityFee == maxFee, so the EntryPoint charges exactly this price per gas
    /// whatever the base fee: the paymaster's deposit really moves.
    uint128 internal constant GAS_PRICE = 1 gwei;

    function _packGas(uint128 high, uint128 low) internal pure returns (bytes32) {
        return bytes32((uint256(high) << 128) | uint256(low));
    }

    /// @notice An unsigned, unsponsored userOp from `sender` carrying `callData`.
    function _userOp(address sender, bytes memory callData)
        internal
        view
        returns (PackedUserOperation memory op)
    {
        op.sender = sender;
        op.nonce = entryPoint.getNonce(sender, 0);
        op.initCode = "";
        op.callData = callData;
        op.accountGasLimits = _packGas(VERIFICATION_GAS, CALL_GAS);
        op.preVerificationGas = PRE_VERIFICATION_GAS;
        op.gasFees = _packGas(GAS_PRICE, GAS_PRICE);
        op.paymasterAndData = "";
        op.signature = "";
    }

    function _executeCall(address target, uint256 value, bytes memory data)
        internal
        pure
        returns (bytes memory)
    {
        return abi.encodeCall(IClusterMember.execute, (target, value, data));
    }

    /// @notice r ‖ s ‖ v EIP-191 signature of `hash` by `pk`.
    function _personalSign(uint256 pk, bytes32 hash) internal pure returns (bytes memory) {
        bytes32 digest = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", hash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @notice Signs the op's EntryPoint hash (EIP-191) with `pk` and stores it in op.signature.
    function _signUserOp(PackedUserOperation memory op, uint256 pk) internal view {
        op.signature = _personalSign(pk, entryPoint.getUserOpHash(op));
    }

    /// @notice Fills op.paymasterAndData for `paymaster` with a window and the sponsor signature
    /// of `signerPk` (call before the account signs: the userOp hash commits to it).
    function _sponsor(
        PackedUserOperation memory op,
        SponsorPaymaster paymaster,
        uint256 signerPk,
        uint48 validUntil,
        uint48 validAfter
    ) internal view {
        // The hash does not cover the signature bytes, so sign over a placeholder of the final length.
        op.paymasterAndData = abi.encodePacked(
            address(paymaster), PM_VERIFICATION_GAS, PM_POST_OP_GAS, validUntil, validAfter, new bytes(65)
        );
        bytes memory sig = _personalSign(signerPk, paymaster.getHash(op, validUntil, validAfter));
        op.paymasterAndData = abi.encodePacked(
            address(paymaster), PM_VERIFICATION_GAS, PM_POST_OP_GAS, validUntil, validAfter, sig
        );
    }

    function _handleOp(PackedUserOperation memory op) internal {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.prank(bundler, bundler);
        entryPoint.handleOps(ops, beneficiary);
    }

    /// @notice Like `_handleOp`, returning the gas the bundler's handleOps call used.
    function _handleOpMeasured(PackedUserOperation memory op) internal returns (uint256 gasUsed) {
        PackedUserOperation[] memory ops = new PackedUserOperation[](1);
        ops[0] = op;
        vm.prank(bundler, bundler);
        uint256 before = gasleft();
        entryPoint.handleOps(ops, beneficiary);
        gasUsed = before - gasleft();
    }

    function _expectFailedOp(string memory reason) internal {
        vm.expectRevert(abi.encodeWithSelector(IEntryPoint.FailedOp.selector, 0, reason));
    }

    function _expectFailedOpWithRevert(string memory reason, bytes memory inner) internal {
        vm.expectRevert(abi.encodeWithSelector(IEntryPoint.FailedOpWithRevert.selector, 0, reason, inner));
    }
}
