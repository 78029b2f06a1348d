// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IDiamondCut} from "../diamond/IDiamondCut.sol";
import {IDiamondOwnership, IERC173} from "../diamond/IERC173.sol";

/// @notice Diamond routing table, ERC-165 flags and cut-authority ownership, kept in the
/// `attestmesh.storage.Diamond` ERC-7201 namespace so no facet can collide with it.
library LibDiamond {
    /// @dev keccak256(abi.encode(uint256(keccak256("attestmesh.storage.Diamond")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 internal constant STORAGE_SLOT =
        0x7885fd47cb615b4cf484cff093fe090dcd08af42df05770921074bffafbb1400;

    /// @dev One slot per selector: the facet and the selector's index in that facet's list, so a
    /// removal is a swap-and-pop instead of a scan.
    struct SelectorInfo {
        address facet;
        uint96 position;
    }

    struct FacetInfo {
        bytes4[] selectors;
        uint256 position; // index in facetAddresses
    }

    /// @custom:storage-location erc7201:attestmesh.storage.Diamond
    struct DiamondStorage {
        mapping(bytes4 => SelectorInfo) selectorInfo;
        mapping(address => FacetInfo) facetInfo;
        address[] facetAddresses;
        mapping(bytes4 => bool) supportedInterfaces;
        address owner;
        address pendingOwner;
    }

    function s() internal pure returns (DiamondStorage storage ds) {
        bytes32 slot = STORAGE_SLOT;
        assembly {
            ds.slot := slot
        }
    }

    // ---------------------------------------------------------------- ownership

    function enforceIsOwner() internal view {
        if (msg.sender != s().owner) revert IDiamondOwnership.NotDiamondOwner();
    }

    function setOwner(address newOwner) internal {
        DiamondStorage storage ds = s();
        address previous = ds.owner;
        ds.owner = newOwner;
        ds.pendingOwner = address(0);
        emit IERC173.OwnershipTransferred(previous, newOwner);
    }

    // ---------------------------------------------------------------- cut

    function diamondCut(IDiamondCut.FacetCut[] memory cuts, address init, bytes memory initCalldata)
        internal
    {
        for (uint256 i; i < cuts.length; ++i) {
            IDiamondCut.FacetCut memory c = cuts[i];
            if (c.functionSelectors.length == 0) revert IDiamondCut.NoSelectorsInFacetCut();
            if (c.action == IDiamondCut.FacetCutAction.Add) {
                _add(c.facetAddress, c.functionSelectors);
            } else if (c.action == IDiamondCut.FacetCutAction.Replace) {
                _replace(c.facetAddress, c.functionSelectors);
            } else {
                _remove(c.facetAddress, c.functionSelectors);
            }
        }
        emit IDiamondCut.DiamondCut(cuts, init, initCalldata);
        _initialize(init, initCalldata);
    }

    function _add(address facet, bytes4[] memory selectors) private {
        _enforceHasCode(facet);
        DiamondStorage storage ds = s();
        for (uint256 i; i < selectors.length; ++i) {
            bytes4 sel = selectors[i];
            if (ds.selectorInfo[sel].facet != address(0)) revert IDiamondCut.SelectorAlreadyExists(sel);
            _link(ds, facet, sel);
        }
    }

    function _replace(address facet, bytes4[] memory selectors) private {
        _enforceHasCode(facet);
        DiamondStorage storage ds = s();
        for (uint256 i; i < selectors.length; ++i) {
            bytes4 sel = selectors[i];
            address old = ds.selectorInfo[sel].facet;
            if (old == address(0)) revert IDiamondCut.SelectorNotFound(sel);
            if (old == facet) revert IDiamondCut.ReplaceWithSameFacet(sel);
            _unlink(ds, old, sel);
            _link(ds, facet, sel);
        }
    }

    function _remove(address facet, bytes4[] memory selectors) private {
        if (facet != address(0)) revert IDiamondCut.RemoveFacetAddressMustBeZero(facet);
        DiamondStorage storage ds = s();
        for (uint256 i; i < selectors.length; ++i) {
            bytes4 sel = selectors[i];
            address old = ds.selectorInfo[sel].facet;
            if (old == address(0)) revert IDiamondCut.SelectorNotFound(sel);
            _unlink(ds, old, sel);
        }
    }

    function _link(DiamondStorage storage ds, address facet, bytes4 sel) private {
        FacetInfo storage fi = ds.facetInfo[facet];
        if (fi.selectors.length == 0) {
            fi.position = ds.facetAddresses.length;
            ds.facetAddresses.push(facet);
        }
        ds.selectorInfo[sel] = SelectorInfo({facet: facet, position: uint96(fi.selectors.length)});
        fi.selectors.push(sel);
    }

    /// @dev Swap-and-pop the selector out of its facet's list; drop the facet when it empties.
    function _unlink(DiamondStorage storage ds, address facet, bytes4 sel) private {
        FacetInfo storage fi = ds.facetInfo[facet];
        uint256 pos = ds.selectorInfo[sel].position;
        uint256 last = fi.selectors.length - 1;
        if (pos != last) {
            bytes4 moved = fi.selectors[last];
            fi.selectors[pos] = moved;
            // casting to 'uint96' is safe because pos < selectors.length, which is far below 2^96
            // forge-lint: disable-next-line(unsafe-typecast)
            ds.selectorInfo[moved].position = uint96(pos);
        }
        fi.selectors.pop();
        delete ds.selectorInfo[sel];

        if (last == 0) {
            uint256 fpos = fi.position;
            uint256 flast = ds.facetAddresses.length - 1;
            if (fpos != flast) {
                address movedFacet = ds.facetAddresses[flast];
                ds.facetAddresses[fpos] = movedFacet;
                ds.facetInfo[movedFacet].position = fpos;
            }
            ds.facetAddresses.pop();
            delete ds.facetInfo[facet];
        }
    }

    function _enforceHasCode(address facet) private view {
        if (facet.code.length == 0) revert IDiamondCut.FacetHasNoCode(facet);
    }

    function _initialize(address init, bytes memory data) private {
        if (init == address(0)) {
            if (data.length != 0) revert IDiamondCut.InitCalldataWithoutInit();
            return;
        }
        if (init.code.length == 0) revert IDiamondCut.InitHasNoCode(init);
        (bool ok, bytes memory ret) = init.delegatecall(data);
        if (!ok) {
            if (ret.length != 0) {
                assembly {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
            revert IDiamondCut.InitializationFailed(init, data);
        }
    }
}
