// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Which 32-byte strings may stand as a member's WireGuard (X25519) public key.
/// @dev The key is stored as WireGuard sends it: `bytes32` byte i is key byte i, i.e. the
/// little-endian u-coordinate, so the top bit of u is bit 7 of byte 31 (the lowest byte of
/// `uint256(key)`). X25519 ignores that bit and reduces u mod p = 2^255 - 19, so one point has
/// several encodings; only the canonical one (bit 255 clear, u < p) is accepted, which makes the
/// cluster's uniqueness index (raw bytes) an index of points.
library LibWgKey {
    /// @dev Bit 255 of u: the lowest byte's top bit in the bytes32 layout.
    uint256 private constant TOP_BIT = 0x80;

    // The u-coordinates of the points of order 1, 2, 4 and 8 (libsodium's X25519 blocklist,
    // which WireGuard implementations apply too), little-endian, bit 255 clear. p and p + 1 are
    // the non-canonical encodings of 0 and 1 (the only small-order u below 19, the largest
    // offset that fits p + u in 255 bits).
    bytes32 private constant U_ZERO = 0x0000000000000000000000000000000000000000000000000000000000000000;
    bytes32 private constant U_ONE = 0x0100000000000000000000000000000000000000000000000000000000000000;
    bytes32 private constant U_ORDER8_A = 0xe0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800;
    bytes32 private constant U_ORDER8_B = 0x5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157;
    bytes32 private constant U_P_MINUS_1 = 0xecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f;
    bytes32 private constant U_P = 0xedffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f;
    bytes32 private constant U_P_PLUS_1 = 0xeeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f;

    /// @dev Bytes 1..31 of p (little-endian): thirty 0xff and the final 0x7f. A key whose bytes
    /// 1..31 equal these is >= p exactly when its byte 0 is >= 0xed.
    uint256 private constant P_HIGH_BYTES =
        0x00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f;
    uint256 private constant P_LOW_BYTE = 0xed;

    /// @notice True for every encoding (canonical or not, bit 255 set or not) of a point of small
    /// order: a Diffie-Hellman with it yields a value the peer's private key does not influence.
    function isLowOrder(bytes32 key) internal pure returns (bool) {
        bytes32 u = key & ~bytes32(TOP_BIT);
        return u == U_ZERO || u == U_ONE || u == U_ORDER8_A || u == U_ORDER8_B || u == U_P_MINUS_1 || u == U_P
            || u == U_P_PLUS_1;
    }

    /// @notice True when `key` is the one encoding X25519 itself produces: bit 255 clear, u < p.
    function isCanonical(bytes32 key) internal pure returns (bool) {
        uint256 w = uint256(key);
        if (w & TOP_BIT != 0) return false;
        return (w & P_HIGH_BYTES) != P_HIGH_BYTES || (w >> 248) < P_LOW_BYTE;
    }
}
