// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ClusterInitArgs} from "./ClusterTypes.sol";

/// @notice Deploys clusters from the shared facets; the Indexer discovers clusters from its events.
interface IClusterDiamondFactory {
    event ClusterDeployed(address indexed cluster, address indexed clusterOwner, bytes32 salt);

    function deployCluster(ClusterInitArgs calldata args, bytes32 salt) external returns (address cluster);
    function predictClusterAddress(ClusterInitArgs calldata args, bytes32 salt)
        external
        view
        returns (address);
    function isDeployedCluster(address cluster) external view returns (bool);
}

struct IndexerRecord {
    string endpoint;
    bytes32 codeId;
    bytes32 pubKey; // Ed25519
    uint64 updatedAt; // block timestamp of the last update
}

/// @notice One owner-maintained record naming the Indexer agents trust for wake-ups (DESIGN §3.8).
interface IIndexerRegistry {
    event IndexerUpdated(string endpoint, bytes32 codeId, bytes32 pubKey, uint64 updatedAt);

    function current() external view returns (IndexerRecord memory);
    function setIndexer(IndexerRecord calldata record) external;
}
