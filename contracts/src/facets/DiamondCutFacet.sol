// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IDiamondCut} from "../diamond/IDiamondCut.sol";
import {LibDiamond} from "../libraries/LibDiamond.sol";

/// @notice The cut entry point; only the diamond owner (cut authority) may change the code.
contract DiamondCutFacet is IDiamondCut {
    function diamondCut(FacetCut[] calldata _diamondCut, address _init, bytes calldata _calldata) external {
        LibDiamond.enforceIsOwner();
        LibDiamond.diamondCut(_diamondCut, _init, _calldata);
    }
}
