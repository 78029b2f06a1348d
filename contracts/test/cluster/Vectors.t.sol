// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {ClusterInitArgs} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IClusterDiamondFactory, IIndexerRegistry} from "../../src/interfaces/IClusterDiamondFactory.sol";
import {IClusterMember, IClusterMemberFactory} from "../../src/interfaces/IClusterMember.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {IMessageFacet} from "../../src/interfaces/IMessageFacet.sol";
import {INetworkFacet} from "../../src/interfaces/INetworkFacet.sol";
import {LibAttestStorage} from "../../src/libraries/LibAttestStorage.sol";
import {LibBinding} from "../../src/libraries/LibBinding.sol";
import {LibDiamond} from "../../src/libraries/LibDiamond.sol";
import {LibDstackStorage} from "../../src/libraries/LibDstackStorage.sol";
import {LibMessageStorage} from "../../src/libraries/LibMessageStorage.sol";
import {LibNetworkStorage} from "../../src/libraries/LibNetworkStorage.sol";
import {LibWgKey} from "../../src/libraries/LibWgKey.sol";
import {Secp256k1} from "../../src/libraries/Secp256k1.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {DstackChain} from "../utils/DstackChain.sol";

/// @dev External wrapper so the library runs as deployed code.
contract Secp256k1VectorHarness {
    function toAddress(bytes memory pub) external view returns (address) {
        return Secp256k1.toAddress(pub);
    }
}

