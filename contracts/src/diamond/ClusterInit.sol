// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IDiamondCut} from "./IDiamondCut.sol";
import {IDiamondLoupe} from "./IDiamondLoupe.sol";
import {IERC173} from "./IERC173.sol";
import {ClusterInitArgs} from "../interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../interfaces/IAttestFacet.sol";
import {IDstackFacet} from "../interfaces/IDstackFacet.sol";
import {IMessageFacet} from "../interfaces/IMessageFacet.sol";
import {INetworkFacet} from "../interfaces/INetworkFacet.sol";
import {LibAttestStorage} from "../libraries/LibAttestStorage.sol";
import {LibDiamond} from "../libraries/LibDiamond.sol";
import {LibDstackStorage} from "../libraries/LibDstackStorage.sol";

/// @notice The one-shot initializer a ClusterDiamond delegatecalls from its constructor. It writes
/// the cluster owner, the mesh CIDR and the initial dstack policy, and announces the ERC-165 ids.
/// Emits the same events as the policy setters so indexers see the initial policy too.
contract ClusterInit {
    error AlreadyInitialized();
    /// @dev Prefix outside 8..30 (a /31 or /32 has no host besides network/broadcast) or host bits set.
    error InvalidMeshCidr(uint32 ip, uint8 prefix);

    /// @dev Runs in the diamond's context (delegatecall); never meaningful when called directly.
    function init(ClusterInitArgs calldata args) external {
        LibAttestStorage.AttestStorage storage at = LibAttestStorage.s();
        if (at.clusterOwner != address(0)) revert AlreadyInitialized();
        if (args.clusterOwner == address(0)) revert IAttestFacet.ZeroAddress();
        if (args.meshPrefix < 8 || args.meshPrefix > 30) {
            revert InvalidMeshCidr(args.meshCidrIp, args.meshPrefix);
        }
        uint32 hostMask = uint32((uint256(1) << (32 - args.meshPrefix)) - 1);
        if (args.meshCidrIp & hostMask != 0) revert InvalidMeshCidr(args.meshCidrIp, args.meshPrefix);

        at.clusterOwner = args.clusterOwner;
        at.meshCidrIp = args.meshCidrIp;
        at.meshPrefix = args.meshPrefix;
        emit IAttestFacet.ClusterOwnershipTransferred(address(0), args.clusterOwner);

        LibDstackStorage.DstackStorage storage ds = LibDstackStorage.s();
        ds.memberFactory = args.memberFactory;
        for (uint256 i; i < args.kmsRoots.length; ++i) {
            if (args.kmsRoots[i] == address(0)) revert IAttestFacet.ZeroAddress();
            ds.kmsRoots[args.kmsRoots[i]] = true;
            emit IDstackFacet.KmsRootAdded(args.kmsRoots[i]);
        }
        for (uint256 i; i < args.composeHashes.length; ++i) {
            ds.composeHashes[args.composeHashes[i]] = true;
            emit IDstackFacet.ComposeHashAdded(args.composeHashes[i]);
        }
        for (uint256 i; i < args.devices.length; ++i) {
            ds.devices[args.devices[i]] = true;
            emit IDstackFacet.DeviceAdded(args.devices[i]);
        }
        for (uint256 i; i < args.appIds.length; ++i) {
            if (args.appIds[i] == address(0)) revert IAttestFacet.ZeroAddress();
            ds.appIds[args.appIds[i]] = true;
            emit IDstackFacet.AppIdAdded(args.appIds[i]);
        }
        ds.allowAnyDevice = args.allowAnyDevice;
        emit IDstackFacet.AllowAnyDeviceSet(args.allowAnyDevice);
        ds.requireTcbUpToDate = args.requireTcbUpToDate;
        emit IDstackFacet.RequireTcbUpToDateSet(args.requireTcbUpToDate);

        mapping(bytes4 => bool) storage ifaces = LibDiamond.s().supportedInterfaces;
        ifaces[type(IERC165).interfaceId] = true;
        ifaces[type(IDiamondCut).interfaceId] = true;
        ifaces[type(IDiamondLoupe).interfaceId] = true;
        ifaces[type(IERC173).interfaceId] = true;
        ifaces[type(IAttestFacet).interfaceId] = true;
        ifaces[type(IMessageFacet).interfaceId] = true;
        ifaces[type(INetworkFacet).interfaceId] = true;
        ifaces[type(IDstackFacet).interfaceId] = true;
    }
}
