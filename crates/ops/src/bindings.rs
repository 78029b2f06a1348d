//! The contract surface operator commands use beyond what `attestmesh-chain` binds: the dstack
//! admission policy (setters, views, events), ownership views, the factories' events and
//! immutables, the IndexerRegistry, UUPS upgrades and the errors they revert with. Mirrors
//! contracts/src; selectors are checked against the compiled artifacts' ABIs in the tests.

use alloy_sol_types::sol;

sol! {
    #[derive(Debug, PartialEq, Eq)]
    struct IndexerRecord {
        string endpoint;
        bytes32 codeId;
        bytes32 pubKey;
        uint64 updatedAt;
    }

    interface IDstackPolicy {
        event ComposeHashAdded(bytes32 composeHash);
        event ComposeHashRemoved(bytes32 composeHash);
        event DeviceAdded(bytes32 deviceId);
        event DeviceRemoved(bytes32 deviceId);
        event AllowAnyDeviceSet(bool allowAny);
        event RequireTcbUpToDateSet(bool required);
        event KmsRootAdded(address kmsRoot);
        event KmsRootRemoved(address kmsRoot);
        event AppIdAdded(address appId);
        event AppIdRemoved(address appId);

        function addComposeHash(bytes32 composeHash) external;
        function removeComposeHash(bytes32 composeHash) external;
        function addDevice(bytes32 deviceId) external;
        function removeDevice(bytes32 deviceId) external;
        function setAllowAnyDevice(bool allowAny) external;
        function setRequireTcbUpToDate(bool required) external;
        function addAllowedKmsRoot(address kmsRoot) external;
        function removeAllowedKmsRoot(address kmsRoot) external;
        function addAllowedAppId(address appId) external;
        function removeAllowedAppId(address appId) external;

        function allowedComposeHashes(bytes32 composeHash) external view returns (bool);
        function allowedDeviceIds(bytes32 deviceId) external view returns (bool);
        function allowAnyDevice() external view returns (bool);
        function requireTcbUpToDate() external view returns (bool);
        function allowedKmsRoots(address kmsRoot) external view returns (bool);
        function allowedAppIds(address appId) external view returns (bool);
        function memberFactory() external view returns (address);
    }

    interface IClusterViews {
        function clusterOwner() external view returns (address);
        function pendingClusterOwner() external view returns (address);
        /// The diamond (cut) owner, OwnershipFacet.
        function owner() external view returns (address);
        function meshCidr() external view returns (uint32 ip, uint8 prefix);
        function memberCount() external view returns (uint256);
        function cskCommitment() external view returns (bytes32);
        function meshIpOf(bytes32 memberId) external view returns (uint32);
    }

    interface IFactoryEvents {
        event ClusterDeployed(address indexed cluster, address indexed clusterOwner, bytes32 salt);
        event MemberDeployed(address indexed member, address indexed cluster, bytes32 salt);
    }

    interface IMemberFactoryImpl {
        function implementation() external view returns (address);
    }

    interface IIndexerRegistry {
        function current() external view returns (IndexerRecord memory);
        function setIndexer(IndexerRecord record) external;
        function owner() external view returns (address);
    }

    /// A UUPS proxy (the stock dstack app, a ClusterMember).
    interface IUups {
        function upgradeToAndCall(address newImplementation, bytes data) external payable;
        function proxiableUUID() external view returns (bytes32);
        /// The stock dstack app's owner (who alone may upgrade it).
        function owner() external view returns (address);
    }

    interface IMemberBinding {
        function reinitializeFromDstackApp(address cluster) external;
        function cluster() external view returns (address);
    }

    interface IEntryPointDeposit {
        function balanceOf(address account) external view returns (uint256);
    }

    interface IPaymasterDeposit {
        function deposit() external payable;
    }

    interface IOperatorErrors {
        error OwnableUnauthorizedAccount(address account);
        error NotOwner();
        error OnlyClusterOwner();
        error UUPSUnauthorizedCallContext();
        error UUPSUnsupportedProxiableUUID(bytes32 slot);
        error ERC1967InvalidImplementation(address implementation);
        error InvalidInitialization();
        error ZeroPubKey();
    }
}
