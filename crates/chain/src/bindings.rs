//! Solidity bindings for every contract surface the workspace touches: the registration flow,
//! the node's views, the 4337 stack, and the operator commands (admission policy setters and
//! events, factory events, the Indexer registry, UUPS upgrades of the stock dstack app). One
//! place, so a changed contract breaks one file. Mirrors contracts/src/interfaces/*.sol;
//! selectors are pinned by spec/vectors/selectors.json.

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

    /// IndexerRegistry's record (contracts/src/interfaces/IClusterDiamondFactory.sol).
    #[derive(Debug, PartialEq, Eq)]
    struct IndexerRecord {
        string endpoint;
        bytes32 codeId;
        bytes32 pubKey;
        uint64 updatedAt;
    }

    interface IAttestFacet {
        error AlreadyRegistered();
        function clusterOwner() external view returns (address);
        function pendingClusterOwner() external view returns (address);
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

    interface IClusterMember {
        function cluster() external view returns (address);
        function owner() external view returns (address);
        /// Binds a stock dstack app upgraded to ClusterMember (called through upgradeToAndCall).
        function reinitializeFromDstackApp(address cluster) external;
    }

    /// The diamond's ERC-173 owner (OwnershipFacet), who may cut facets.
    interface IOwnershipFacet {
        function owner() external view returns (address);
    }

    /// A UUPS proxy: the stock dstack app a member starts as, or a ClusterMember.
    interface IUups {
        function upgradeToAndCall(address newImplementation, bytes data) external payable;
        function proxiableUUID() external view returns (bytes32);
        /// The stock dstack app's owner (who alone may upgrade it).
        function owner() external view returns (address);
    }

    interface IIndexerRegistry {
        event IndexerUpdated(string endpoint, bytes32 codeId, bytes32 pubKey, uint64 updatedAt);
        function current() external view returns (IndexerRecord memory);
        function setIndexer(IndexerRecord calldata record) external;
        /// OpenZeppelin Ownable: only the owner may set the record.
        function owner() external view returns (address);
    }

    /// Errors of contracts outside this repository's interfaces (OpenZeppelin Ownable and UUPS,
    /// the stock dstack app), which operator commands name when they revert.
    interface IExternalErrors {
        error OwnableUnauthorizedAccount(address account);
        error NotOwner();
        error UUPSUnauthorizedCallContext();
        error UUPSUnsupportedProxiableUUID(bytes32 slot);
        error ERC1967InvalidImplementation(address implementation);
        error InvalidInitialization();
    }

    interface IClusterMemberAccount {
        error OnlyEntryPoint();
        error OnlyCluster();
        error OnlyClusterOwner();
        error OwnerAlreadySet();
        error InvalidBootstrapCall();
        error ZeroAddress();
        function execute(address target, uint256 value, bytes data) external;
        function validateUserOp(PackedUserOperation userOp, bytes32 userOpHash, uint256 missingAccountFunds) external returns (uint256 validationData);
    }

    interface IAttestWrite {
        error NotOriginator();
        error CskCommitmentAlreadySet();
        error ZeroCommitment();
        error UnknownMember();
        error OnlyDiamond();
        error NotClusterOwner();
        error NotPendingClusterOwner();
        /// Another member holds this WireGuard key (registration or publishWgKey).
        error WgKeyInUse();
        /// A small-order X25519 point, in any encoding.
        error WgKeyLowOrder();
        /// Not the canonical X25519 encoding (bit 255 set, or u >= 2^255 - 19).
        error WgKeyNotCanonical();
        function memberIdOfWgKey(bytes32 wgPubKey) external view returns (bytes32);
        function setCskCommitment(bytes32 commitment) external;
        function cskCommitment() external view returns (bytes32);
        function listMembers() external view returns (MemberRecord[] memory);
    }

    interface IMessageFacet {
        error NotClusterMember();
        error RecipientNotMember();
        error DuplicateEnvelope();
        event MessageSent(bytes32 indexed senderMemberId, bytes32 indexed recipientMemberId, bytes32 indexed envelopeId, bytes ciphertext);
        function send(bytes32 recipientMemberId, bytes32 envelopeId, bytes ciphertext) external;
        function envelopeUsed(bytes32 recipientMemberId, bytes32 envelopeId) external view returns (bool);
    }

    interface INetworkFacet {
        error ZeroPubKey();
        function publishWgKey(bytes32 wgPubKey) external;
        function wgPubKeyOf(bytes32 memberId) external view returns (bytes32);
    }

    /// EntryPoint v0.7 `PackedUserOperation`.
    #[derive(Debug, PartialEq, Eq)]
    struct PackedUserOperation {
        address sender;
        uint256 nonce;
        bytes initCode;
        bytes callData;
        bytes32 accountGasLimits;
        uint256 preVerificationGas;
        bytes32 gasFees;
        bytes paymasterAndData;
        bytes signature;
    }

    /// The EntryPoint v0.7 surface the UserOperation client and the dev stack use.
    interface IEntryPoint {
        error FailedOp(uint256 opIndex, string reason);
        error FailedOpWithRevert(uint256 opIndex, string reason, bytes inner);
        error PostOpReverted(bytes returnData);
        error SignatureValidationFailed(address aggregator);
        event UserOperationEvent(bytes32 indexed userOpHash, address indexed sender, address indexed paymaster, uint256 nonce, bool success, uint256 actualGasCost, uint256 actualGasUsed);
        event UserOperationRevertReason(bytes32 indexed userOpHash, address indexed sender, uint256 nonce, bytes revertReason);
        function getNonce(address sender, uint192 key) external view returns (uint256 nonce);
        function balanceOf(address account) external view returns (uint256);
        function depositTo(address account) external payable;
        function getUserOpHash(PackedUserOperation userOp) external view returns (bytes32);
    }

    /// Our verifying paymaster (contracts/src/paymaster/SponsorPaymaster.sol).
    interface ISponsorPaymaster {
        error InvalidPaymasterDataLength(uint256 length);
        error ZeroAddress();
        function deposit() external payable;
        function getDeposit() external view returns (uint256);
        function signer() external view returns (address);
    }

    /// Errors of the diamond, factories and registry (for revert decoding only).
    interface IInfraErrors {
        error AlreadyInitialized();
        error ClusterAlreadyDeployed(address cluster);
        error EmptyEndpoint();
        error FacetHasNoCode(address facet);
        error FunctionNotFound(bytes4 selector);
        error InitCalldataWithoutInit();
        error InitHasNoCode(address init);
        error InitializationFailed(address init, bytes data);
        error InvalidDiamondOwner();
        error InvalidMeshCidr(uint32 ip, uint8 prefix);
        error ModExpFailed();
        error NoSelectorsInFacetCut();
        error NotDiamondOwner();
        error NotPendingDiamondOwner();
        error RemoveFacetAddressMustBeZero(address facet);
        error ReplaceWithSameFacet(bytes4 selector);
        error SelectorAlreadyExists(bytes4 selector);
        error SelectorNotFound(bytes4 selector);
    }

    interface IClusterMemberFactory {
        event MemberDeployed(address indexed member, address indexed cluster, bytes32 salt);
        function implementation() external view returns (address);
        function deployMember(address cluster, bytes32 salt) external returns (address member);
        function predictMemberAddress(address cluster, bytes32 salt) external view returns (address);
        function isOurMember(address member) external view returns (bool);
    }

    interface IClusterDiamondFactory {
        event ClusterDeployed(address indexed cluster, address indexed clusterOwner, bytes32 salt);
        function deployCluster(ClusterInitArgs args, bytes32 salt) external returns (address cluster);
        function predictClusterAddress(ClusterInitArgs args, bytes32 salt) external view returns (address);
        function isDeployedCluster(address cluster) external view returns (bool);
    }
}

impl From<attestmesh_core::userop::PackedUserOperation> for PackedUserOperation {
    /// The core's packed form as the EntryPoint's ABI struct (for `eth_call`s and encodings).
    fn from(p: attestmesh_core::userop::PackedUserOperation) -> Self {
        Self {
            sender: p.sender,
            nonce: p.nonce,
            initCode: p.init_code,
            callData: p.call_data,
            accountGasLimits: p.account_gas_limits,
            preVerificationGas: p.pre_verification_gas,
            gasFees: p.gas_fees,
            paymasterAndData: p.paymaster_and_data,
            signature: p.signature,
        }
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
