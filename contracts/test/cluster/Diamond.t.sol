// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Vm} from "forge-std/Vm.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {ClusterDiamond} from "../../src/diamond/ClusterDiamond.sol";
import {ClusterInit} from "../../src/diamond/ClusterInit.sol";
import {IDiamondCut} from "../../src/diamond/IDiamondCut.sol";
import {IDiamondLoupe} from "../../src/diamond/IDiamondLoupe.sol";
import {IDiamondOwnership, IERC173} from "../../src/diamond/IERC173.sol";
import {ClusterInitArgs, DstackProof} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {IMessageFacet} from "../../src/interfaces/IMessageFacet.sol";
import {INetworkFacet} from "../../src/interfaces/INetworkFacet.sol";
import {LibClusterSelectors} from "../../src/libraries/LibClusterSelectors.sol";
import {LibDiamond} from "../../src/libraries/LibDiamond.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {DstackChain} from "../utils/DstackChain.sol";

/// @dev A facet added by tests: a view plus a function that reverts with data.
contract ExtraFacet {
    error ExtraBoom();

    function extraValue() external pure returns (uint256) {
        return 42;
    }

    function extraBoom() external pure {
        revert ExtraBoom();
    }
}

contract ExtraFacetV2 {
    function extraValue() external pure returns (uint256) {
        return 43;
    }
}

/// @dev Initializers run by diamondCut (delegatecall in the diamond's context).
contract TestCutInit {
    error InitBoom(uint256 code);

    function announce(bytes4 iface) external {
        LibDiamond.s().supportedInterfaces[iface] = true;
    }

    function boom() external pure {
        revert InitBoom(7);
    }

    function silentBoom() external pure {
        revert();
    }
}

