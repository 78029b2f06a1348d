// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Script, console2} from "forge-std/Script.sol";
import {IEntryPoint} from "@account-abstraction/contracts/interfaces/IEntryPoint.sol";

import {ClusterInit} from "../src/diamond/ClusterInit.sol";
import {ClusterDiamondFactory} from "../src/factory/ClusterDiamondFactory.sol";
import {AttestFacet} from "../src/facets/AttestFacet.sol";
import {DiamondCutFacet} from "../src/facets/DiamondCutFacet.sol";
import {DiamondLoupeFacet} from "../src/facets/DiamondLoupeFacet.sol";
import {DstackFacet} from "../src/facets/DstackFacet.sol";
import {MessageFacet} from "../src/facets/MessageFacet.sol";
import {NetworkFacet} from "../src/facets/NetworkFacet.sol";
import {OwnershipFacet} from "../src/facets/OwnershipFacet.sol";
import {ClusterInitArgs} from "../src/interfaces/ClusterTypes.sol";
import {ClusterMemberFactory} from "../src/member/ClusterMemberFactory.sol";
import {SponsorPaymaster} from "../src/paymaster/SponsorPaymaster.sol";
import {IndexerRegistry} from "../src/registry/IndexerRegistry.sol";

/// @notice Deploys the AttestMesh infra and one cluster on a local chain (scripts/devnet).
/// Expects EntryPoint v0.7 at its canonical address already (deployed from the published
/// artifact through the deterministic deployer). Environment:
///   KMS_ROOT          KMS root address to allowlist (default: the devtee development root)
///   MESH_CIDR_IP      network address as uint32 (default 10.13.0.0)
///   MESH_PREFIX       prefix length (default 16)
///   SPONSOR_SIGNER    paymaster signer address (default: the deployer)
///   PAYMASTER_DEPOSIT wei deposited for the paymaster at the EntryPoint (default 10 ether)
///   DEPLOYMENT_OUT    path of the JSON written with every address (default: none)
contract DeployDevnet is Script {
    address internal constant ENTRY_POINT_V07 = 0x0000000071727De22E5E9d8BAf0edAc6f37da032;

    function run() external {
        require(ENTRY_POINT_V07.code.length != 0, "EntryPoint v0.7 is not deployed at its canonical address");
        address kmsRoot = vm.envOr("KMS_ROOT", address(0));
        require(kmsRoot != address(0), "set KMS_ROOT to the KMS root address to allowlist");
        uint32 cidrIp = uint32(vm.envOr("MESH_CIDR_IP", uint256(0x0a0d0000)));
        uint8 prefix = uint8(vm.envOr("MESH_PREFIX", uint256(16)));

        vm.startBroadcast();
        (, address deployer,) = vm.readCallers();
        address sponsorSigner = vm.envOr("SPONSOR_SIGNER", deployer);

        ClusterMemberFactory memberFactory = new ClusterMemberFactory(ENTRY_POINT_V07);
        ClusterDiamondFactory diamondFactory = new ClusterDiamondFactory(
            ClusterDiamondFactory.Facets({
                diamondCut: address(new DiamondCutFacet()),
                diamondLoupe: address(new DiamondLoupeFacet()),
                ownership: address(new OwnershipFacet()),
                attest: address(new AttestFacet()),
                message: address(new MessageFacet()),
                network: address(new NetworkFacet()),
                dstack: address(new DstackFacet())
            }),
            address(new ClusterInit())
        );
        IndexerRegistry registry = new IndexerRegistry(deployer);
        SponsorPaymaster paymaster =
            new SponsorPaymaster(IEntryPoint(ENTRY_POINT_V07), deployer, sponsorSigner);
        paymaster.deposit{value: vm.envOr("PAYMASTER_DEPOSIT", uint256(10 ether))}();

        ClusterInitArgs memory args;
        args.clusterOwner = deployer;
        args.meshCidrIp = cidrIp;
        args.meshPrefix = prefix;
        args.memberFactory = address(memberFactory);
        args.kmsRoots = new address[](1);
        args.kmsRoots[0] = kmsRoot;
        args.allowAnyDevice = true;
        address cluster = diamondFactory.deployCluster(args, keccak256("attestmesh.devnet.cluster"));
        vm.stopBroadcast();

        string memory o = "deployment";
        vm.serializeUint(o, "chainId", block.chainid);
        vm.serializeAddress(o, "entryPoint", ENTRY_POINT_V07);
        vm.serializeAddress(o, "clusterDiamondFactory", address(diamondFactory));
        vm.serializeAddress(o, "clusterMemberFactory", address(memberFactory));
        vm.serializeAddress(o, "indexerRegistry", address(registry));
        vm.serializeAddress(o, "sponsorPaymaster", address(paymaster));
        vm.serializeAddress(o, "kmsRoot", kmsRoot);
        vm.serializeAddress(o, "clusterOwner", deployer);
        string memory json = vm.serializeAddress(o, "cluster", cluster);
        console2.log(json);
        string memory out = vm.envOr("DEPLOYMENT_OUT", string(""));
        if (bytes(out).length != 0) vm.writeJson(json, out);
    }
}
