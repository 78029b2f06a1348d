// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";

/// @notice Test-only stand-in for a stock dstack app contract that an operator allowlisted by app id
/// ("path A" before its upgrade): it only knows its cluster and accepts its owner once, from the
/// cluster — the two things DstackFacet relies on.
contract TestAppMember {
    address public cluster;
    address public owner;

    constructor(address cluster_) {
        cluster = cluster_;
    }

    function setOwnerFromCluster(address owner_) external {
        if (msg.sender != cluster) revert IClusterMember.OnlyCluster();
        if (owner != address(0)) revert IClusterMember.OwnerAlreadySet();
        if (owner_ == address(0)) revert IClusterMember.ZeroAddress();
        owner = owner_;
    }
}