/// @notice ERC-2535 cut / loupe / ERC-165 / two-step cut ownership, and the two-role split.
contract DiamondTest is ClusterFixture {
    IDiamondCut internal cutter;
    IDiamondLoupe internal loupe;
    IDiamondOwnership internal own;
    ExtraFacet internal extra;
    TestCutInit internal cutInit;

    function setUp() public override {
        super.setUp();
        cutter = IDiamondCut(cluster);
        loupe = IDiamondLoupe(cluster);
        own = IDiamondOwnership(cluster);
        extra = new ExtraFacet();
        cutInit = new TestCutInit();
    }

    function _one(address facet, IDiamondCut.FacetCutAction action, bytes4 sel)
        internal
        pure
        returns (IDiamondCut.FacetCut[] memory c)
    {
        bytes4[] memory sels = new bytes4[](1);
        sels[0] = sel;
        c = new IDiamondCut.FacetCut[](1);
        c[0] = IDiamondCut.FacetCut({facetAddress: facet, action: action, functionSelectors: sels});
    }

    function _addExtra() internal {
        bytes4[] memory sels = new bytes4[](2);
        sels[0] = ExtraFacet.extraValue.selector;
        sels[1] = ExtraFacet.extraBoom.selector;
        IDiamondCut.FacetCut[] memory c = new IDiamondCut.FacetCut[](1);
        c[0] = IDiamondCut.FacetCut(address(extra), IDiamondCut.FacetCutAction.Add, sels);
        vm.prank(clusterOwner);
        cutter.diamondCut(c, address(0), "");
    }

    // ------------------------------------------------------------------ loupe

    function test_loupe_initialFacets() public view {
        address[7] memory expected = [
            address(diamondCutFacet),
            address(diamondLoupeFacet),
            address(ownershipFacet),
            address(attestFacet),
            address(messageFacet),
            address(networkFacet),
            address(dstackFacet)
        ];
        bytes4[][7] memory sels = [
            LibClusterSelectors.diamondCut(),
            LibClusterSelectors.diamondLoupe(),
            LibClusterSelectors.ownership(),
            LibClusterSelectors.attest(),
            LibClusterSelectors.message(),
            LibClusterSelectors.network(),
            LibClusterSelectors.dstack()
        ];
        IDiamondLoupe.Facet[] memory fs = loupe.facets();
        address[] memory addrs = loupe.facetAddresses();
        assertEq(fs.length, 7);
        assertEq(addrs.length, 7);
        uint256 total;
        for (uint256 i; i < 7; ++i) {
            assertEq(fs[i].facetAddress, expected[i]);
            assertEq(addrs[i], expected[i]);
            bytes4[] memory got = loupe.facetFunctionSelectors(expected[i]);
            assertEq(got.length, sels[i].length);
            for (uint256 j; j < got.length; ++j) {
                assertEq(got[j], sels[i][j]);
                assertEq(fs[i].functionSelectors[j], sels[i][j]);
                assertEq(loupe.facetAddress(sels[i][j]), expected[i]);
            }
            total += got.length;
        }
        assertEq(total, 54);
        assertEq(loupe.facetAddress(0x12345678), address(0));
        assertEq(loupe.facetFunctionSelectors(address(0xdead)).length, 0);
    }

    /// @dev Every selector a facet contract actually implements must be routed to it.
    function test_loupe_routesEveryInterfaceFunction() public view {
        assertEq(loupe.facetAddress(IDstackFacet.dstack_register.selector), address(dstackFacet));
        assertEq(loupe.facetAddress(IAttestFacet._addMember.selector), address(attestFacet));
        assertEq(loupe.facetAddress(IMessageFacet.send.selector), address(messageFacet));
        assertEq(loupe.facetAddress(INetworkFacet.publishWgKey.selector), address(networkFacet));
        assertEq(loupe.facetAddress(IERC165.supportsInterface.selector), address(diamondLoupeFacet));
        assertEq(loupe.facetAddress(IDiamondOwnership.acceptOwnership.selector), address(ownershipFacet));
    }

    // ------------------------------------------------------------------ ERC-165

    function test_supportsInterface() public view {
        IERC165 c = IERC165(cluster);
        assertTrue(c.supportsInterface(0x01ffc9a7)); // ERC-165
        assertTrue(c.supportsInterface(0x1f931c1c)); // IDiamondCut
        assertTrue(c.supportsInterface(0x48e2b093)); // IDiamondLoupe
        assertTrue(c.supportsInterface(0x7f5828d0)); // ERC-173
        assertEq(type(IDiamondCut).interfaceId, bytes4(0x1f931c1c));
        assertEq(type(IDiamondLoupe).interfaceId, bytes4(0x48e2b093));
        assertEq(type(IERC173).interfaceId, bytes4(0x7f5828d0));
        assertTrue(c.supportsInterface(type(IAttestFacet).interfaceId));
        assertTrue(c.supportsInterface(type(IMessageFacet).interfaceId));
        assertTrue(c.supportsInterface(type(INetworkFacet).interfaceId));
        assertTrue(c.supportsInterface(type(IDstackFacet).interfaceId));
        assertFalse(c.supportsInterface(0xffffffff)); // ERC-165 requires false
        assertFalse(c.supportsInterface(0x12345678));
    }

    // ------------------------------------------------------------------ cut

    function test_cut_addReplaceRemove() public {
        vm.expectEmit(false, false, false, true, cluster);
        emit IDiamondCut.DiamondCut(
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
            address(0),
            ""
        );
        vm.prank(clusterOwner);
        cutter.diamondCut(
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
            address(0),
            ""
        );
        assertEq(ExtraFacet(cluster).extraValue(), 42);
        assertEq(loupe.facetAddresses().length, 8);
        assertEq(loupe.facetAddress(ExtraFacet.extraValue.selector), address(extra));

        ExtraFacetV2 v2 = new ExtraFacetV2();
        vm.prank(clusterOwner);
        cutter.diamondCut(
            _one(address(v2), IDiamondCut.FacetCutAction.Replace, ExtraFacet.extraValue.selector),
            address(0),
            ""
        );
        assertEq(ExtraFacet(cluster).extraValue(), 43);
        assertEq(loupe.facetAddresses().length, 8, "old facet dropped when emptied, new one added");
        assertEq(loupe.facetFunctionSelectors(address(extra)).length, 0);

        vm.prank(clusterOwner);
        cutter.diamondCut(
            _one(address(0), IDiamondCut.FacetCutAction.Remove, ExtraFacet.extraValue.selector),
            address(0),
            ""
        );
        assertEq(loupe.facetAddresses().length, 7);
        vm.expectRevert(
            abi.encodeWithSelector(ClusterDiamond.FunctionNotFound.selector, ExtraFacet.extraValue.selector)
        );
        ExtraFacet(cluster).extraValue();
    }

    function test_cut_removeMiddleFacetKeepsLoupeConsistent() public {
        // Remove all MessageFacet selectors: facetAddresses swap-and-pops, the rest keep routing.
        bytes4[] memory sels = LibClusterSelectors.message();
        IDiamondCut.FacetCut[] memory c = new IDiamondCut.FacetCut[](1);
        c[0] = IDiamondCut.FacetCut(address(0), IDiamondCut.FacetCutAction.Remove, sels);
        vm.prank(clusterOwner);
        cutter.diamondCut(c, address(0), "");
        address[] memory addrs = loupe.facetAddresses();
        assertEq(addrs.length, 6);
        assertEq(addrs[4], address(dstackFacet), "last facet moved into the gap");
        for (uint256 i; i < addrs.length; ++i) {
            bytes4[] memory fsels = loupe.facetFunctionSelectors(addrs[i]);
            for (uint256 j; j < fsels.length; ++j) {
                assertEq(loupe.facetAddress(fsels[j]), addrs[i]);
            }
        }
        vm.expectRevert(
            abi.encodeWithSelector(ClusterDiamond.FunctionNotFound.selector, IMessageFacet.send.selector)
        );
        IMessageFacet(cluster).send(bytes32(0), bytes32(0), "");
        assertEq(IAttestFacet(cluster).clusterOwner(), clusterOwner);
    }

    function test_cut_removeOneSelectorOfMany() public {
        vm.prank(clusterOwner);
        cutter.diamondCut(
            _one(address(0), IDiamondCut.FacetCutAction.Remove, IAttestFacet.memberCount.selector),
            address(0),
            ""
        );
        bytes4[] memory rest = loupe.facetFunctionSelectors(address(attestFacet));
        assertEq(rest.length, 16);
        for (uint256 j; j < rest.length; ++j) {
            assertTrue(rest[j] != IAttestFacet.memberCount.selector);
            assertEq(loupe.facetAddress(rest[j]), address(attestFacet));
        }
        assertEq(IAttestFacet(cluster).listMembers().length, 0, "sibling selectors still routed");
    }

    function test_cut_withInit() public {
        bytes4 iface = 0xabcdef01;
        vm.prank(clusterOwner);
        cutter.diamondCut(
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
            address(cutInit),
            abi.encodeCall(TestCutInit.announce, (iface))
        );
        assertTrue(IERC165(cluster).supportsInterface(iface), "init ran in the diamond's storage");
    }

    function test_revert_cut_notOwner() public {
        IDiamondCut.FacetCut[] memory c =
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector);
        vm.expectRevert(IDiamondOwnership.NotDiamondOwner.selector);
        cutter.diamondCut(c, address(0), "");
        (address m,,) = deployAndRegister("member");
        vm.prank(m);
        vm.expectRevert(IDiamondOwnership.NotDiamondOwner.selector);
        cutter.diamondCut(c, address(0), "");
    }

    function test_revert_cut_errors() public {
        vm.startPrank(clusterOwner);
        IDiamondCut.FacetCut[] memory c = new IDiamondCut.FacetCut[](1);
        c[0] = IDiamondCut.FacetCut(address(extra), IDiamondCut.FacetCutAction.Add, new bytes4[](0));
        vm.expectRevert(IDiamondCut.NoSelectorsInFacetCut.selector);
        cutter.diamondCut(c, address(0), "");

        address eoa = makeAddr("eoa");
        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.FacetHasNoCode.selector, eoa));
        cutter.diamondCut(_one(eoa, IDiamondCut.FacetCutAction.Add, 0x11111111), address(0), "");
        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.FacetHasNoCode.selector, eoa));
        cutter.diamondCut(
            _one(eoa, IDiamondCut.FacetCutAction.Replace, IAttestFacet.memberCount.selector), address(0), ""
        );

        bytes4 taken = IAttestFacet.memberCount.selector;
        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.SelectorAlreadyExists.selector, taken));
        cutter.diamondCut(_one(address(extra), IDiamondCut.FacetCutAction.Add, taken), address(0), "");

        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.SelectorNotFound.selector, bytes4(0x11111111)));
        cutter.diamondCut(
            _one(address(extra), IDiamondCut.FacetCutAction.Replace, 0x11111111), address(0), ""
        );
        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.SelectorNotFound.selector, bytes4(0x11111111)));
        cutter.diamondCut(_one(address(0), IDiamondCut.FacetCutAction.Remove, 0x11111111), address(0), "");

        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.ReplaceWithSameFacet.selector, taken));
        cutter.diamondCut(
            _one(address(attestFacet), IDiamondCut.FacetCutAction.Replace, taken), address(0), ""
        );

        vm.expectRevert(
            abi.encodeWithSelector(IDiamondCut.RemoveFacetAddressMustBeZero.selector, address(extra))
        );
        cutter.diamondCut(_one(address(extra), IDiamondCut.FacetCutAction.Remove, taken), address(0), "");
        vm.stopPrank();
        assertEq(loupe.facetAddress(taken), address(attestFacet), "failed cuts change nothing");
    }

    function test_revert_cut_initErrors() public {
        IDiamondCut.FacetCut[] memory c =
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector);
        address eoa = makeAddr("eoa");
        vm.startPrank(clusterOwner);
        vm.expectRevert(abi.encodeWithSelector(IDiamondCut.InitHasNoCode.selector, eoa));
        cutter.diamondCut(c, eoa, hex"01");
        vm.expectRevert(IDiamondCut.InitCalldataWithoutInit.selector);
        cutter.diamondCut(c, address(0), hex"01");
        // an initializer's own revert is bubbled unchanged
        vm.expectRevert(abi.encodeWithSelector(TestCutInit.InitBoom.selector, 7));
        cutter.diamondCut(c, address(cutInit), abi.encodeCall(TestCutInit.boom, ()));
        bytes memory silent = abi.encodeCall(TestCutInit.silentBoom, ());
        vm.expectRevert(
            abi.encodeWithSelector(IDiamondCut.InitializationFailed.selector, address(cutInit), silent)
        );
        cutter.diamondCut(c, address(cutInit), silent);
        vm.stopPrank();
        assertEq(loupe.facetAddress(ExtraFacet.extraValue.selector), address(0), "cut rolled back with init");
    }

    function test_fallback_bubblesFacetRevert() public {
        _addExtra();
        vm.expectRevert(ExtraFacet.ExtraBoom.selector);
        ExtraFacet(cluster).extraBoom();
    }

    function test_revert_unknownSelectorAndPlainEth() public {
        vm.expectRevert(abi.encodeWithSelector(ClusterDiamond.FunctionNotFound.selector, bytes4(0xdeadbeef)));
        (bool ok,) = cluster.call(hex"deadbeef");
        ok; // expectRevert asserts the revert
        vm.deal(address(this), 1 ether);
        (ok,) = cluster.call{value: 1}("");
        assertFalse(ok, "a cluster refuses ETH");
    }

    function test_revert_reinitialize() public {
        vm.prank(clusterOwner);
        vm.expectRevert(ClusterInit.AlreadyInitialized.selector);
        cutter.diamondCut(
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
            address(clusterInit),
            abi.encodeCall(ClusterInit.init, (defaultClusterArgs()))
        );
    }

    // ------------------------------------------------------------------ bare facets

    address[] internal bareTargets;
    bytes[] internal bareCalls;
    bytes[] internal bareErrs;

    function _bare(address target, bytes memory data, bytes memory err) internal {
        bareTargets.push(target);
        bareCalls.push(data);
        bareErrs.push(err);
    }

    /// @dev Every state-changing function of every facet, called on the facet contract itself (not
    /// through a diamond), must revert: a bare facet's own storage has no owner, cluster owner,
    /// member factory or members, so nothing can be configured, admitted, cut or sent there. And no
    /// such call can touch a cluster's state.
    function test_bareFacetsAreInert() public {
        address attacker = makeAddr("attacker");
        DstackChain.MemberKeys memory k = memberKeys("bare");
        address m = newMember(cluster, "bare");
        DstackProof memory proof = buildProof(address(dstackFacet), m, k);

        _bare(
            address(diamondCutFacet),
            abi.encodeCall(
                IDiamondCut.diamondCut,
                (
                    _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
                    address(0),
                    ""
                )
            ),
            abi.encodeWithSelector(IDiamondOwnership.NotDiamondOwner.selector)
        );
        _bare(
            address(ownershipFacet),
            abi.encodeCall(IERC173.transferOwnership, (attacker)),
            abi.encodeWithSelector(IDiamondOwnership.NotDiamondOwner.selector)
        );
        _bare(
            address(ownershipFacet),
            abi.encodeCall(IDiamondOwnership.acceptOwnership, ()),
            abi.encodeWithSelector(IDiamondOwnership.NotPendingDiamondOwner.selector)
        );
        _bare(
            address(attestFacet),
            abi.encodeCall(IAttestFacet.transferClusterOwnership, (attacker)),
            abi.encodeWithSelector(IAttestFacet.NotClusterOwner.selector)
        );
        _bare(
            address(attestFacet),
            abi.encodeCall(IAttestFacet.acceptClusterOwnership, ()),
            abi.encodeWithSelector(IAttestFacet.NotPendingClusterOwner.selector)
        );
        _bare(
            address(attestFacet),
            abi.encodeCall(IAttestFacet.setCskCommitment, (keccak256("csk"))),
            abi.encodeWithSelector(IAttestFacet.NotOriginator.selector)
        );
        _bare(
            address(messageFacet),
            abi.encodeCall(IMessageFacet.send, (bytes32(uint256(1)), bytes32(uint256(1)), hex"01")),
            abi.encodeWithSelector(IMessageFacet.NotClusterMember.selector)
        );
        _bare(
            address(messageFacet),
            abi.encodeCall(
                IMessageFacet.sendOwnerCommand, (bytes32(uint256(1)), bytes32(uint256(1)), hex"01")
            ),
            abi.encodeWithSelector(IAttestFacet.NotClusterOwner.selector)
        );
        _bare(
            address(networkFacet),
            abi.encodeCall(INetworkFacet.publishWgKey, (bytes32(uint256(1)))),
            abi.encodeWithSelector(IMessageFacet.NotClusterMember.selector)
        );
        _bare(
            address(dstackFacet),
            abi.encodeCall(IDstackFacet.dstack_register, (proof, m, k.xPubKey, k.wgPubKey, k.edPubKey)),
            abi.encodeWithSelector(IDstackFacet.NotOurMember.selector)
        );
        bytes[10] memory policy = [
            abi.encodeCall(IDstackFacet.addComposeHash, (bytes32(uint256(1)))),
            abi.encodeCall(IDstackFacet.removeComposeHash, (COMPOSE_HASH)),
            abi.encodeCall(IDstackFacet.addDevice, (bytes32(uint256(1)))),
            abi.encodeCall(IDstackFacet.removeDevice, (DEVICE_ID)),
            abi.encodeCall(IDstackFacet.setAllowAnyDevice, (true)),
            abi.encodeCall(IDstackFacet.setRequireTcbUpToDate, (false)),
            abi.encodeCall(IDstackFacet.addAllowedKmsRoot, (attacker)),
            abi.encodeCall(IDstackFacet.removeAllowedKmsRoot, (kmsRoot)),
            abi.encodeCall(IDstackFacet.addAllowedAppId, (attacker)),
            abi.encodeCall(IDstackFacet.removeAllowedAppId, (attacker))
        ];
        for (uint256 i; i < policy.length; ++i) {
            _bare(
                address(dstackFacet), policy[i], abi.encodeWithSelector(IAttestFacet.NotClusterOwner.selector)
            );
        }
        assertEq(bareTargets.length, 20);

        // Whoever calls — a stranger, the cluster's owner, even the cluster itself.
        address[3] memory callers = [attacker, clusterOwner, cluster];
        for (uint256 c; c < callers.length; ++c) {
            for (uint256 i; i < bareTargets.length; ++i) {
                vm.prank(callers[c]);
                (bool ok, bytes memory ret) = bareTargets[i].call(bareCalls[i]);
                assertFalse(ok, "a bare facet refused the call");
                assertEq(ret, bareErrs[i]);
            }
        }
        // The cluster is untouched.
        assertEq(IERC173(cluster).owner(), clusterOwner);
        assertEq(IAttestFacet(cluster).clusterOwner(), clusterOwner);
        assertEq(IAttestFacet(cluster).memberCount(), 0);
        assertTrue(IDstackFacet(cluster).allowedKmsRoots(kmsRoot));
        assertEq(IClusterMember(m).owner(), address(0));
    }

    /// @dev ClusterInit called directly only writes ClusterInit's own storage, which nothing reads;
    /// clusters keep their configuration.
    function test_bareClusterInit_touchesNoCluster() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        args.clusterOwner = makeAddr("attacker");
        args.kmsRoots[0] = makeAddr("rogue kms");
        clusterInit.init(args);
        assertEq(IAttestFacet(cluster).clusterOwner(), clusterOwner);
        assertFalse(IDstackFacet(cluster).allowedKmsRoots(makeAddr("rogue kms")));
        // A cut owner cannot re-run it on the cluster either (see test_revert_reinitialize).
    }

    // ------------------------------------------------------------------ cut ownership

    function test_ownership_twoStep() public {
        address next = makeAddr("nextDiamondOwner");
        assertEq(IERC173(cluster).owner(), clusterOwner);
        vm.expectEmit(true, true, false, false, cluster);
        emit IDiamondOwnership.OwnershipTransferStarted(clusterOwner, next);
        vm.prank(clusterOwner);
        own.transferOwnership(next);
        assertEq(own.pendingOwner(), next);
        assertEq(own.owner(), clusterOwner);

        vm.expectEmit(true, true, false, false, cluster);
        emit IERC173.OwnershipTransferred(clusterOwner, next);
        vm.prank(next);
        own.acceptOwnership();
        assertEq(own.owner(), next);
        assertEq(own.pendingOwner(), address(0));
        // cluster ownership is a separate role and did not move
        assertEq(IAttestFacet(cluster).clusterOwner(), clusterOwner);

        vm.prank(clusterOwner);
        vm.expectRevert(IDiamondOwnership.NotDiamondOwner.selector);
        cutter.diamondCut(
            _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
            address(0),
            ""
        );
    }

    function test_revert_ownership() public {
        vm.expectRevert(IDiamondOwnership.NotDiamondOwner.selector);
        own.transferOwnership(address(this));
        vm.prank(clusterOwner);
        vm.expectRevert(IDiamondOwnership.InvalidDiamondOwner.selector);
        own.transferOwnership(address(0));
        vm.prank(clusterOwner);
        own.transferOwnership(makeAddr("nominee"));
        vm.expectRevert(IDiamondOwnership.NotPendingDiamondOwner.selector);
        own.acceptOwnership();
    }

    // ------------------------------------------------------------------ construction, roles

    function _directDiamond(address diamondOwner, ClusterInitArgs memory args) internal returns (address) {
        return address(
            new ClusterDiamond(
                diamondOwner,
                diamondFactory.facetCuts(),
                address(clusterInit),
                abi.encodeCall(ClusterInit.init, (args))
            )
        );
    }

    function test_roles_separate() public {
        address cutOwner = makeAddr("cutOwner");
        address c = _directDiamond(cutOwner, defaultClusterArgs());
        assertEq(IERC173(c).owner(), cutOwner);
        assertEq(IAttestFacet(c).clusterOwner(), clusterOwner);
        // the cut owner is no admin ...
        vm.prank(cutOwner);
        vm.expectRevert(IAttestFacet.NotClusterOwner.selector);
        IDstackFacet(c).addComposeHash(bytes32(uint256(1)));
        // ... and the admin cannot cut
        vm.prank(clusterOwner);
        vm.expectRevert(IDiamondOwnership.NotDiamondOwner.selector);
        IDiamondCut(c)
            .diamondCut(
                _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
                address(0),
                ""
            );
        vm.prank(cutOwner);
        IDiamondCut(c)
            .diamondCut(
                _one(address(extra), IDiamondCut.FacetCutAction.Add, ExtraFacet.extraValue.selector),
                address(0),
                ""
            );
        assertEq(ExtraFacet(c).extraValue(), 42);
    }

    function test_revert_constructor() public {
        ClusterInitArgs memory args = defaultClusterArgs();
        vm.expectRevert(IDiamondOwnership.InvalidDiamondOwner.selector);
        this.deployDirect(address(0), args);

        args.clusterOwner = address(0);
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        this.deployDirect(clusterOwner, args);

        args = defaultClusterArgs();
        args.kmsRoots[0] = address(0);
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        this.deployDirect(clusterOwner, args);

        args = defaultClusterArgs();
        args.appIds = new address[](1);
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        this.deployDirect(clusterOwner, args);
    }

    function test_revert_constructor_badCidr() public {
        uint8[3] memory prefixes = [7, 31, 32];
        ClusterInitArgs memory args = defaultClusterArgs();
        for (uint256 i; i < prefixes.length; ++i) {
            args.meshCidrIp = 0x0a000000;
            args.meshPrefix = prefixes[i];
            vm.expectRevert(
                abi.encodeWithSelector(ClusterInit.InvalidMeshCidr.selector, args.meshCidrIp, prefixes[i])
            );
            this.deployDirect(clusterOwner, args);
        }
        args.meshCidrIp = 0x0a0d0001; // host bit set for /16
        args.meshPrefix = 16;
        vm.expectRevert(
            abi.encodeWithSelector(ClusterInit.InvalidMeshCidr.selector, uint32(0x0a0d0001), uint8(16))
        );
        this.deployDirect(clusterOwner, args);
        // edges are fine
        args.meshCidrIp = 0x0a000000;
        args.meshPrefix = 8;
        this.deployDirect(clusterOwner, args);
        args.meshCidrIp = 0x0a0d0004;
        args.meshPrefix = 30;
        this.deployDirect(clusterOwner, args);
    }

    function deployDirect(address diamondOwner, ClusterInitArgs memory args) external returns (address) {
        return _directDiamond(diamondOwner, args);
    }

    function test_constructor_initEmitsPolicy() public {
        vm.recordLogs();
        address c = _directDiamond(clusterOwner, defaultClusterArgs());
        assertEq(IAttestFacet(c).clusterOwner(), clusterOwner, "initialised in the constructor");
        assertTrue(IDstackFacet(c).allowedKmsRoots(kmsRoot));
        bool sawKms;
        bool sawCut;
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == IDstackFacet.KmsRootAdded.selector) sawKms = true;
            if (logs[i].topics[0] == IDiamondCut.DiamondCut.selector) sawCut = true;
        }
        assertTrue(sawKms && sawCut);
    }
}
