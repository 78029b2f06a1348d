// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {IAttestor} from "../interfaces/IAttestor.sol";
import {AppBootInfo, DstackProof, MemberRecord} from "../interfaces/ClusterTypes.sol";
import {IClusterMember, IClusterMemberFactory} from "../interfaces/IClusterMember.sol";
import {IDstackFacet} from "../interfaces/IDstackFacet.sol";
import {LibAttestStorage} from "../libraries/LibAttestStorage.sol";
import {LibBinding} from "../libraries/LibBinding.sol";
import {LibDstackStorage} from "../libraries/LibDstackStorage.sol";
import {LibHex} from "../libraries/LibHex.sol";
import {Secp256k1} from "../libraries/Secp256k1.sol";

/// @notice The dstack attestor (DESIGN §3.5): admission policy, the KMS boot gate, and registration
/// from a KMS signature chain. The only contract that knows what dstack is (§3.6).
contract DstackFacet is IDstackFacet, IAttestor {
    /// @dev Index of `bindingSignature` in DstackProof (ownerPubkey, appPubkey, appSignature,
    /// kmsSignature, purpose, bindingSignature).
    uint8 internal constant BINDING_SIGNATURE_FIELD = 5;

    bytes internal constant KMS_DOMAIN = "dstack-kms-issued:";
    bytes32 internal constant TCB_UP_TO_DATE = keccak256("UpToDate");

    modifier onlyClusterOwner() {
        LibAttestStorage.enforceIsClusterOwner();
        _;
    }

    // ---------------------------------------------------------------- policy (cluster owner)

    function addComposeHash(bytes32 composeHash) external onlyClusterOwner {
        LibDstackStorage.s().composeHashes[composeHash] = true;
        emit ComposeHashAdded(composeHash);
    }

    function removeComposeHash(bytes32 composeHash) external onlyClusterOwner {
        LibDstackStorage.s().composeHashes[composeHash] = false;
        emit ComposeHashRemoved(composeHash);
    }

    function addDevice(bytes32 deviceId) external onlyClusterOwner {
        LibDstackStorage.s().devices[deviceId] = true;
        emit DeviceAdded(deviceId);
    }

    function removeDevice(bytes32 deviceId) external onlyClusterOwner {
        LibDstackStorage.s().devices[deviceId] = false;
        emit DeviceRemoved(deviceId);
    }

    function setAllowAnyDevice(bool allowAny) external onlyClusterOwner {
        LibDstackStorage.s().allowAnyDevice = allowAny;
        emit AllowAnyDeviceSet(allowAny);
    }

    function setRequireTcbUpToDate(bool required) external onlyClusterOwner {
        LibDstackStorage.s().requireTcbUpToDate = required;
        emit RequireTcbUpToDateSet(required);
    }

    /// @dev Zero is refused: it is what a failed ecrecover returns, so it must never be trusted.
    function addAllowedKmsRoot(address kmsRoot) external onlyClusterOwner {
        if (kmsRoot == address(0)) revert IAttestFacet.ZeroAddress();
        LibDstackStorage.s().kmsRoots[kmsRoot] = true;
        emit KmsRootAdded(kmsRoot);
    }

    function removeAllowedKmsRoot(address kmsRoot) external onlyClusterOwner {
        LibDstackStorage.s().kmsRoots[kmsRoot] = false;
        emit KmsRootRemoved(kmsRoot);
    }

    function addAllowedAppId(address appId) external onlyClusterOwner {
        if (appId == address(0)) revert IAttestFacet.ZeroAddress();
        LibDstackStorage.s().appIds[appId] = true;
        emit AppIdAdded(appId);
    }

    function removeAllowedAppId(address appId) external onlyClusterOwner {
        LibDstackStorage.s().appIds[appId] = false;
        emit AppIdRemoved(appId);
    }

    // ---------------------------------------------------------------- views

    function allowedComposeHashes(bytes32 composeHash) external view returns (bool) {
        return LibDstackStorage.s().composeHashes[composeHash];
    }

    function allowedDeviceIds(bytes32 deviceId) external view returns (bool) {
        return LibDstackStorage.s().devices[deviceId];
    }

    function allowAnyDevice() external view returns (bool) {
        return LibDstackStorage.s().allowAnyDevice;
    }

    function requireTcbUpToDate() external view returns (bool) {
        return LibDstackStorage.s().requireTcbUpToDate;
    }

    function allowedKmsRoots(address kmsRoot) external view returns (bool) {
        return LibDstackStorage.s().kmsRoots[kmsRoot];
    }

    function allowedAppIds(address appId) external view returns (bool) {
        return LibDstackStorage.s().appIds[appId];
    }

    function memberFactory() external view returns (address) {
        return LibDstackStorage.s().memberFactory;
    }

    // ---------------------------------------------------------------- boot gate

    /// @notice What the dstack KMS asks before it releases keys to a booting VM. Checks run in the
    /// documented order and the first failure names itself with a stable reason string.
    /// @dev The app id passes the third rung when it is allowlisted, a registered member of this
    /// cluster (DESIGN §3.5: "neither allowlisted nor a member"), or a factory member bound to this
    /// cluster — the same predicate as registration step 1, so a VM that can boot can register, and
    /// a registered member can always restart (re-derive its keys) while compose hash, device and TCB
    /// still allow it, even after its app id left the allowlist.
    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason)
    {
        LibDstackStorage.DstackStorage storage st = LibDstackStorage.s();
        if (!st.composeHashes[bootInfo.composeHash]) return (false, "compose hash not allowed");
        if (!st.allowAnyDevice && !st.devices[bootInfo.deviceId]) return (false, "device not allowed");
        if (
            LibAttestStorage.s().memberIdOf[bootInfo.appId] == bytes32(0)
                && !_isAdmissibleMemberContract(st, bootInfo.appId)
        ) return (false, "appId not allowlisted");
        if (st.requireTcbUpToDate && keccak256(bytes(bootInfo.tcbStatus)) != TCB_UP_TO_DATE) {
            return (false, "tcb not up to date");
        }
        return (true, "");
    }

    // ---------------------------------------------------------------- registration

    /// @inheritdoc IAttestor
    /// @dev dstack_register follows the IAttestor convention with the binding signature in
    /// DstackProof's sixth field.
    function bootstrapRule() external pure returns (bytes4 registerSelector, uint8 bindingSignatureField) {
        return (this.dstack_register.selector, BINDING_SIGNATURE_FIELD);
    }

    /// @notice Admits `memberContract` with the three public keys, given a dstack KMS signature chain
    /// KMS root → app key → owner key and the owner key's signature over the binding hash. Anyone may
    /// submit it: the proof, not msg.sender, authenticates.
    function dstack_register(
        DstackProof calldata proof,
        address memberContract,
        bytes32 xPubKey,
        bytes32 wgPubKey,
        bytes32 edPubKey
    ) external returns (bytes32 memberId) {
        // 1. The member contract is ours: from the trusted factory (bound here) or allowlisted.
        if (!_isAdmissibleMemberContract(LibDstackStorage.s(), memberContract)) revert NotOurMember();
        // 2.-3. KMS root → app key → owner key.
        address ownerKey = _verifySigChain(proof, memberContract);
        // 4. Binding: the owner key vouches for these keys, this cluster and this member contract.
        bytes32 bindDigest = MessageHashUtils.toEthSignedMessageHash(
            LibBinding.bindHash(address(this), memberContract, xPubKey, wgPubKey, edPubKey)
        );
        if (_recover(bindDigest, proof.bindingSignature) != ownerKey) revert BindingMismatch();

        // 5. Record through the method-neutral AttestFacet, then hand the account to the owner key.
        memberId = IAttestFacet(address(this))
            ._addMember(
                MemberRecord({
                attestorId: LibBinding.DSTACK_ATTESTOR_ID,
                memberContract: memberContract,
                xPubKey: xPubKey,
                wgPubKey: wgPubKey,
                edPubKey: edPubKey,
                registeredAt: uint64(block.number)
            })
            );
        IClusterMember(memberContract).setOwnerFromCluster(ownerKey);
        emit DstackMemberRegistered(memberId, ownerKey);
    }

    /// @dev Steps 2 and 3; returns the owner key's address. Both keys are decoded first so a
    /// malformed key fails with its own error before any signature is looked at.
    function _verifySigChain(DstackProof calldata proof, address memberContract)
        private
        view
        returns (address)
    {
        address appKey = Secp256k1.toAddress(proof.appPubkey);
        address ownerKey = Secp256k1.toAddress(proof.ownerPubkey);

        // 2. KMS link: a trusted KMS root issued this app key for exactly this app id.
        bytes32 kmsDigest = keccak256(abi.encodePacked(KMS_DOMAIN, memberContract, proof.appPubkey));
        address kmsSigner = _recover(kmsDigest, proof.kmsSignature);
        if (kmsSigner == address(0) || !LibDstackStorage.s().kmsRoots[kmsSigner]) revert InvalidSigChain();

        // 3. App link: the app key signed the owner key for `purpose`.
        bytes32 appDigest =
            keccak256(abi.encodePacked(proof.purpose, ":", LibHex.toHexNo0x(proof.ownerPubkey)));
        if (_recover(appDigest, proof.appSignature) != appKey) revert InvalidSigChain();
        return ownerKey;
    }

    /// @dev OpenZeppelin's recovery (65-byte signatures, v in {27,28}, low s); any failure maps to
    /// address(0), which never equals a decoded key's address nor an allowlisted root.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }

    /// @dev Allowlisted app ids are the owner's explicit choice ("path A" stock dstack apps). A
    /// factory member must also be bound to this cluster: the KMS boot gate it passed is the one of
    /// `cluster()`, so a member of another cluster must not slip in under this cluster's policy.
    function _isAdmissibleMemberContract(LibDstackStorage.DstackStorage storage st, address m)
        private
        view
        returns (bool)
    {
        if (st.appIds[m]) return true;
        address factory = st.memberFactory;
        if (factory == address(0) || !IClusterMemberFactory(factory).isOurMember(m)) return false;
        return IClusterMember(m).cluster() == address(this);
    }
}
