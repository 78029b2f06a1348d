// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IDiamondOwnership} from "../diamond/IERC173.sol";
import {LibDiamond} from "../libraries/LibDiamond.sol";

/// @notice Two-step ownership of the cut authority (ERC-173 view + nominate/accept). Separate from
/// the cluster owner, which lives in AttestFacet's namespace.
contract OwnershipFacet is IDiamondOwnership {
    function owner() external view returns (address) {
        return LibDiamond.s().owner;
    }

    function pendingOwner() external view returns (address) {
        return LibDiamond.s().pendingOwner;
    }

    /// @notice Nominates `_newOwner`; ownership moves only when the nominee accepts.
    function transferOwnership(address _newOwner) external {
        LibDiamond.enforceIsOwner();
        if (_newOwner == address(0)) revert InvalidDiamondOwner();
        LibDiamond.s().pendingOwner = _newOwner;
        emit OwnershipTransferStarted(msg.sender, _newOwner);
    }

    function acceptOwnership() external {
        if (msg.sender != LibDiamond.s().pendingOwner) revert NotPendingDiamondOwner();
        LibDiamond.setOwner(msg.sender);
    }
}