/// @notice The shared vectors in spec/vectors/ (generated independently with `cast`; the Rust
/// side reads the same files) checked against the on-chain code (DESIGN §4.3, §15.1).
contract VectorsTest is ClusterFixture {
    string internal constant DIR = "../spec/vectors/";

    function _json(string memory file) internal view returns (string memory) {
        return vm.readFile(string.concat(DIR, file));
    }

    function _key(string memory arr, uint256 i, string memory field) internal pure returns (string memory) {
        return string.concat(".", arr, "[", vm.toString(i), "].", field);
    }

    function _count(string memory json, string memory arr) internal view returns (uint256 n) {
        while (vm.keyExistsJson(json, string.concat(".", arr, "[", vm.toString(n), "]"))) ++n;
    }

    // ------------------------------------------------------------------ mesh IPs

    function _dotted(uint32 ip) internal pure returns (string memory) {
        return string.concat(
            vm.toString(ip >> 24),
            ".",
            vm.toString((ip >> 16) & 0xff),
            ".",
            vm.toString((ip >> 8) & 0xff),
            ".",
            vm.toString(ip & 0xff)
        );
    }

    /// @dev A cluster deployed for the vector's CIDR (the fixture's 10.13.0.0/16 one when it matches).
    function _clusterFor(uint32 cidr, uint8 prefix) internal returns (address) {
        if (cidr == MESH_CIDR_IP && prefix == MESH_PREFIX) return cluster;
        ClusterInitArgs memory args = defaultClusterArgs();
        args.meshCidrIp = cidr;
        args.meshPrefix = prefix;
        bytes32 salt = keccak256(abi.encode(cidr, prefix));
        address c = diamondFactory.predictClusterAddress(args, salt);
        if (c.code.length == 0) diamondFactory.deployCluster(args, salt);
        return c;
    }

    function test_vectors_meshIps() public {
        string memory json = _json("mesh_ips.json");
        uint256 n = _count(json, "cases");
        assertGt(n, 0);
        uint256 onFixtureCluster;
        for (uint256 i; i < n; ++i) {
            uint32 cidr = uint32(vm.parseJsonUint(json, _key("cases", i, "cidr_ip")));
            uint8 prefix = uint8(vm.parseJsonUint(json, _key("cases", i, "prefix")));
            bytes32 id = vm.parseJsonBytes32(json, _key("cases", i, "member_id"));
            uint32 ip = uint32(vm.parseJsonUint(json, _key("cases", i, "ip")));
            assertEq(LibBinding.meshIp(cidr, prefix, id), ip, "LibBinding.meshIp");
            assertEq(IAttestFacet(_clusterFor(cidr, prefix)).meshIpOf(id), ip, "meshIpOf on chain");
            assertEq(_dotted(ip), vm.parseJsonString(json, _key("cases", i, "dotted")), "dotted");
            if (cidr == MESH_CIDR_IP && prefix == MESH_PREFIX) ++onFixtureCluster;
        }
        assertGe(onFixtureCluster, 3, "the DESIGN 3.2 vectors (10.13.0.0/16) are present");
    }

    // ------------------------------------------------------------------ member ids

    function test_vectors_memberIds() public view {
        string memory json = _json("member_ids.json");
        assertEq(vm.parseJsonBytes32(json, ".attestor_id_dstack"), LibBinding.DSTACK_ATTESTOR_ID);
        uint256 n = _count(json, "cases");
        assertGt(n, 0);
        for (uint256 i; i < n; ++i) {
            address c = vm.parseJsonAddress(json, _key("cases", i, "cluster"));
            address m = vm.parseJsonAddress(json, _key("cases", i, "member_contract"));
            bytes32 att = vm.parseJsonBytes32(json, _key("cases", i, "attestor_id"));
            assertEq(LibBinding.memberId(c, m, att), vm.parseJsonBytes32(json, _key("cases", i, "member_id")));
        }
    }

    // ------------------------------------------------------------------ WireGuard keys

    /// @dev Small-order and canonical-encoding verdicts from spec/vectors/wg_keys.json (computed
    /// with a Montgomery ladder in the generator), both in LibWgKey and through publishWgKey.
    function test_vectors_wgKeys() public {
        (address member, bytes32 id,) = deployAndRegister("vectors");
        string memory json = _json("wg_keys.json");
        uint256 n = _count(json, "cases");
        assertGt(n, 0);
        for (uint256 i; i < n; ++i) {
            bytes32 key = vm.parseJsonBytes32(json, _key("cases", i, "key"));
            bool lowOrder = vm.parseJsonBool(json, _key("cases", i, "low_order"));
            bool canonical = vm.parseJsonBool(json, _key("cases", i, "canonical"));
            assertEq(LibWgKey.isLowOrder(key), lowOrder, vm.toString(key));
            assertEq(LibWgKey.isCanonical(key), canonical, vm.toString(key));
            if (lowOrder) vm.expectRevert(IAttestFacet.WgKeyLowOrder.selector);
            else if (!canonical) vm.expectRevert(IAttestFacet.WgKeyNotCanonical.selector);
            vm.prank(member);
            INetworkFacet(cluster).publishWgKey(key);
            if (!lowOrder && canonical) assertEq(INetworkFacet(cluster).wgPubKeyOf(id), key);
        }
    }

    // ------------------------------------------------------------------ binding hashes

    function test_vectors_bindingHashes() public view {
        string memory json = _json("binding_hashes.json");
        uint256 n = _count(json, "cases");
        assertGt(n, 0);
        for (uint256 i; i < n; ++i) {
            address c = vm.parseJsonAddress(json, _key("cases", i, "cluster"));
            address m = vm.parseJsonAddress(json, _key("cases", i, "member_contract"));
            bytes32 x = vm.parseJsonBytes32(json, _key("cases", i, "x_pub_key"));
            bytes32 wg = vm.parseJsonBytes32(json, _key("cases", i, "wg_pub_key"));
            bytes32 ed = vm.parseJsonBytes32(json, _key("cases", i, "ed_pub_key"));
            bytes32 h = vm.parseJsonBytes32(json, _key("cases", i, "bind_hash"));
            assertEq(LibBinding.bindHash(c, m, x, wg, ed), h, "LibBinding.bindHash");
            assertEq(DstackChain.bindHash(c, m, x, wg, ed), h, "test chain builder");
            bytes32 eth = vm.parseJsonBytes32(json, _key("cases", i, "eth_signed_hash"));
            assertEq(MessageHashUtils.toEthSignedMessageHash(h), eth);
            assertEq(DstackChain.ethSignedHash(h), eth);
        }
    }

    // ------------------------------------------------------------------ ERC-7201 slots

    function _erc7201(string memory id) internal pure returns (bytes32) {
        return keccak256(abi.encode(uint256(keccak256(bytes(id))) - 1)) & ~bytes32(uint256(0xff));
    }

    function test_storageSlots_formula() public pure {
        assertEq(LibDiamond.STORAGE_SLOT, _erc7201("attestmesh.storage.Diamond"));
        assertEq(LibAttestStorage.STORAGE_SLOT, _erc7201("attestmesh.storage.Attest"));
        assertEq(LibMessageStorage.STORAGE_SLOT, _erc7201("attestmesh.storage.Message"));
        assertEq(LibNetworkStorage.STORAGE_SLOT, _erc7201("attestmesh.storage.Network"));
        assertEq(LibDstackStorage.STORAGE_SLOT, _erc7201("attestmesh.storage.Dstack"));
    }

    function test_vectors_erc7201Slots() public view {
        string memory json = _json("erc7201_slots.json");
        uint256 n = _count(json, "cases");
        uint256 ours;
        for (uint256 i; i < n; ++i) {
            string memory id = vm.parseJsonString(json, _key("cases", i, "id"));
            bytes32 slot = vm.parseJsonBytes32(json, _key("cases", i, "slot"));
            assertEq(_erc7201(id), slot, id);
            bytes32 h = keccak256(bytes(id));
            bytes32 constant_;
            if (h == keccak256("attestmesh.storage.Diamond")) constant_ = LibDiamond.STORAGE_SLOT;
            else if (h == keccak256("attestmesh.storage.Attest")) constant_ = LibAttestStorage.STORAGE_SLOT;
            else if (h == keccak256("attestmesh.storage.Message")) constant_ = LibMessageStorage.STORAGE_SLOT;
            else if (h == keccak256("attestmesh.storage.Network")) constant_ = LibNetworkStorage.STORAGE_SLOT;
            else if (h == keccak256("attestmesh.storage.Dstack")) constant_ = LibDstackStorage.STORAGE_SLOT;
            else continue; // another owner's namespace (e.g. ClusterMember): formula checked above
            assertEq(constant_, slot, id);
            ++ours;
        }
        assertEq(ours, 5, "every cluster namespace has a vector");
    }

    // ------------------------------------------------------------------ selectors and topics

    /// @dev The selector the compiled interfaces give for a signature in the vector file.
    function _selectorOf(string memory sig) internal pure returns (bool, bytes4) {
        bytes32 h = keccak256(bytes(sig));
        bytes4[40] memory sels = [
            IDstackFacet.dstack_register.selector,
            IMessageFacet.send.selector,
            IMessageFacet.sendOwnerCommand.selector,
            IAttestFacet.setCskCommitment.selector,
            INetworkFacet.publishWgKey.selector,
            IClusterMember.execute.selector,
            IAttestFacet.isClusterMember.selector,
            IAttestFacet.memberIdOf.selector,
            IAttestFacet.memberOf.selector,
            IAttestFacet.memberById.selector,
            IAttestFacet.listMembers.selector,
            IAttestFacet.memberCount.selector,
            IAttestFacet.clusterOwner.selector,
            IAttestFacet.meshCidr.selector,
            IAttestFacet.meshIpOf.selector,
            IAttestFacet.cskCommitment.selector,
            INetworkFacet.wgPubKeyOf.selector,
            INetworkFacet.edPubKeyOf.selector,
            IDstackFacet.isAppAllowed.selector,
            IClusterMember.cluster.selector,
            IClusterMember.owner.selector,
            IClusterMemberFactory.deployMember.selector,
            IClusterMemberFactory.predictMemberAddress.selector,
            IClusterMemberFactory.isOurMember.selector,
            IIndexerRegistry.current.selector,
            IMessageFacet.NotClusterMember.selector,
            IMessageFacet.RecipientNotMember.selector,
            IMessageFacet.DuplicateEnvelope.selector,
            IAttestFacet.AlreadyRegistered.selector,
            IAttestFacet.NotOriginator.selector,
            IAttestFacet.CskCommitmentAlreadySet.selector,
            IDstackFacet.NotOurMember.selector,
            IDstackFacet.InvalidSigChain.selector,
            IDstackFacet.BindingMismatch.selector,
            IDstackFacet.InvalidPubKeyLength.selector,
            IDstackFacet.PointNotOnCurve.selector,
            IClusterMember.InvalidBootstrapCall.selector,
            IAttestFacet.WgKeyInUse.selector,
            IAttestFacet.WgKeyLowOrder.selector,
            IAttestFacet.WgKeyNotCanonical.selector
        ];
        string[40] memory sigs = [
            "dstack_register((bytes,bytes,bytes,bytes,string,bytes),address,bytes32,bytes32,bytes32)",
            "send(bytes32,bytes32,bytes)",
            "sendOwnerCommand(bytes32,bytes32,bytes)",
            "setCskCommitment(bytes32)",
            "publishWgKey(bytes32)",
            "execute(address,uint256,bytes)",
            "isClusterMember(address)",
            "memberIdOf(address)",
            "memberOf(address)",
            "memberById(bytes32)",
            "listMembers()",
            "memberCount()",
            "clusterOwner()",
            "meshCidr()",
            "meshIpOf(bytes32)",
            "cskCommitment()",
            "wgPubKeyOf(bytes32)",
            "edPubKeyOf(bytes32)",
            "isAppAllowed((address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[]))",
            "cluster()",
            "owner()",
            "deployMember(address,bytes32)",
            "predictMemberAddress(address,bytes32)",
            "isOurMember(address)",
            "current()",
            "NotClusterMember()",
            "RecipientNotMember()",
            "DuplicateEnvelope()",
            "AlreadyRegistered()",
            "NotOriginator()",
            "CskCommitmentAlreadySet()",
            "NotOurMember()",
            "InvalidSigChain()",
            "BindingMismatch()",
            "InvalidPubKeyLength()",
            "PointNotOnCurve()",
            "InvalidBootstrapCall()",
            "WgKeyInUse()",
            "WgKeyLowOrder()",
            "WgKeyNotCanonical()"
        ];
        for (uint256 i; i < sigs.length; ++i) {
            if (keccak256(bytes(sigs[i])) == h) return (true, sels[i]);
        }
        return (false, bytes4(0));
    }

    function test_vectors_selectors() public view {
        string memory json = _json("selectors.json");
        uint256 n = _count(json, "cases");
        assertGt(n, 0);
        for (uint256 i; i < n; ++i) {
            string memory sig = vm.parseJsonString(json, _key("cases", i, "signature"));
            bytes4 expected = bytes4(vm.parseJsonBytes(json, _key("cases", i, "selector")));
            assertEq(bytes4(keccak256(bytes(sig))), expected, sig);
            (bool found, bytes4 compiled) = _selectorOf(sig);
            assertTrue(found, string.concat("no compiled counterpart for ", sig));
            assertEq(compiled, expected, sig);
        }
    }

    function _topicOf(string memory sig) internal pure returns (bool, bytes32) {
        bytes32 h = keccak256(bytes(sig));
        if (h == keccak256("MemberRegistered(bytes32,address,bytes32,bytes32,bytes32,bytes32)")) {
            return (true, IAttestFacet.MemberRegistered.selector);
        }
        if (h == keccak256("MessageSent(bytes32,bytes32,bytes32,bytes)")) {
            return (true, IMessageFacet.MessageSent.selector);
        }
        if (h == keccak256("CskCommitmentSet(bytes32)")) {
            return (true, IAttestFacet.CskCommitmentSet.selector);
        }
        if (h == keccak256("WgKeyPublished(bytes32,bytes32)")) {
            return (true, INetworkFacet.WgKeyPublished.selector);
        }
        if (h == keccak256("DstackMemberRegistered(bytes32,address)")) {
            return (true, IDstackFacet.DstackMemberRegistered.selector);
        }
        if (h == keccak256("ClusterDeployed(address,address,bytes32)")) {
            return (true, IClusterDiamondFactory.ClusterDeployed.selector);
        }
        if (h == keccak256("IndexerUpdated(string,bytes32,bytes32,uint64)")) {
            return (true, IIndexerRegistry.IndexerUpdated.selector);
        }
        return (false, bytes32(0));
    }

    function test_vectors_eventTopics() public view {
        string memory json = _json("selectors.json");
        uint256 n = _count(json, "events");
        assertGt(n, 0);
        for (uint256 i; i < n; ++i) {
            string memory sig = vm.parseJsonString(json, _key("events", i, "signature"));
            bytes32 expected = vm.parseJsonBytes32(json, _key("events", i, "topic0"));
            assertEq(keccak256(bytes(sig)), expected, sig);
            (bool found, bytes32 compiled) = _topicOf(sig);
            assertTrue(found, string.concat("no compiled counterpart for ", sig));
            assertEq(compiled, expected, sig);
        }
    }

    // ------------------------------------------------------------------ compressed keys

    function test_vectors_compressedKeys() public {
        Secp256k1VectorHarness h = new Secp256k1VectorHarness();
        string memory json = _json("compressed_keys.json");
        uint256 n = _count(json, "cases");
        assertGt(n, 0);
        for (uint256 i; i < n; ++i) {
            uint256 pk = uint256(vm.parseJsonBytes32(json, _key("cases", i, "private_key")));
            bytes memory compressed = vm.parseJsonBytes(json, _key("cases", i, "compressed"));
            address addr = vm.parseJsonAddress(json, _key("cases", i, "address"));
            assertEq(vm.addr(pk), addr, "vector consistent with forge's signer");
            assertEq(DstackChain.compressedPubkey(pk), compressed, "test chain builder");
            assertEq(h.toAddress(compressed), addr, "Secp256k1.toAddress");
        }
    }
}
