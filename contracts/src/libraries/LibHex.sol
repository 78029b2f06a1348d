// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Lowercase hex without a 0x prefix — the exact text dstack's app key signs over.
library LibHex {
    bytes16 private constant ALPHABET = "0123456789abcdef";

    function toHexNo0x(bytes memory data) internal pure returns (string memory) {
        bytes memory out = new bytes(data.length * 2);
        for (uint256 i; i < data.length; ++i) {
            uint8 b = uint8(data[i]);
            out[2 * i] = ALPHABET[b >> 4];
            out[2 * i + 1] = ALPHABET[b & 0x0f];
        }
        return string(out);
    }
}
