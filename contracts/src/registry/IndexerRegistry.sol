// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IIndexerRegistry, IndexerRecord} from "../interfaces/IClusterDiamondFactory.sol";

/// @notice The one record agents trust to verify Indexer pushes (DESIGN §3.8, §9.2). Pushes are
/// only wake-ups, so the worst a stale record does is slow agents down, never feed them data.
contract IndexerRegistry is IIndexerRegistry, Ownable2Step {
    /// @dev An empty endpoint or a zero key would make every agent drop its subscription forever.
    error EmptyEndpoint();
    error ZeroPubKey();

    IndexerRecord private _record;

    constructor(address initialOwner) Ownable(initialOwner) {}

    function current() external view returns (IndexerRecord memory) {
        return _record;
    }

    /// @notice Replaces the record; `updatedAt` is the block timestamp, whatever the input says.
    function setIndexer(IndexerRecord calldata record) external onlyOwner {
        if (bytes(record.endpoint).length == 0) revert EmptyEndpoint();
        if (record.pubKey == bytes32(0)) revert ZeroPubKey();
        uint64 nowTs = uint64(block.timestamp);
        _record = IndexerRecord({
            endpoint: record.endpoint, codeId: record.codeId, pubKey: record.pubKey, updatedAt: nowTs
        });
        emit IndexerUpdated(record.endpoint, record.codeId, record.pubKey, nowTs);
    }
}
