// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {MemberRecord} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IAttestor} from "../../src/interfaces/IAttestor.sol";
import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";
import {LibBinding} from "../../src/libraries/LibBinding.sol";

/// @notice A second attestation method for tests (DESIGN §3.6: "a non-TEE operator voucher for dev
/// clusters"): a fixed voucher key signs the owner key; the owner key signs the binding. Its proof
/// tuple has another shape than DstackProof (binding signature at field 1), and its registration
/// function another selector, so a member that still assumed dstack would reject it.
contract VoucherAttestorFacet is IAttestor {
    bytes32 internal constant VOUCHER_ATTESTOR_ID = keccak256("attestmesh.attestor.voucher.test.v1");

    struct VoucherProof {
        bytes voucher; // the voucher key's EIP-191 signature over keccak256(abi.encode(cluster, member, owner))
        bytes bindingSignature;
        address owner;
    }

    error BadVoucher();

    address public immutable voucherKey;

    constructor(address voucherKey_) {
        voucherKey = voucherKey_;
    }

    function bootstrapRule() external pure returns (bytes4, uint8) {
        return (this.voucher_register.selector, 1);
    }

    function voucher_register(
        VoucherProof calldata proof,
        address memberContract,
        bytes32 xPubKey,
        bytes32 wgPubKey,
        bytes32 edPubKey
    ) external returns (bytes32 memberId) {
        bytes32 voucherHash = keccak256(abi.encode(address(this), memberContract, proof.owner));
        if (ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(voucherHash), proof.voucher) != voucherKey)
        {
            revert BadVoucher();
        }
        bytes32 bindHash = LibBinding.bindHash(address(this), memberContract, xPubKey, wgPubKey, edPubKey);
        if (
            ECDSA.recover(MessageHashUtils.toEthSignedMessageHash(bindHash), proof.bindingSignature)
                != proof.owner
        ) {
            revert BadVoucher();
        }
        memberId = IAttestFacet(address(this))
            ._addMember(
                MemberRecord({
                attestorId: VOUCHER_ATTESTOR_ID,
                memberContract: memberContract,
                xPubKey: xPubKey,
                wgPubKey: wgPubKey,
                edPubKey: edPubKey,
                registeredAt: 0
            })
            );
        IClusterMember(memberContract).setOwnerFromCluster(proof.owner);
    }
}
