// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IDiamondCut} from "./IDiamondCut.sol";
import {IDiamondOwnership} from "./IERC173.sol";
import {LibDiamond} from "../libraries/LibDiamond.sol";

/// @notice A cluster (DESIGN §3.1): an ERC-2535 diamond whose only own code is routing. The
/// constructor installs the facets and runs the initializer in the same transaction, so no one can
/// observe or front-run a half-configured cluster.
/// @dev Roles: `diamondOwner` may cut (OwnershipFacet, Diamond namespace); the cluster owner
/// (admin: allowlists, owner commands) is set by the initializer in the Attest namespace. They are
/// independent and each moves by its own two-step transfer.
contract ClusterDiamond {
    error FunctionNotFound(bytes4 selector);

    constructor(
        address diamondOwner,
        IDiamondCut.FacetCut[] memory cuts,
        address init,
        bytes memory initCalldata
    ) payable {
        if (diamondOwner == address(0)) revert IDiamondOwnership.InvalidDiamondOwner();
        LibDiamond.setOwner(diamondOwner);
        LibDiamond.diamondCut(cuts, init, initCalldata);
    }

    /// @dev Routes every call to the facet registered for its selector; unknown selectors revert
    /// (including plain ETH transfers: a cluster holds no funds).
    fallback() external payable {
        address facet = LibDiamond.s().selectorInfo[msg.sig].facet;
        if (facet == address(0)) revert FunctionNotFound(msg.sig);
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), facet, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            switch ok
            case 0 { revert(0, returndatasize()) }
            default { return(0, returndatasize()) }
        }
    }
}
