// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ClusterDiamond} from "../diamond/ClusterDiamond.sol";
import {ClusterInit} from "../diamond/ClusterInit.sol";
import {IDiamondCut} from "../diamond/IDiamondCut.sol";
import {ClusterInitArgs} from "../interfaces/ClusterTypes.sol";
import {IClusterDiamondFactory} from "../interfaces/IClusterDiamondFactory.sol";
import {LibClusterSelectors} from "../libraries/LibClusterSelectors.sol";

/// @notice Deploys clusters that share one set of facets (DESIGN §3.8). Its `ClusterDeployed`
/// events are how the Indexer discovers clusters, and `isDeployedCluster` is how the sponsor tells
/// a genuine cluster from a look-alike.
/// @dev Roles: the new diamond's cut owner AND its cluster owner are both `args.clusterOwner` (in
/// production one Safe, DESIGN §3.1); the caller of `deployCluster` gets no role, so a throwaway
/// deploy key can deploy for an owner. Either role can later move with its own two-step transfer.
/// Front-running: the CREATE2 address commits to the whole init code, which embeds every field of
/// `args` (both owners included) and the facet set. A squatter copying (args, salt) can therefore
/// only deploy the very cluster the caller asked for, owned by the caller's owner; the salt is used
/// unchanged so `predictClusterAddress` is the same for every caller.
contract ClusterDiamondFactory is IClusterDiamondFactory {
    error FacetHasNoCode(address facet);
    error ClusterAlreadyDeployed(address cluster);

    struct Facets {
        address diamondCut;
        address diamondLoupe;
        address ownership;
        address attest;
        address message;
        address network;
        address dstack;
    }

    address public immutable diamondCutFacet;
    address public immutable diamondLoupeFacet;
    address public immutable ownershipFacet;
    address public immutable attestFacet;
    address public immutable messageFacet;
    address public immutable networkFacet;
    address public immutable dstackFacet;
    address public immutable clusterInit;

    mapping(address => bool) public isDeployedCluster;

    constructor(Facets memory facets, address init) {
        diamondCutFacet = _code(facets.diamondCut);
        diamondLoupeFacet = _code(facets.diamondLoupe);
        ownershipFacet = _code(facets.ownership);
        attestFacet = _code(facets.attest);
        messageFacet = _code(facets.message);
        networkFacet = _code(facets.network);
        dstackFacet = _code(facets.dstack);
        clusterInit = _code(init);
    }

    function deployCluster(ClusterInitArgs calldata args, bytes32 salt) external returns (address cluster) {
        (IDiamondCut.FacetCut[] memory cuts, bytes memory initCalldata) = _cutAndInit(args);
        address predicted = _predict(cuts, initCalldata, args.clusterOwner, salt);
        if (predicted.code.length != 0) revert ClusterAlreadyDeployed(predicted);
        cluster = address(new ClusterDiamond{salt: salt}(args.clusterOwner, cuts, clusterInit, initCalldata));
        isDeployedCluster[cluster] = true;
        emit ClusterDeployed(cluster, args.clusterOwner, salt);
    }

    function predictClusterAddress(ClusterInitArgs calldata args, bytes32 salt)
        external
        view
        returns (address)
    {
        (IDiamondCut.FacetCut[] memory cuts, bytes memory initCalldata) = _cutAndInit(args);
        return _predict(cuts, initCalldata, args.clusterOwner, salt);
    }

    /// @notice The initial cut every cluster from this factory gets, in loupe order.
    function facetCuts() public view returns (IDiamondCut.FacetCut[] memory cuts) {
        cuts = new IDiamondCut.FacetCut[](7);
        cuts[0] = _cut(diamondCutFacet, LibClusterSelectors.diamondCut());
        cuts[1] = _cut(diamondLoupeFacet, LibClusterSelectors.diamondLoupe());
        cuts[2] = _cut(ownershipFacet, LibClusterSelectors.ownership());
        cuts[3] = _cut(attestFacet, LibClusterSelectors.attest());
        cuts[4] = _cut(messageFacet, LibClusterSelectors.message());
        cuts[5] = _cut(networkFacet, LibClusterSelectors.network());
        cuts[6] = _cut(dstackFacet, LibClusterSelectors.dstack());
    }

    function _cutAndInit(ClusterInitArgs calldata args)
        private
        view
        returns (IDiamondCut.FacetCut[] memory cuts, bytes memory initCalldata)
    {
        cuts = facetCuts();
        initCalldata = abi.encodeCall(ClusterInit.init, (args));
    }

    function _predict(
        IDiamondCut.FacetCut[] memory cuts,
        bytes memory initCalldata,
        address owner,
        bytes32 salt
    ) private view returns (address) {
        bytes32 initCodeHash = keccak256(
            abi.encodePacked(
                type(ClusterDiamond).creationCode, abi.encode(owner, cuts, clusterInit, initCalldata)
            )
        );
        return address(
            uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), address(this), salt, initCodeHash))))
        );
    }

    function _cut(address facet, bytes4[] memory selectors)
        private
        pure
        returns (IDiamondCut.FacetCut memory)
    {
        return IDiamondCut.FacetCut({
            facetAddress: facet, action: IDiamondCut.FacetCutAction.Add, functionSelectors: selectors
        });
    }

    function _code(address a) private view returns (address) {
        if (a.code.length == 0) revert FacetHasNoCode(a);
        return a;
    }
}
