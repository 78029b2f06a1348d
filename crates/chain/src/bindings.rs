//! Solidity bindings for the views and factories the registration flow touches. Mirrors
//! contracts/src/interfaces/*.sol; selectors are pinned by spec/vectors/selectors.json.

use alloy_sol_types::sol;

sol! {
    #[derive(Debug, PartialEq, Eq)]
    struct MemberRecord {
        bytes32 attestorId;
        address memberContract;
        bytes32 xPubKey;
        bytes32 wgPubKey;
        bytes32 edPubKey;
        uint64 registeredAt;
    }

    #[derive(Debug, PartialEq, Eq)]
    struct ClusterInitArgs {
        address clusterOwner;
        uint32 meshCidrIp;
        uint8 meshPrefix;
        address memberFactory;
        address[] kmsRoots;
        bytes32[] composeHashes;
        bytes32[] devices;
        address[] appIds;
        bool allowAnyDevice;
        bool requireTcbUpToDate;
    }

    /// Constructor argument of ClusterDiamondFactory.
    #[derive(Debug, PartialEq, Eq)]
    struct Facets {
        address diamondCut;
        address diamondLoupe;
        address ownership;
        address attest;
        address message;
        address network;
        address dstack;
    }

    interface IAttestFacet {
        error AlreadyRegistered();
        function isClusterMember(address memberContract) external view returns (bool);
        function memberIdOf(address memberContract) external view returns (bytes32);
        function memberOf(address memberContract) external view returns (MemberRecord memory);
        function memberCount() external view returns (uint256);
        function meshCidr() external view returns (uint32 ip, uint8 prefix);
        function meshIpOf(bytes32 memberId) external view returns (uint32);
    }

    interface IDstackFacet {
        error NotOurMember();
        error InvalidSigChain();
        error BindingMismatch();
        error InvalidPubKeyLength();
        error PointNotOnCurve();
        function allowedKmsRoots(address kmsRoot) external view returns (bool);
    }

    interface IClusterMember {
        function cluster() external view returns (address);
        function owner() external view returns (address);
    }

    interface IClusterMemberFactory {
        function deployMember(address cluster, bytes32 salt) external returns (address member);
        function predictMemberAddress(address cluster, bytes32 salt) external view returns (address);
        function isOurMember(address member) external view returns (bool);
    }

    interface IClusterDiamondFactory {
        function deployCluster(ClusterInitArgs args, bytes32 salt) external returns (address cluster);
        function predictClusterAddress(ClusterInitArgs args, bytes32 salt) external view returns (address);
        function isDeployedCluster(address cluster) external view returns (bool);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloy_sol_types::{SolCall, SolError};

    #[test]
    fn selectors_match_the_contracts() {
        assert_eq!(
            IAttestFacet::memberOfCall::SELECTOR,
            [0x3b, 0x4c, 0x98, 0x91]
        );
        assert_eq!(
            IAttestFacet::meshIpOfCall::SELECTOR,
            [0xbb, 0x67, 0x17, 0x32]
        );
        assert_eq!(
            IClusterMemberFactory::deployMemberCall::SELECTOR,
            [0xc8, 0x3a, 0xd2, 0xfc]
        );
        assert_eq!(
            IDstackFacet::InvalidSigChain::SELECTOR,
            [0x35, 0x56, 0x5c, 0x11]
        );
        assert_eq!(
            IClusterMember::ownerCall::SELECTOR,
            [0x8d, 0xa5, 0xcb, 0x5b]
        );
    }
}
