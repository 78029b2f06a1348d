// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {DstackProof} from "../../src/interfaces/ClusterTypes.sol";

/// @notice Builds REAL dstack signature chains with forge's signer, the way the dstack KMS and
/// guest agent (or devtee) produce them, so tests exercise the on-chain verifier end to end:
///   kmsSig  = sign(kmsRoot, keccak256("dstack-kms-issued:" ‖ appId(20) ‖ appPubkey(33)))
///   appSig  = sign(appKey,  keccak256(purpose ‖ ":" ‖ lowercaseHexNo0x(ownerPubkey)))
///   bindSig = sign(ownerKey, EIP-191(keccak256(abi.encode("attestmesh.bind.v1", cluster, member, x, wg, ed))))
/// Every formula is written out here independently of the contracts (no LibBinding / LibHex), so a
/// mistake on either side shows up as a failed registration rather than cancelling out.
library DstackChain {
    Vm private constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev secp256k1 group order; private keys must lie in [1, N-1].
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// @dev Purpose dstack uses for the owner key (DESIGN §4: attestmesh/owner/v1, purpose "ethereum").
    string internal constant OWNER_PURPOSE = "ethereum";

    /// @notice The secrets and public keys one node would derive from its TEE.
    struct MemberKeys {
        uint256 appKey; // dstack app key (issued by the KMS for the app id)
        uint256 ownerKey; // attestmesh/owner/v1
        bytes32 xPubKey;
        bytes32 wgPubKey;
        bytes32 edPubKey;
    }

    /// @notice Deterministic, distinct test keys per label.
    function deriveKeys(string memory label) internal pure returns (MemberKeys memory k) {
        k.appKey = toPrivateKey(keccak256(abi.encodePacked("attestmesh.test.app-key:", label)));
        k.ownerKey = toPrivateKey(keccak256(abi.encodePacked("attestmesh.test.owner-key:", label)));
        k.xPubKey = keccak256(abi.encodePacked("attestmesh.test.x25519:", label));
        k.wgPubKey = wgKeyFrom(keccak256(abi.encodePacked("attestmesh.test.wireguard:", label)));
        k.edPubKey = keccak256(abi.encodePacked("attestmesh.test.ed25519:", label));
    }

    /// @notice Maps any 32 bytes onto a WireGuard key the cluster accepts: canonical (bit 255 clear,
    /// below 2^255 - 19) and never small order. Byte 31 (the top byte of the little-endian u) is
    /// forced into 0x20..0x3f, which no small-order encoding has.
    function wgKeyFrom(bytes32 seed) internal pure returns (bytes32) {
        return (seed & ~bytes32(uint256(0xe0))) | bytes32(uint256(0x20));
    }

    /// @notice Maps any 32 bytes onto a valid private key in [1, N-1].
    function toPrivateKey(bytes32 seed) internal pure returns (uint256) {
        return (uint256(seed) % (N - 1)) + 1;
    }

    /// @notice SEC1 compressed public key: (0x02 | parity(y)) ‖ x.
    function compressedPubkey(uint256 privateKey) internal returns (bytes memory) {
        Vm.Wallet memory w = vm.createWallet(privateKey);
        return abi.encodePacked(bytes1(uint8(2 + (w.publicKeyY & 1))), bytes32(w.publicKeyX));
    }

    /// @notice 65-byte r ‖ s ‖ v signature, v ∈ {27, 28}, low s (what the contracts accept).
    function sign65(uint256 privateKey, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(privateKey, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @notice Lowercase hex without 0x (vm.toString yields lowercase with a 0x prefix).
    function lowerHexNo0x(bytes memory data) internal pure returns (string memory) {
        bytes memory full = bytes(vm.toString(data));
        bytes memory out = new bytes(full.length - 2);
        for (uint256 i; i < out.length; ++i) {
            out[i] = full[i + 2];
        }
        return string(out);
    }

    function kmsDigest(address appId, bytes memory appPubkey) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("dstack-kms-issued:", appId, appPubkey));
    }

    function appDigest(string memory purpose, bytes memory ownerPubkey) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(purpose, ":", lowerHexNo0x(ownerPubkey)));
    }

    function bindHash(address cluster, address memberContract, bytes32 x, bytes32 wg, bytes32 ed)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode("attestmesh.bind.v1", cluster, memberContract, x, wg, ed));
    }

    function ethSignedHash(bytes32 h) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", h));
    }

    function kmsSignature(uint256 kmsRootKey, address appId, bytes memory appPubkey)
        internal
        pure
        returns (bytes memory)
    {
        return sign65(kmsRootKey, kmsDigest(appId, appPubkey));
    }

    function appSignature(uint256 appKey, string memory purpose, bytes memory ownerPubkey)
        internal
        pure
        returns (bytes memory)
    {
        return sign65(appKey, appDigest(purpose, ownerPubkey));
    }

    function bindingSignature(
        uint256 ownerKey,
        address cluster,
        address memberContract,
        bytes32 x,
        bytes32 wg,
        bytes32 ed
    ) internal pure returns (bytes memory) {
        return sign65(ownerKey, ethSignedHash(bindHash(cluster, memberContract, x, wg, ed)));
    }

    /// @notice A complete, valid proof for registering `memberContract` in `cluster` with `k`'s keys.
    function buildProof(uint256 kmsRootKey, MemberKeys memory k, address cluster, address memberContract)
        internal
        returns (DstackProof memory p)
    {
        p.ownerPubkey = compressedPubkey(k.ownerKey);
        p.appPubkey = compressedPubkey(k.appKey);
        p.purpose = OWNER_PURPOSE;
        p.kmsSignature = kmsSignature(kmsRootKey, memberContract, p.appPubkey);
        p.appSignature = appSignature(k.appKey, p.purpose, p.ownerPubkey);
        p.bindingSignature =
            bindingSignature(k.ownerKey, cluster, memberContract, k.xPubKey, k.wgPubKey, k.edPubKey);
    }
}
