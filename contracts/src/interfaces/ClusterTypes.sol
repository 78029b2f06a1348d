// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice A member of a cluster. Method-neutral: `attestorId` names the attestation method that
/// admitted it (DESIGN §3.6); everything else is keys.
struct MemberRecord {
    bytes32 attestorId;
    address memberContract;
    bytes32 xPubKey; // x25519 sealed-box key
    bytes32 wgPubKey; // WireGuard static key
    bytes32 edPubKey; // Ed25519 heartbeat key
    uint64 registeredAt; // block number
}

/// @notice What the dstack KMS asks the boot gate about a booting VM (dstack's IAppAuth shape).
struct AppBootInfo {
    address appId;
    bytes32 composeHash;
    address instanceId;
    bytes32 deviceId;
    bytes32 mrAggregated;
    bytes32 mrSystem;
    bytes32 osImageHash;
    string tcbStatus;
    string[] advisoryIds;
}

/// @notice A dstack KMS signature chain plus the binding of the node's public keys (DESIGN §3.5).
/// Keys are compressed secp256k1 (33 bytes); signatures are r ‖ s ‖ v with v ∈ {27, 28}.
struct DstackProof {
    bytes ownerPubkey;
    bytes appPubkey;
    bytes appSignature;
    bytes kmsSignature;
    string purpose;
    bytes bindingSignature;
}

/// @notice Everything a cluster is born with; applied by the diamond's initializer in the
/// constructor so a cluster is never visible half-configured.
struct ClusterInitArgs {
    address clusterOwner;
    uint32 meshCidrIp; // network address, host bits zero
    uint8 meshPrefix; // 8..30
    address memberFactory; // the ClusterMemberFactory trusted for `isOurMember`
    address[] kmsRoots;
    bytes32[] composeHashes;
    bytes32[] devices;
    address[] appIds;
    bool allowAnyDevice;
    bool requireTcbUpToDate;
}
