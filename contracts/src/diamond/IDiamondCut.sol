// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice ERC-2535 cut interface, plus the typed errors our cut logic reverts with.
interface IDiamondCut {
    enum FacetCutAction {
        Add,
        Replace,
        Remove
    }

    struct FacetCut {
        address facetAddress;
        FacetCutAction action;
        bytes4[] functionSelectors;
    }

    /// @dev A cut must name at least one selector, so every cut is visible in the event log.
    error NoSelectorsInFacetCut();
    /// @dev Add/Replace target must hold code: a selector routed to an EOA would silently succeed.
    error FacetHasNoCode(address facet);
    error SelectorAlreadyExists(bytes4 selector);
    error SelectorNotFound(bytes4 selector);
    error ReplaceWithSameFacet(bytes4 selector);
    /// @dev ERC-2535 requires the facet address of a Remove to be zero.
    error RemoveFacetAddressMustBeZero(address facet);
    error InitHasNoCode(address init);
    error InitCalldataWithoutInit();
    /// @dev The initializer reverted without data (with data, its revert is bubbled as-is).
    error InitializationFailed(address init, bytes data);

    event DiamondCut(FacetCut[] _diamondCut, address _init, bytes _calldata);

    /// @notice Add/replace/remove functions, then optionally delegatecall `_init` with `_calldata`.
    function diamondCut(FacetCut[] calldata _diamondCut, address _init, bytes calldata _calldata) external;
}
