// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";

import {ClusterInit} from "../../src/diamond/ClusterInit.sol";
import {ClusterDiamondFactory} from "../../src/factory/ClusterDiamondFactory.sol";
import {AttestFacet} from "../../src/facets/AttestFacet.sol";
import {DiamondCutFacet} from "../../src/facets/DiamondCutFacet.sol";
import {DiamondLoupeFacet} from "../../src/facets/DiamondLoupeFacet.sol";
import {DstackFacet} from "../../src/facets/DstackFacet.sol";
import {MessageFacet} from "../../src/facets/MessageFacet.sol";
import {NetworkFacet} from "../../src/facets/NetworkFacet.sol";
import {OwnershipFacet} from "../../src/facets/OwnershipFacet.sol";
import {AppBootInfo, ClusterInitArgs, DstackProof} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {ClusterMemberFactory} from "../../src/member/ClusterMemberFactory.sol";
import {DstackChain} from "./DstackChain.sol";

/// @notice Shared test fixture: the whole on-chain infra (facets, ClusterInit, ClusterDiamondFactory,
/// ClusterMemberFactory) plus one cluster on 10.13.0.0/16 whose policy admits the fixture's KMS
/// root, compose hash and device, and helpers that register members through a real dstack
/// signature chain (KMS root → app key → owner key → binding).
///
/// Usage: inherit, call `super.setUp()` (or `_deployClusterInfra()` + `_deployCluster(...)`).
/// Hooks: override `_entryPointAddress()` to point members at a deployed EntryPoint, or
/// `_deployMemberFactory()` to swap the member factory.
abstract contract ClusterFixture is Test {
    address internal constant ENTRY_POINT_V07 = 0x0000000071727De22E5E9d8BAf0edAc6f37da032;
    uint32 internal constant MESH_CIDR_IP = 0x0a0d0000; // 10.13.0.0
    uint8 internal constant MESH_PREFIX = 16;
    bytes32 internal constant COMPOSE_HASH = keccak256("attestmesh.test.compose-hash.v1");
    bytes32 internal constant DEVICE_ID = keccak256("attestmesh.test.device-id.0");

    uint256 internal kmsRootKey = DstackChain.toPrivateKey(keccak256("attestmesh.test.kms-root"));
    address internal kmsRoot;
    address internal clusterOwner = makeAddr("clusterOwner");
    /// @dev Submits registrations: anyone may, the proof authenticates (production: the EntryPoint).
    address internal relayer = makeAddr("relayer");

    DiamondCutFacet internal diamondCutFacet;
    DiamondLoupeFacet internal diamondLoupeFacet;
    OwnershipFacet internal ownershipFacet;
    AttestFacet internal attestFacet;
    MessageFacet internal messageFacet;
    NetworkFacet internal networkFacet;
    DstackFacet internal dstackFacet;
    ClusterInit internal clusterInit;
    ClusterDiamondFactory internal diamondFactory;
    ClusterMemberFactory internal memberFactory;

    /// @dev The fixture's default cluster.
    address internal cluster;

    function setUp() public virtual {
        _deployClusterInfra();
        cluster = _deployCluster(defaultClusterArgs(), bytes32(0));
    }

    // ------------------------------------------------------------------ hooks

    /// @dev EntryPoint the member implementation is built for. Member/paymaster tests override this
    /// to deploy the real v0.7 EntryPoint first and return its address.
    function _entryPointAddress() internal virtual returns (address) {
        return ENTRY_POINT_V07;
    }

    function _deployMemberFactory() internal virtual returns (ClusterMemberFactory) {
        return new ClusterMemberFactory(_entryPointAddress());
    }

    // ------------------------------------------------------------------ deployment

    function _deployClusterInfra() internal {
        kmsRoot = vm.addr(kmsRootKey);
        vm.label(kmsRoot, "kmsRoot");
        diamondCutFacet = new DiamondCutFacet();
        diamondLoupeFacet = new DiamondLoupeFacet();
        ownershipFacet = new OwnershipFacet();
        attestFacet = new AttestFacet();
        messageFacet = new MessageFacet();
        networkFacet = new NetworkFacet();
        dstackFacet = new DstackFacet();
        clusterInit = new ClusterInit();
        memberFactory = _deployMemberFactory();
        diamondFactory = new ClusterDiamondFactory(
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
        );
    }

    /// @notice 10.13.0.0/16, owner `clusterOwner`, the fixture's member factory, KMS root, compose
    /// hash and device; TCB must be up to date.
    function defaultClusterArgs() internal view returns (ClusterInitArgs memory args) {
        args.clusterOwner = clusterOwner;
        args.meshCidrIp = MESH_CIDR_IP;
        args.meshPrefix = MESH_PREFIX;
        args.memberFactory = address(memberFactory);
        args.kmsRoots = new address[](1);
        args.kmsRoots[0] = kmsRoot;
        args.composeHashes = new bytes32[](1);
        args.composeHashes[0] = COMPOSE_HASH;
        args.devices = new bytes32[](1);
        args.devices[0] = DEVICE_ID;
        args.requireTcbUpToDate = true;
    }

    function _deployCluster(ClusterInitArgs memory args, bytes32 salt) internal returns (address c) {
        c = diamondFactory.deployCluster(args, salt);
        vm.label(c, "cluster");
    }

    // ------------------------------------------------------------------ members

    /// @notice A fresh ClusterMember proxy from the member factory, bound to `cluster_`.
    function newMember(address cluster_, bytes32 salt) internal returns (address member) {
        member = memberFactory.deployMember(cluster_, salt);
    }

    function memberKeys(string memory label) internal pure returns (DstackChain.MemberKeys memory) {
        return DstackChain.deriveKeys(label);
    }

    /// @notice A valid proof signed by the fixture's KMS root.
    function buildProof(address cluster_, address member, DstackChain.MemberKeys memory k)
        internal
        returns (DstackProof memory)
    {
        return DstackChain.buildProof(kmsRootKey, k, cluster_, member);
    }

    /// @notice Registers `member` in `cluster_` through the full signature chain; returns its id.
    function registerMember(address cluster_, address member, DstackChain.MemberKeys memory k)
        internal
        returns (bytes32 memberId)
    {
        DstackProof memory proof = buildProof(cluster_, member, k);
        vm.prank(relayer);
        memberId = IDstackFacet(cluster_).dstack_register(proof, member, k.xPubKey, k.wgPubKey, k.edPubKey);
    }

    /// @notice Deploys a member for the default cluster (salt from `label`) and registers it.
    function deployAndRegister(string memory label)
        internal
        returns (address member, bytes32 memberId, DstackChain.MemberKeys memory k)
    {
        member = newMember(cluster, keccak256(bytes(label)));
        vm.label(member, label);
        k = memberKeys(label);
        memberId = registerMember(cluster, member, k);
    }

    /// @notice Boot info the default cluster's boot gate accepts for `appId` (if appId is admissible).
    function allowedBootInfo(address appId) internal pure returns (AppBootInfo memory info) {
        info.appId = appId;
        info.composeHash = COMPOSE_HASH;
        info.instanceId = address(0x1D);
        info.deviceId = DEVICE_ID;
        info.mrAggregated = keccak256("mr-aggregated");
        info.mrSystem = keccak256("mr-system");
        info.osImageHash = keccak256("os-image");
        info.tcbStatus = "UpToDate";
        info.advisoryIds = new string[](0);
    }

    function ownerAddressOf(DstackChain.MemberKeys memory k) internal pure returns (address) {
        return vm.addr(k.ownerKey);
    }

    function attestOf(address cluster_) internal pure returns (IAttestFacet) {
        return IAttestFacet(cluster_);
    }
}
