// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {IAccount} from "@account-abstraction/contracts/interfaces/IAccount.sol";
import {PackedUserOperation} from "@account-abstraction/contracts/interfaces/PackedUserOperation.sol";

import {AppBootInfo} from "../interfaces/ClusterTypes.sol";
import {IAppBootGate, IClusterMember} from "../interfaces/IClusterMember.sol";
import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {IAttestor} from "../interfaces/IAttestor.sol";
import {LibBinding} from "../libraries/LibBinding.sol";

/// @title ClusterMember — one per node (DESIGN §3.7)
/// @notice One address that is at once the node's dstack app id, the cluster's `msg.sender` for
/// everything the node does, and an ERC-4337 v0.7 account. Deployed behind an ERC-1967 proxy,
/// either by {ClusterMemberFactory} (`initialize`) or by upgrading a stock dstack app proxy
/// ("path A", `reinitializeFromDstackApp`). Upgrades are authorised by the cluster owner.
///
/// Validation never touches storage outside this account (only `cluster`, `owner` and the
/// bootstrap rule in its own namespace) and calls no other contract, so it stays within the
/// ERC-7562 rules for unstaked accounts.
///
/// Bootstrap (no owner yet): the one acceptable user operation is
/// `execute(cluster, 0, register(proof, address(this), x, wg, ed))`, where `register` is the
/// cluster's attestor's registration function (dstack: `dstack_register`), signed (EIP-191 over the
/// userOp hash) by the same key that produced the proof's binding signature over
/// `LibBinding.bindHash(cluster, address(this), x, wg, ed)`. The member knows no attestation method:
/// when it binds it asks the cluster ({IAttestor-bootstrapRule}) for the registration selector and
/// the binding signature's field in the proof tuple, and keeps both in its own storage. The rest of
/// the proof is verified by the cluster's attestor facet when the call executes, which then installs
/// that key as this account's owner through {setOwnerFromCluster}.
contract ClusterMember is IClusterMember, IAccount, Initializable, UUPSUpgradeable {
    /// @dev Initializable version both binding paths move to. A factory member goes 0 → 2 in
    /// `initialize`; a stock dstack app (initialised at version 1) goes 1 → 2 in
    /// `reinitializeFromDstackApp`. Either way the binding can happen exactly once.
    uint64 internal constant BINDING_VERSION = 2;

    /// @dev Returned by `validateUserOp` on a bad owner signature (ERC-4337 SIG_VALIDATION_FAILED).
    uint256 internal constant SIG_VALIDATION_FAILED = 1;

    /// @custom:storage-location erc7201:attestmesh.storage.ClusterMember
    struct ClusterMemberStorage {
        address cluster;
        address owner;
        // ---- appended: the cluster's bootstrap rule, read at bind time (IAttestor.bootstrapRule).
        // Zero selector: the cluster gave none, so no bootstrap op validates.
        bytes4 registerSelector;
        uint8 bindingSignatureField;
    }

    /// @dev keccak256(abi.encode(uint256(keccak256("attestmesh.storage.ClusterMember")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant STORAGE_SLOT =
        0xeaff3df3ee5169d005a03d5a55e3db27753713bb429f09c0a0f5b446a482f300;

    address private immutable _ENTRY_POINT;

    modifier onlyEntryPoint() {
        if (msg.sender != _ENTRY_POINT) revert OnlyEntryPoint();
        _;
    }

    /// @param entryPoint_ the ERC-4337 v0.7 EntryPoint (canonically
    /// 0x0000000071727De22E5E9d8BAf0edAc6f37da032).
    constructor(address entryPoint_) {
        if (entryPoint_ == address(0)) revert ZeroAddress();
        _ENTRY_POINT = entryPoint_;
        _disableInitializers();
    }

    receive() external payable {}

    // ---------------------------------------------------------------------------------------------
    // Binding
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IClusterMember
    /// @dev Factory path: runs inside the proxy's constructor.
    function initialize(address cluster_) external reinitializer(BINDING_VERSION) {
        _bind(cluster_);
    }

    /// @inheritdoc IClusterMember
    /// @dev Path A: the stock dstack app's owner calls
    /// `upgradeToAndCall(clusterMemberImpl, abi.encodeCall(reinitializeFromDstackApp, (cluster)))`
    /// on the app proxy; the stock app's own upgrade authorisation guards that call. Always
    /// upgrade and reinitialise atomically: between a bare upgrade and a separate call anybody
    /// could bind the proxy to a cluster of their choosing.
    function reinitializeFromDstackApp(address cluster_) external reinitializer(BINDING_VERSION) {
        _bind(cluster_);
    }

    function _bind(address cluster_) private {
        if (cluster_ == address(0)) revert ZeroAddress();
        ClusterMemberStorage storage $ = _s();
        $.cluster = cluster_;
        ($.registerSelector, $.bindingSignatureField) = _readBootstrapRule(cluster_);
        emit ClusterBound(cluster_);
    }

    /// @dev Reads the cluster's bootstrap rule once, here and not in validation (ERC-7562 forbids an
    /// unstaked account reading the cluster's storage then). A cluster that does not answer, or
    /// answers malformed data, leaves the rule zero: the member is bound but can never bootstrap.
    /// Deploying a member through a userOp's initCode therefore reads the cluster during
    /// validation, which ERC-7562 allows only a staked factory; AttestMesh deploys members with a
    /// plain transaction.
    function _readBootstrapRule(address cluster_) private view returns (bytes4 selector, uint8 field) {
        (bool ok, bytes memory ret) = cluster_.staticcall(abi.encodeCall(IAttestor.bootstrapRule, ()));
        if (!ok || ret.length != 64) return (bytes4(0), 0);
        (bytes32 selWord, uint256 fieldWord) = abi.decode(ret, (bytes32, uint256));
        if (uint256(selWord) << 32 != 0 || fieldWord > type(uint8).max) return (bytes4(0), 0);
        return (bytes4(selWord), uint8(fieldWord));
    }

    /// @inheritdoc IClusterMember
    /// @dev The cluster calls this once registration has verified the proof (DESIGN §3.5 step 5).
    function setOwnerFromCluster(address owner_) external {
        ClusterMemberStorage storage $ = _s();
        if (msg.sender != $.cluster) revert OnlyCluster();
        if ($.owner != address(0)) revert OwnerAlreadySet();
        if (owner_ == address(0)) revert ZeroAddress();
        $.owner = owner_;
        emit OwnerSet(owner_);
    }

    // ---------------------------------------------------------------------------------------------
    // ERC-4337
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IAccount
    function validateUserOp(
        PackedUserOperation calldata userOp,
        bytes32 userOpHash,
        uint256 missingAccountFunds
    ) external override onlyEntryPoint returns (uint256 validationData) {
        ClusterMemberStorage storage $ = _s();
        address owner_ = $.owner;
        if (owner_ == address(0)) {
            _validateBootstrap($.cluster, userOp, userOpHash);
        } else {
            (address signer, ECDSA.RecoverError err,) =
                ECDSA.tryRecover(MessageHashUtils.toEthSignedMessageHash(userOpHash), userOp.signature);
            if (err != ECDSA.RecoverError.NoError || signer != owner_) {
                validationData = SIG_VALIDATION_FAILED;
            }
        }
        if (missingAccountFunds != 0) {
            // The EntryPoint checks the deposit; a failed transfer surfaces as "AA21 didn't pay prefund".
            (bool ok,) = payable(msg.sender).call{value: missingAccountFunds}("");
            ok;
        }
    }

    /// @inheritdoc IClusterMember
    function execute(address target, uint256 value, bytes calldata data) external onlyEntryPoint {
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }

    /// @dev Accepts exactly `execute(cluster, 0, dstack_register(proof, address(this), x, wg, ed))`
    /// whose userOp signer is the binding signer of the proof; reverts `InvalidBootstrapCall()`
    /// for anything else. The calldata is parsed by hand with a bounds check before every read,
    /// so malformed input can only ever produce `InvalidBootstrapCall()`.
    function _validateBootstrap(address cluster_, PackedUserOperation calldata userOp, bytes32 userOpHash)
        private
        view
    {
        // An unbound account (the implementation itself, or a proxy nobody initialised) has no
        // cluster to register with; without this, `execute(address(0), 0, register(...))`
        // signed by any key would validate on it.
        if (cluster_ == address(0)) revert InvalidBootstrapCall();
        ClusterMemberStorage storage $ = _s();
        bytes4 selector = $.registerSelector;
        if (selector == bytes4(0)) revert InvalidBootstrapCall();
        address bindingSigner = _bindingSigner(
            cluster_, _registerArgs(cluster_, selector, userOp.callData), $.bindingSignatureField
        );
        if (bindingSigner == address(0) || _recover(userOpHash, userOp.signature) != bindingSigner) {
            revert InvalidBootstrapCall();
        }
    }

    /// @dev Checks `cd` is `execute(cluster_, 0, register(...))`, `register` being the selector of
    /// the cluster's bootstrap rule, and returns the ABI-encoded arguments of the inner call.
    function _registerArgs(address cluster_, bytes4 selector, bytes calldata cd)
        private
        pure
        returns (bytes calldata reg)
    {
        if (cd.length < 4 || bytes4(cd[:4]) != IClusterMember.execute.selector) {
            revert InvalidBootstrapCall();
        }
        bytes calldata args = cd[4:];
        // execute(address target, uint256 value, bytes data): whole-word compares, so dirty upper
        // bits in the address are rejected too.
        if (_word(args, 0) != uint256(uint160(cluster_))) revert InvalidBootstrapCall();
        if (_word(args, 32) != 0) revert InvalidBootstrapCall();
        bytes calldata inner = _bytesAt(args, _word(args, 64));
        if (inner.length < 4 || bytes4(inner[:4]) != selector) {
            revert InvalidBootstrapCall();
        }
        reg = inner[4:];
    }

    /// @dev From the registration arguments (the IAttestor convention): checks memberContract ==
    /// this and returns the signer of the proof's binding signature over this member's bind hash
    /// (0 if unrecoverable).
    function _bindingSigner(address cluster_, bytes calldata reg, uint8 bindingSignatureField)
        private
        view
        returns (address)
    {
        // register(P proof, address memberContract, bytes32 x, bytes32 wg, bytes32 ed)
        if (_word(reg, 32) != uint256(uint160(address(this)))) revert InvalidBootstrapCall();
        bytes32 bindHash = LibBinding.bindHash(
            cluster_,
            address(this),
            bytes32(_word(reg, 64)),
            bytes32(_word(reg, 96)),
            bytes32(_word(reg, 128))
        );
        // The proof is a dynamic tuple; head word `bindingSignatureField` is the offset (relative
        // to the tuple) of the binding signature (dstack: DstackProof.bindingSignature, field 5).
        uint256 proofStart = _word(reg, 0);
        if (proofStart > reg.length) revert InvalidBootstrapCall();
        bytes calldata proof = reg[proofStart:];
        return _recover(bindHash, _bytesAt(proof, _word(proof, uint256(bindingSignatureField) * 32)));
    }

    /// @dev EIP-191 recovery that never reverts; address(0) on any failure.
    function _recover(bytes32 hash, bytes calldata signature) private pure returns (address signer) {
        ECDSA.RecoverError err;
        (signer, err,) = ECDSA.tryRecover(MessageHashUtils.toEthSignedMessageHash(hash), signature);
        if (err != ECDSA.RecoverError.NoError) signer = address(0);
    }

    /// @dev The 32-byte word at `offset` of `data`, or `InvalidBootstrapCall()` if out of bounds.
    function _word(bytes calldata data, uint256 offset) private pure returns (uint256) {
        if (offset > data.length || data.length - offset < 32) revert InvalidBootstrapCall();
        return uint256(bytes32(data[offset:offset + 32]));
    }

    /// @dev The ABI `bytes` whose length word sits at `offset` of `data`, bounds-checked.
    function _bytesAt(bytes calldata data, uint256 offset) private pure returns (bytes calldata) {
        uint256 len = _word(data, offset);
        uint256 start = offset + 32; // cannot overflow: _word checked offset + 32 <= data.length
        if (len > data.length - start) revert InvalidBootstrapCall();
        return data[start:start + len];
    }

    // ---------------------------------------------------------------------------------------------
    // dstack app id
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IClusterMember
    /// @dev This contract is the node's dstack app id, so the KMS asks it; the cluster's boot
    /// gate (DstackFacet) answers.
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        return IAppBootGate(_s().cluster).isAppAllowed(bootInfo);
    }

    // ---------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------

    /// @inheritdoc IClusterMember
    function cluster() external view returns (address) {
        return _s().cluster;
    }

    /// @inheritdoc IClusterMember
    function owner() external view returns (address) {
        return _s().owner;
    }

    /// @inheritdoc IClusterMember
    function bootstrapRule() external view returns (bytes4 registerSelector, uint8 bindingSignatureField) {
        ClusterMemberStorage storage $ = _s();
        return ($.registerSelector, $.bindingSignatureField);
    }

    /// @inheritdoc IClusterMember
    function entryPoint() external view returns (address) {
        return _ENTRY_POINT;
    }

    // ---------------------------------------------------------------------------------------------
    // Upgrades
    // ---------------------------------------------------------------------------------------------

    /// @dev Only the cluster owner (as the cluster reports it) may upgrade a member.
    function _authorizeUpgrade(address) internal view override {
        address cluster_ = _s().cluster;
        if (cluster_ == address(0) || msg.sender != IAttestFacet(cluster_).clusterOwner()) {
            revert OnlyClusterOwner();
        }
    }

    function _s() private pure returns (ClusterMemberStorage storage $) {
        assembly {
            $.slot := STORAGE_SLOT
        }
    }
}
