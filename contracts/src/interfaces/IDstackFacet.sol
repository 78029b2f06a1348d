// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AppBootInfo, DstackProof} from "./ClusterTypes.sol";

/// @notice The dstack attestor: admission policy, boot gate, registration (DESIGN §3.5).
/// Policy function names match dstack's IAppAuthBasicManagement so dstack tooling works unchanged.
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
    event DstackMemberRegistered(bytes32 indexed memberId, address ownerKey);

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

    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason);

    function dstack_register(
        DstackProof calldata proof,
        address memberContract,
        bytes32 xPubKey,
        bytes32 wgPubKey,
        bytes32 edPubKey
    ) external returns (bytes32 memberId);
}
