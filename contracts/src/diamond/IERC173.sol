// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice ERC-173 contract ownership (interface id 0x7f5828d0).
interface IERC173 {
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    function owner() external view returns (address owner_);
    function transferOwnership(address _newOwner) external;
}

/// @notice Two-step ownership of the diamond's cut authority. `transferOwnership` only nominates;
/// the nominee must `acceptOwnership`, so the cut authority can never be sent to a dead address.
interface IDiamondOwnership is IERC173 {
    /// @dev Caller is not the diamond owner (the cut authority).
    error NotDiamondOwner();
    error NotPendingDiamondOwner();
    /// @dev Zero cannot be nominated: to freeze a diamond, remove `diamondCut` with a cut instead.
    error InvalidDiamondOwner();

    event OwnershipTransferStarted(address indexed previousOwner, address indexed newOwner);

    function pendingOwner() external view returns (address);
    function acceptOwnership() external;
}
