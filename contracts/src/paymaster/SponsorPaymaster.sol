// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {BasePaymaster} from "@account-abstraction/contracts/core/BasePaymaster.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

/// @title SponsorPaymaster — the AttestMesh verifying paymaster (DESIGN §3.8, §10)
/// @notice Pays for a user operation when the sponsor service's signer signed it. The policy
/// (which senders, which calls, how often) lives in the sponsor service; this contract only
/// checks the signature and the validity window. Sponsorship is a gas policy gate, not a
/// security boundary.
///
/// `paymasterAndData` layout (exactly 129 bytes):
///
///     offset  len  field
///          0   20  paymaster address
///         20   16  paymasterVerificationGasLimit (uint128, big-endian)
///         36   16  paymasterPostOpGasLimit       (uint128, big-endian)
///         52    6  validUntil (uint48, big-endian; 0 = no expiry)
///         58    6  validAfter (uint48, big-endian)
///         64   65  signature  r ‖ s ‖ v, v ∈ {27, 28}, low s
///
/// The signature is the signer's EIP-191 personal-sign signature, i.e. over
/// `keccak256("\x19Ethereum Signed Message:\n32" ‖ getHash(userOp, validUntil, validAfter))`,
/// where `getHash` is keccak256 of the ABI encoding (every field one 32-byte word, 12 words,
/// 384 bytes) of:
///
///     word  field
///        0  sender                         address, left-padded
///        1  nonce                          uint256
///        2  keccak256(initCode)            bytes32
///        3  keccak256(callData)            bytes32
///        4  accountGasLimits               bytes32 (verificationGasLimit ‖ callGasLimit)
///        5  paymasterAndData[20:52]        bytes32 (pmVerificationGasLimit ‖ pmPostOpGasLimit)
///        6  preVerificationGas             uint256
///        7  gasFees                        bytes32 (maxPriorityFeePerGas ‖ maxFeePerGas)
///        8  chain id                       uint256
///        9  this paymaster's address       address, left-padded
///       10  validUntil                     uint48, left-padded
///       11  validAfter                     uint48, left-padded
///
/// The signature covers neither `userOp.signature` nor itself, so it can be obtained before the
/// account signs (the v0.7 userOp hash commits to the whole paymasterAndData).
///
/// Staking: the signer lives in storage (so it can be rotated), which ERC-7562 allows a paymaster
/// during validation only when it is staked — the owner must `addStake` before public bundlers
/// accept its operations.
contract SponsorPaymaster is BasePaymaster, Ownable2Step {
    uint256 private constant VALID_UNTIL_OFFSET = PAYMASTER_DATA_OFFSET; // 52
    uint256 private constant VALID_AFTER_OFFSET = VALID_UNTIL_OFFSET + 6; // 58
    uint256 private constant SIGNATURE_OFFSET = VALID_AFTER_OFFSET + 6; // 64
    uint256 private constant SIGNATURE_LENGTH = 65;
    /// @notice The only accepted `paymasterAndData` length.
    uint256 public constant PAYMASTER_AND_DATA_LENGTH = SIGNATURE_OFFSET + SIGNATURE_LENGTH; // 129

    /// @notice The sponsor service's key.
    address public signer;

    error InvalidPaymasterDataLength(uint256 length);
    error ZeroAddress();

    event SignerChanged(address indexed previousSigner, address indexed newSigner);

    constructor(IEntryPoint entryPoint_, address owner_, address signer_) BasePaymaster(entryPoint_) {
        if (owner_ == address(0) || signer_ == address(0)) revert ZeroAddress();
        _transferOwnership(owner_);
        signer = signer_;
        emit SignerChanged(address(0), signer_);
    }

    /// @notice Rotate the sponsor signer. Signatures by the previous signer stop validating at once.
    function setSigner(address newSigner) external onlyOwner {
        if (newSigner == address(0)) revert ZeroAddress();
        emit SignerChanged(signer, newSigner);
        signer = newSigner;
    }

    /// @notice The hash the sponsor signer signs (EIP-191); the layout is in the contract doc.
    function getHash(PackedUserOperation calldata userOp, uint48 validUntil, uint48 validAfter)
        public
        view
        returns (bytes32)
    {
        if (userOp.paymasterAndData.length < PAYMASTER_DATA_OFFSET) {
            revert InvalidPaymasterDataLength(userOp.paymasterAndData.length);
        }
        // Two encodes concatenated equal one abi.encode of all twelve static words; split only
        // to keep the legacy code generator within its stack limit.
        return keccak256(
            bytes.concat(
                abi.encode(
                    userOp.sender,
                    userOp.nonce,
                    keccak256(userOp.initCode),
                    keccak256(userOp.callData),
                    userOp.accountGasLimits,
                    bytes32(userOp.paymasterAndData[PAYMASTER_VALIDATION_GAS_OFFSET:PAYMASTER_DATA_OFFSET])
                ),
                abi.encode(
                    userOp.preVerificationGas,
                    userOp.gasFees,
                    block.chainid,
                    address(this),
                    validUntil,
                    validAfter
                )
            )
        );
    }

    /// @notice Split the paymaster-specific part of `paymasterAndData`; reverts on a wrong length.
    function parsePaymasterAndData(bytes calldata paymasterAndData)
        public
        pure
        returns (uint48 validUntil, uint48 validAfter, bytes calldata signature)
    {
        if (paymasterAndData.length != PAYMASTER_AND_DATA_LENGTH) {
            revert InvalidPaymasterDataLength(paymasterAndData.length);
        }
        validUntil = uint48(bytes6(paymasterAndData[VALID_UNTIL_OFFSET:VALID_AFTER_OFFSET]));
        validAfter = uint48(bytes6(paymasterAndData[VALID_AFTER_OFFSET:SIGNATURE_OFFSET]));
        signature = paymasterAndData[SIGNATURE_OFFSET:];
    }

    /// @dev A bad signature yields sigFailed = 1 (never a revert), so bundlers' simulation can
    /// tell it apart; the EntryPoint turns it into "AA34 signature error" and enforces the window
    /// ("AA32 paymaster expired or not due").
    function _validatePaymasterUserOp(PackedUserOperation calldata userOp, bytes32, uint256)
        internal
        view
        override
        returns (bytes memory context, uint256 validationData)
    {
        (uint48 validUntil, uint48 validAfter, bytes calldata signature) =
            parsePaymasterAndData(userOp.paymasterAndData);
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(getHash(userOp, validUntil, validAfter));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        bool sigFailed = err != ECDSA.RecoverError.NoError || recovered != signer;
        validationData = (sigFailed ? 1 : 0) | (uint256(validUntil) << 160) | (uint256(validAfter) << 208);
        context = "";
    }

    // Ownable (from BasePaymaster) and Ownable2Step both define these; the two-step versions win.

    function transferOwnership(address newOwner) public override(Ownable, Ownable2Step) onlyOwner {
        Ownable2Step.transferOwnership(newOwner);
    }

    function _transferOwnership(address newOwner) internal override(Ownable, Ownable2Step) {
        Ownable2Step._transferOwnership(newOwner);
    }
}
