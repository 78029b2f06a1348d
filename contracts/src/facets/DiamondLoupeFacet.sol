// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IDiamondLoupe} from "../diamond/IDiamondLoupe.sol";
import {LibDiamond} from "../libraries/LibDiamond.sol";

/// @notice ERC-2535 loupe and ERC-165. Interface flags are set by initializers, so a cut that adds
/// an interface can announce it in the same transaction.
contract DiamondLoupeFacet is IDiamondLoupe, IERC165 {
    function facets() external view returns (Facet[] memory facets_) {
        LibDiamond.DiamondStorage storage ds = LibDiamond.s();
        uint256 n = ds.facetAddresses.length;
        facets_ = new Facet[](n);
        for (uint256 i; i < n; ++i) {
            address f = ds.facetAddresses[i];
            facets_[i] = Facet({facetAddress: f, functionSelectors: ds.facetInfo[f].selectors});
        }
    }

    function facetFunctionSelectors(address _facet) external view returns (bytes4[] memory) {
        return LibDiamond.s().facetInfo[_facet].selectors;
    }

    function facetAddresses() external view returns (address[] memory) {
        return LibDiamond.s().facetAddresses;
    }

    function facetAddress(bytes4 _functionSelector) external view returns (address) {
        return LibDiamond.s().selectorInfo[_functionSelector].facet;
    }

    function supportsInterface(bytes4 interfaceId) external view returns (bool) {
        return LibDiamond.s().supportedInterfaces[interfaceId];
    }
}
