// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Compressed secp256k1 public key → Ethereum address. dstack hands out compressed keys
/// (33 bytes); ecrecover yields addresses, so the verifier needs the address of a compressed key.
library Secp256k1 {
    /// @dev Same selectors as IDstackFacet's errors, so callers see the documented errors.
    error InvalidPubKeyLength();
    error PointNotOnCurve();
    /// @dev The modexp precompile (0x05) failed — only possible if it is absent on the chain.
    error ModExpFailed();

    /// @dev Field prime p. p ≡ 3 (mod 4), so a square root of a is a^((p+1)/4) when one exists.
    uint256 internal constant P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;
    uint256 private constant SQRT_EXP = (P + 1) / 4;

    /// @notice Decompress `pub` = prefix(0x02 even y | 0x03 odd y) ‖ x(32) into (x, y).
    /// @dev Reverts InvalidPubKeyLength for a wrong length or prefix and PointNotOnCurve when
    /// x >= p or x^3 + 7 is not a square (no point with that x). The root is squared again and
    /// compared, because modexp returns a value for non-residues too.
    function decompress(bytes memory pub) internal view returns (uint256 x, uint256 y) {
        if (pub.length != 33) revert InvalidPubKeyLength();
        uint8 prefix = uint8(pub[0]);
        if (prefix != 0x02 && prefix != 0x03) revert InvalidPubKeyLength();
        assembly {
            x := mload(add(pub, 0x21))
        }
        if (x >= P) revert PointNotOnCurve();
        uint256 rhs = addmod(mulmod(mulmod(x, x, P), x, P), 7, P);
        y = _modExp(rhs, SQRT_EXP, P);
        if (mulmod(y, y, P) != rhs) revert PointNotOnCurve();
        // y == 0 is impossible on secp256k1 (no point of order 2), so P - y stays in range.
        if ((y & 1) != (prefix & 1)) y = P - y;
    }

    /// @notice The Ethereum address of a compressed public key: last 20 bytes of keccak256(x ‖ y).
    function toAddress(bytes memory pub) internal view returns (address) {
        (uint256 x, uint256 y) = decompress(pub);
        return address(uint160(uint256(keccak256(abi.encode(x, y)))));
    }

    function _modExp(uint256 base, uint256 exponent, uint256 modulus) private view returns (uint256 r) {
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 0x20) // base length
            mstore(add(m, 0x20), 0x20) // exponent length
            mstore(add(m, 0x40), 0x20) // modulus length
            mstore(add(m, 0x60), base)
            mstore(add(m, 0x80), exponent)
            mstore(add(m, 0xa0), modulus)
            ok := staticcall(gas(), 0x05, m, 0xc0, m, 0x20)
            ok := and(ok, eq(returndatasize(), 0x20))
            r := mload(m)
        }
        if (!ok) revert ModExpFailed();
    }
}
