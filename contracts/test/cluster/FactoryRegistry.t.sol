// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ClusterInit} from "../../src/diamond/ClusterInit.sol";
import {IDiamondOwnership, IERC173} from "../../src/diamond/IERC173.sol";
import {ClusterDiamondFactory} from "../../src/factory/ClusterDiamondFactory.sol";
import {ClusterInitArgs} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {
    IClusterDiamondFactory,
    IIndexerRegistry,
    IndexerRecord
} from "../../src/interfaces/IClusterDiamondFactory.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {IndexerRegistry} from "../../src/registry/IndexerRegistry.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";

/// @notice ClusterDiamondFactory (CREATE2, discovery event, provenance) and IndexerRegistry.
contract FactoryRegistryTest is ClusterFixture {
    // ------------------------------------------------------------------ factory

    function test_predictEqualsActual() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        bytes32 salt = keccak256("salt-1");
        address predicted = diamondFactory.predictClusterAddress(args, salt);
        assertEq(predicted.code.length, 0);
        assertFalse(diamondFactory.isDeployedCluster(predicted));

        vm.expectEmit(true, true, false, true, address(diamondFactory));
        emit IClusterDiamondFactory.ClusterDeployed(predicted, clusterOwner, salt);
        vm.prank(makeAddr("deployKey"));
        address c = diamondFactory.deployCluster(args, salt);
        assertEq(c, predicted);
        assertTrue(diamondFactory.isDeployedCluster(c));
        assertGt(c.code.length, 0);
        // both roles go to args.clusterOwner; the deploying key gets none
        assertEq(IERC173(c).owner(), clusterOwner);
        assertEq(IAttestFacet(c).clusterOwner(), clusterOwner);
        assertEq(IDstackFacet(c).memberFactory(), address(memberFactory));
    }

    function test_predict_isCallerIndependent() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        vm.prank(makeAddr("a"));
        address p1 = diamondFactory.predictClusterAddress(args, bytes32(uint256(1)));
        vm.prank(makeAddr("b"));
        address p2 = diamondFactory.predictClusterAddress(args, bytes32(uint256(1)));
        assertEq(p1, p2);
    }

    function test_addressCommitsToArgsAndSalt() public view {
        ClusterInitArgs memory args = defaultClusterArgs();
        address base = diamondFactory.predictClusterAddress(args, bytes32(uint256(1)));
        assertTrue(base != diamondFactory.predictClusterAddress(args, bytes32(uint256(2))), "salt");
        args.clusterOwner = address(0xBAD);
        assertTrue(base != diamondFactory.predictClusterAddress(args, bytes32(uint256(1))), "owner");
        args = defaultClusterArgs();
        args.kmsRoots[0] = address(0xBAD);
        assertTrue(base != diamondFactory.predictClusterAddress(args, bytes32(uint256(1))), "policy");
        args = defaultClusterArgs();
        args.meshPrefix = 24;
        assertTrue(base != diamondFactory.predictClusterAddress(args, bytes32(uint256(1))), "cidr");
    }

    /// @dev Front-running: a squatter replaying (args, salt) gets the exact cluster the owner asked
    /// for, owned by the owner — and the owner's own attempt fails loudly rather than silently.
    function test_squatterGetsNothing() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        bytes32 salt = keccak256("contested");
        address attacker = makeAddr("attacker");
        vm.prank(attacker);
        address c = diamondFactory.deployCluster(args, salt);
        assertEq(IERC173(c).owner(), clusterOwner);
        assertEq(IAttestFacet(c).clusterOwner(), clusterOwner);

        vm.prank(clusterOwner);
        vm.expectRevert(abi.encodeWithSelector(ClusterDiamondFactory.ClusterAlreadyDeployed.selector, c));
        diamondFactory.deployCluster(args, salt);
    }

    function test_isDeployedCluster_falseForLookalike() public {
        address lookalike = _directCluster();
        assertFalse(diamondFactory.isDeployedCluster(lookalike));
        assertTrue(diamondFactory.isDeployedCluster(cluster));
        assertFalse(diamondFactory.isDeployedCluster(address(0)));
    }

    function _directCluster() internal returns (address) {
        // same facets, but not deployed through the factory
        return address(
            new ClusterDiamondFactory(
                    ClusterDiamondFactory.Facets({
                    diamondCut: address(diamondCutFacet),
                    diamondLoupe: address(diamondLoupeFacet),
                    ownership: address(ownershipFacet),
                    attest: address(attestFacet),
                    message: address(messageFacet),
                    network: address(networkFacet),
                    dstack: address(dstackFacet)
                }),
                    address(clusterInit)
                ).deployCluster(defaultClusterArgs(), bytes32(0))
        );
    }

    function test_revert_deployCluster_invalidArgs() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        args.clusterOwner = address(0); // both roles would be unowned
        vm.expectRevert(IDiamondOwnership.InvalidDiamondOwner.selector);
        diamondFactory.deployCluster(args, bytes32(uint256(99)));
        args = defaultClusterArgs();
        args.meshPrefix = 31;
        vm.expectRevert(abi.encodeWithSelector(ClusterInit.InvalidMeshCidr.selector, MESH_CIDR_IP, uint8(31)));
        diamondFactory.deployCluster(args, bytes32(uint256(99)));
    }

    function test_revert_factory_facetWithoutCode() public {
        address eoa = makeAddr("eoa");
        ClusterDiamondFactory.Facets memory f = ClusterDiamondFactory.Facets({
            diamondCut: address(diamondCutFacet),
            diamondLoupe: address(diamondLoupeFacet),
            ownership: address(ownershipFacet),
            attest: address(attestFacet),
            message: eoa,
            network: address(networkFacet),
            dstack: address(dstackFacet)
        });
        vm.expectRevert(abi.encodeWithSelector(ClusterDiamondFactory.FacetHasNoCode.selector, eoa));
        new ClusterDiamondFactory(f, address(clusterInit));
        f.message = address(messageFacet);
        vm.expectRevert(abi.encodeWithSelector(ClusterDiamondFactory.FacetHasNoCode.selector, eoa));
        new ClusterDiamondFactory(f, eoa);
    }

    function test_factory_views() public view {
        assertEq(diamondFactory.attestFacet(), address(attestFacet));
        assertEq(diamondFactory.dstackFacet(), address(dstackFacet));
        assertEq(diamondFactory.clusterInit(), address(clusterInit));
        assertEq(diamondFactory.facetCuts().length, 7);
    }

    // ------------------------------------------------------------------ registry

    function _rec(string memory endpoint) internal pure returns (IndexerRecord memory) {
        return IndexerRecord({
            endpoint: endpoint,
            codeId: keccak256("indexer-code"),
            pubKey: keccak256("indexer-ed25519"),
            updatedAt: 1 // ignored
        });
    }

    function test_registry_setIndexer() public {
        IndexerRegistry reg = new IndexerRegistry(clusterOwner);
        assertEq(reg.current().endpoint, "");
        vm.warp(1_700_000_000);
        vm.expectEmit(false, false, false, true, address(reg));
        emit IIndexerRegistry.IndexerUpdated(
            "https://indexer.example:443",
            keccak256("indexer-code"),
            keccak256("indexer-ed25519"),
            1_700_000_000
        );
        vm.prank(clusterOwner);
        reg.setIndexer(_rec("https://indexer.example:443"));
        IndexerRecord memory r = reg.current();
        assertEq(r.endpoint, "https://indexer.example:443");
        assertEq(r.codeId, keccak256("indexer-code"));
        assertEq(r.pubKey, keccak256("indexer-ed25519"));
        assertEq(r.updatedAt, 1_700_000_000, "updatedAt from the block");

        vm.warp(1_700_000_100);
        vm.prank(clusterOwner);
        reg.setIndexer(_rec("https://indexer2.example:443"));
        assertEq(reg.current().endpoint, "https://indexer2.example:443");
        assertEq(reg.current().updatedAt, 1_700_000_100);
    }

    function test_revert_registry() public {
        IndexerRegistry reg = new IndexerRegistry(clusterOwner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        reg.setIndexer(_rec("x"));
        vm.startPrank(clusterOwner);
        vm.expectRevert(IndexerRegistry.EmptyEndpoint.selector);
        reg.setIndexer(_rec(""));
        IndexerRecord memory r = _rec("x");
        r.pubKey = bytes32(0);
        vm.expectRevert(IndexerRegistry.ZeroPubKey.selector);
        reg.setIndexer(r);
        vm.stopPrank();
    }

    function test_registry_twoStepOwnership() public {
        IndexerRegistry reg = new IndexerRegistry(clusterOwner);
        address next = makeAddr("next");
        vm.prank(clusterOwner);
        reg.transferOwnership(next);
        assertEq(reg.owner(), clusterOwner);
        assertEq(reg.pendingOwner(), next);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        reg.acceptOwnership();
        vm.prank(next);
        reg.acceptOwnership();
        assertEq(reg.owner(), next);
        vm.prank(next);
        reg.setIndexer(_rec("y"));
        assertEq(reg.current().endpoint, "y");
    }
}
