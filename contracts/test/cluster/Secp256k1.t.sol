// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {LibHex} from "../../src/libraries/LibHex.sol";
import {Secp256k1} from "../../src/libraries/Secp256k1.sol";
import {DstackChain} from "../utils/DstackChain.sol";

/// @dev External wrapper so reverts can be asserted with expectRevert.
contract Secp256k1Harness {
    function toAddress(bytes memory pub) external view returns (address) {
        return Secp256k1.toAddress(pub);
    }

    function decompress(bytes memory pub) external view returns (uint256 x, uint256 y) {
        return Secp256k1.decompress(pub);
    }
}

/// @notice Compressed key → address, point decompression and its error cases; LibHex.
contract Secp256k1Test is Test {
    Secp256k1Harness internal h = new Secp256k1Harness();

    function testFuzz_toAddress_matchesVmAddr(bytes32 seed) public {
        uint256 pk = DstackChain.toPrivateKey(seed);
        assertEq(h.toAddress(DstackChain.compressedPubkey(pk)), vm.addr(pk));
    }

    function testFuzz_decompress_recoversY(bytes32 seed) public {
        uint256 pk = DstackChain.toPrivateKey(seed);
        Vm.Wallet memory w = vm.createWallet(pk);
        (uint256 x, uint256 y) = h.decompress(DstackChain.compressedPubkey(pk));
        assertEq(x, w.publicKeyX);
        assertEq(y, w.publicKeyY);
    }

    function test_generatorAndItsNegation() public view {
        // G and -G share x; the prefix alone selects y.
        bytes memory g = hex"0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        bytes memory negG = hex"0379be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        assertEq(h.toAddress(g), 0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf);
        assertEq(h.toAddress(negG), 0x80C0dbf239224071c59dD8970ab9d542E3414aB2);
    }

    function test_errorSelectorsMatchFacet() public pure {
        assertEq(Secp256k1.InvalidPubKeyLength.selector, IDstackFacet.InvalidPubKeyLength.selector);
        assertEq(Secp256k1.PointNotOnCurve.selector, IDstackFacet.PointNotOnCurve.selector);
    }

    function test_revert_length() public {
        vm.expectRevert(Secp256k1.InvalidPubKeyLength.selector);
        h.toAddress("");
        vm.expectRevert(Secp256k1.InvalidPubKeyLength.selector);
        h.toAddress(abi.encodePacked(bytes1(0x02), bytes31(0)));
        vm.expectRevert(Secp256k1.InvalidPubKeyLength.selector);
        h.toAddress(abi.encodePacked(bytes1(0x02), bytes32(uint256(1)), bytes1(0)));
        Vm.Wallet memory w = vm.createWallet(1);
        vm.expectRevert(Secp256k1.InvalidPubKeyLength.selector);
        h.toAddress(abi.encodePacked(bytes1(0x04), w.publicKeyX, w.publicKeyY));
    }

    function testFuzz_revert_badPrefix(uint8 prefix) public {
        if (prefix == 2 || prefix == 3) prefix = 4;
        vm.expectRevert(Secp256k1.InvalidPubKeyLength.selector);
        h.toAddress(abi.encodePacked(bytes1(prefix), bytes32(uint256(1))));
    }

    function test_revert_notOnCurve() public {
        uint256[4] memory xs = [uint256(0), 5, 7, 9]; // x^3 + 7 is a non-residue mod p for these
        for (uint256 i; i < xs.length; ++i) {
            vm.expectRevert(Secp256k1.PointNotOnCurve.selector);
            h.toAddress(abi.encodePacked(bytes1(0x02), bytes32(xs[i])));
        }
        // x = 1 is on the curve (sanity for the negative cases above)
        h.toAddress(abi.encodePacked(bytes1(0x02), bytes32(uint256(1))));
    }

    function test_revert_xNotInField() public {
        vm.expectRevert(Secp256k1.PointNotOnCurve.selector);
        h.toAddress(abi.encodePacked(bytes1(0x03), bytes32(Secp256k1.P)));
        vm.expectRevert(Secp256k1.PointNotOnCurve.selector);
        h.toAddress(abi.encodePacked(bytes1(0x02), bytes32(Secp256k1.P + 1))); // ≡ 1, on curve mod p
        vm.expectRevert(Secp256k1.PointNotOnCurve.selector);
        h.toAddress(abi.encodePacked(bytes1(0x02), bytes32(type(uint256).max)));
    }

    /// @dev Any x in [p, 2^256) is out of the field, whatever its residue mod p.
    function testFuzz_revert_xNotInField(uint256 x, bool odd) public {
        x = bound(x, Secp256k1.P, type(uint256).max);
        vm.expectRevert(Secp256k1.PointNotOnCurve.selector);
        h.toAddress(abi.encodePacked(bytes1(odd ? 0x03 : 0x02), bytes32(x)));
    }

    /// @dev For any x in the field: either decompression refuses (no curve point has that x) or it
    /// returns a point that IS on the curve, with the parity the prefix asked for.
    function testFuzz_decompress_onlyCurvePoints(uint256 x, bool odd) public view {
        x = bound(x, 0, Secp256k1.P - 1);
        uint256 p = Secp256k1.P;
        try h.decompress(abi.encodePacked(bytes1(odd ? 0x03 : 0x02), bytes32(x))) returns (
            uint256 gx, uint256 y
        ) {
            assertEq(gx, x);
            assertLt(y, p);
            assertEq(mulmod(y, y, p), addmod(mulmod(mulmod(x, x, p), x, p), 7, p), "y^2 = x^3 + 7");
            assertEq(y & 1, odd ? 1 : 0, "parity from the prefix");
        } catch (bytes memory err) {
            assertEq(err, abi.encodeWithSelector(Secp256k1.PointNotOnCurve.selector));
        }
    }

    /// @dev Every length but 33 is refused before anything else is looked at.
    function testFuzz_revert_anyOtherLength(bytes memory pub) public {
        if (pub.length == 33) pub = bytes.concat(pub, hex"00");
        vm.expectRevert(Secp256k1.InvalidPubKeyLength.selector);
        h.toAddress(pub);
    }

    /// @dev The modexp precompile failing (absent on some chain) is reported, not read as a root.
    function test_revert_modExpFailed() public {
        vm.mockCallRevert(address(5), bytes(""), bytes(""));
        vm.expectRevert(Secp256k1.ModExpFailed.selector);
        h.toAddress(abi.encodePacked(bytes1(0x02), bytes32(uint256(1))));
    }

    function testFuzz_libHex_matchesVmToString(bytes memory data) public pure {
        assertEq(LibHex.toHexNo0x(data), DstackChain.lowerHexNo0x(data));
    }

    function test_libHex_lowercaseNoPrefix() public pure {
        assertEq(LibHex.toHexNo0x(hex"00ABcdEF0f"), "00abcdef0f");
        assertEq(LibHex.toHexNo0x(""), "");
    }
}
