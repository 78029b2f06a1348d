// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Initializable} from "@openzeppelin/contracts/proxy/utils/Initializable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts/proxy/utils/UUPSUpgradeable.sol";

/// @notice The shape of what a hosted dstack KMS mints per app: a UUPS implementation behind an
/// ERC-1967 proxy, initialised once (Initializable version 1) with an owner who alone authorises
/// upgrades, answering the KMS's boot gate from its own allowlist. Used to exercise "path A"
/// (DESIGN §3.7): the owner upgrades this proxy into a ClusterMember.
contract StockDstackApp is Initializable, UUPSUpgradeable {
    /// @custom:storage-location erc7201:test.storage.StockDstackApp
    struct AppStorage {
        address owner;
        mapping(bytes32 => bool) composeHashes;
    }

    // keccak256(abi.encode(uint256(keccak256("test.storage.StockDstackApp")) - 1)) & ~0xff, computed
    // at compile time here: this is a test model, not a layout anyone else depends on.
    bytes32 private constant SLOT = keccak256(
        abi.encode(uint256(keccak256("test.storage.StockDstackApp")) - 1)
    ) & ~bytes32(uint256(0xff));

    error NotOwner();

    constructor() {
        _disableInitializers();
    }

    function initialize(address owner_, bytes32 composeHash) external initializer {
        AppStorage storage $ = _s();
        $.owner = owner_;
        $.composeHashes[composeHash] = true;
    }

    function owner() external view returns (address) {
        return _s().owner;
    }

    function allowedComposeHashes(bytes32 composeHash) external view returns (bool) {
        return _s().composeHashes[composeHash];
    }

    function _authorizeUpgrade(address) internal view override {
        if (msg.sender != _s().owner) revert NotOwner();
    }

    function _s() private pure returns (AppStorage storage $) {
        bytes32 slot = SLOT;
        assembly {
            $.slot := slot
        }
    }
}
