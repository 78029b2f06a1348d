// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AppBootInfo} from "../../src/interfaces/ClusterTypes.sol";
import {IAttestFacet} from "../../src/interfaces/IAttestFacet.sol";
import {IClusterMember} from "../../src/interfaces/IClusterMember.sol";
import {IDstackFacet} from "../../src/interfaces/IDstackFacet.sol";
import {ClusterFixture} from "../utils/ClusterFixture.sol";
import {TestAppMember} from "../utils/TestAppMember.sol";

/// @notice DstackFacet admission policy (cluster owner only) and the KMS boot gate ladder.
contract DstackPolicyTest is ClusterFixture {
    IDstackFacet internal d;
    address internal stranger = makeAddr("stranger");

    function setUp() public override {
        super.setUp();
        d = IDstackFacet(cluster);
    }

    // ------------------------------------------------------------------ initial policy

    function test_initialPolicy_fromInitArgs() public view {
        assertTrue(d.allowedComposeHashes(COMPOSE_HASH));
        assertTrue(d.allowedDeviceIds(DEVICE_ID));
        assertTrue(d.allowedKmsRoots(kmsRoot));
        assertFalse(d.allowAnyDevice());
        assertTrue(d.requireTcbUpToDate());
        assertEq(d.memberFactory(), address(memberFactory));
        assertFalse(d.allowedComposeHashes(bytes32(uint256(1))));
        assertFalse(d.allowedKmsRoots(stranger));
        assertFalse(d.allowedAppIds(stranger));
    }

    // ------------------------------------------------------------------ setters: happy path + events

    function test_composeHash_addRemove() public {
        bytes32 h = keccak256("compose-2");
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.ComposeHashAdded(h);
        vm.prank(clusterOwner);
        d.addComposeHash(h);
        assertTrue(d.allowedComposeHashes(h));
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.ComposeHashRemoved(h);
        vm.prank(clusterOwner);
        d.removeComposeHash(h);
        assertFalse(d.allowedComposeHashes(h));
    }

    function test_device_addRemove() public {
        bytes32 dev = keccak256("device-2");
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.DeviceAdded(dev);
        vm.prank(clusterOwner);
        d.addDevice(dev);
        assertTrue(d.allowedDeviceIds(dev));
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.DeviceRemoved(dev);
        vm.prank(clusterOwner);
        d.removeDevice(dev);
        assertFalse(d.allowedDeviceIds(dev));
    }

    function test_flags() public {
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.AllowAnyDeviceSet(true);
        vm.prank(clusterOwner);
        d.setAllowAnyDevice(true);
        assertTrue(d.allowAnyDevice());
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.RequireTcbUpToDateSet(false);
        vm.prank(clusterOwner);
        d.setRequireTcbUpToDate(false);
        assertFalse(d.requireTcbUpToDate());
    }

    function test_kmsRoot_addRemove() public {
        address root = makeAddr("root2");
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.KmsRootAdded(root);
        vm.prank(clusterOwner);
        d.addAllowedKmsRoot(root);
        assertTrue(d.allowedKmsRoots(root));
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.KmsRootRemoved(root);
        vm.prank(clusterOwner);
        d.removeAllowedKmsRoot(root);
        assertFalse(d.allowedKmsRoots(root));
    }

    function test_appId_addRemove() public {
        address app = makeAddr("app");
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.AppIdAdded(app);
        vm.prank(clusterOwner);
        d.addAllowedAppId(app);
        assertTrue(d.allowedAppIds(app));
        vm.expectEmit(false, false, false, true, cluster);
        emit IDstackFacet.AppIdRemoved(app);
        vm.prank(clusterOwner);
        d.removeAllowedAppId(app);
        assertFalse(d.allowedAppIds(app));
    }

    function test_revert_zeroKmsRootOrAppId() public {
        vm.startPrank(clusterOwner);
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        d.addAllowedKmsRoot(address(0));
        vm.expectRevert(IAttestFacet.ZeroAddress.selector);
        d.addAllowedAppId(address(0));
        vm.stopPrank();
    }

    /// @dev Every policy setter refuses anyone but the cluster owner — including the diamond owner
    /// role when it is held by someone else, and a registered member.
    function test_revert_policy_notClusterOwner() public {
        (address m,,) = deployAndRegister("member");
        address[2] memory callers = [stranger, m];
        bytes[10] memory calls = [
            abi.encodeCall(IDstackFacet.addComposeHash, (bytes32(uint256(1)))),
            abi.encodeCall(IDstackFacet.removeComposeHash, (COMPOSE_HASH)),
            abi.encodeCall(IDstackFacet.addDevice, (bytes32(uint256(1)))),
            abi.encodeCall(IDstackFacet.removeDevice, (DEVICE_ID)),
            abi.encodeCall(IDstackFacet.setAllowAnyDevice, (true)),
            abi.encodeCall(IDstackFacet.setRequireTcbUpToDate, (false)),
            abi.encodeCall(IDstackFacet.addAllowedKmsRoot, (stranger)),
            abi.encodeCall(IDstackFacet.removeAllowedKmsRoot, (kmsRoot)),
            abi.encodeCall(IDstackFacet.addAllowedAppId, (stranger)),
            abi.encodeCall(IDstackFacet.removeAllowedAppId, (stranger))
        ];
        for (uint256 c; c < callers.length; ++c) {
            for (uint256 i; i < calls.length; ++i) {
                vm.prank(callers[c]);
                (bool ok, bytes memory ret) = cluster.call(calls[i]);
                assertFalse(ok);
                assertEq(ret, abi.encodeWithSelector(IAttestFacet.NotClusterOwner.selector));
            }
        }
        // nothing changed
        assertTrue(d.allowedComposeHashes(COMPOSE_HASH));
        assertTrue(d.allowedKmsRoots(kmsRoot));
        assertFalse(d.allowAnyDevice());
    }

    // ------------------------------------------------------------------ boot gate

    function _check(AppBootInfo memory info, bool expectOk, string memory expectReason) internal view {
        (bool ok, string memory reason) = d.isAppAllowed(info);
        assertEq(ok, expectOk, expectReason);
        assertEq(reason, expectReason);
    }

    /// @dev Start with everything wrong, fix one thing at a time: each step must report the next
    /// reason in the documented order, and the last gives (true, "").
    function test_bootGate_ladder() public {
        address m = newMember(cluster, "boot");
        AppBootInfo memory info = allowedBootInfo(makeAddr("unknown-app"));
        info.composeHash = keccak256("bad compose");
        info.deviceId = keccak256("bad device");
        info.tcbStatus = "OutOfDate";

        _check(info, false, "compose hash not allowed");
        info.composeHash = COMPOSE_HASH;
        _check(info, false, "device not allowed");
        info.deviceId = DEVICE_ID;
        _check(info, false, "appId not allowlisted");
        info.appId = m;
        _check(info, false, "tcb not up to date");
        info.tcbStatus = "UpToDate";
        _check(info, true, "");
    }

    function test_bootGate_allowAnyDevice() public {
        AppBootInfo memory info = allowedBootInfo(newMember(cluster, "boot"));
        info.deviceId = keccak256("unlisted device");
        _check(info, false, "device not allowed");
        vm.prank(clusterOwner);
        d.setAllowAnyDevice(true);
        _check(info, true, "");
    }

    function test_bootGate_tcbNotRequired() public {
        AppBootInfo memory info = allowedBootInfo(newMember(cluster, "boot"));
        info.tcbStatus = "OutOfDate";
        _check(info, false, "tcb not up to date");
        info.tcbStatus = "uptodate"; // exact, case-sensitive match
        _check(info, false, "tcb not up to date");
        vm.prank(clusterOwner);
        d.setRequireTcbUpToDate(false);
        info.tcbStatus = "OutOfDate";
        _check(info, true, "");
    }

    function test_bootGate_allowlistedAppId() public {
        address app = makeAddr("stock-dstack-app");
        _check(allowedBootInfo(app), false, "appId not allowlisted");
        vm.prank(clusterOwner);
        d.addAllowedAppId(app);
        _check(allowedBootInfo(app), true, "");
    }

    /// @dev DESIGN §3.5: the third rung fails only for an app id that is "neither allowlisted nor a
    /// member". A registered path-A member whose app id later left the allowlist is still a member:
    /// it must be able to restart (re-derive its keys). An unregistered one is refused.
    function test_bootGate_registeredMemberPassesAfterAppIdRemoved() public {
        TestAppMember registered = new TestAppMember(cluster);
        TestAppMember unregistered = new TestAppMember(cluster);
        vm.startPrank(clusterOwner);
        d.addAllowedAppId(address(registered));
        d.addAllowedAppId(address(unregistered));
        vm.stopPrank();
        registerMember(cluster, address(registered), memberKeys("path-a"));
        _check(allowedBootInfo(address(registered)), true, "");
        _check(allowedBootInfo(address(unregistered)), true, "");

        vm.startPrank(clusterOwner);
        d.removeAllowedAppId(address(registered));
        d.removeAllowedAppId(address(unregistered));
        vm.stopPrank();
        _check(allowedBootInfo(address(registered)), true, "");
        _check(allowedBootInfo(address(unregistered)), false, "appId not allowlisted");

        // Membership does not skip the other rungs, before or after it.
        AppBootInfo memory info = allowedBootInfo(address(registered));
        info.tcbStatus = "OutOfDate";
        _check(info, false, "tcb not up to date");
        info = allowedBootInfo(address(registered));
        info.deviceId = keccak256("unlisted device");
        _check(info, false, "device not allowed");
        vm.prank(clusterOwner);
        d.removeComposeHash(COMPOSE_HASH);
        _check(allowedBootInfo(address(registered)), false, "compose hash not allowed");
    }

    /// @dev A member of another cluster (registered there) is no member here.
    function test_bootGate_registeredElsewhereIsNoMemberHere() public {
        address other = _deployCluster(defaultClusterArgs(), bytes32(uint256(6)));
        TestAppMember app = new TestAppMember(other);
        vm.prank(clusterOwner);
        IDstackFacet(other).addAllowedAppId(address(app));
        registerMember(other, address(app), memberKeys("elsewhere"));
        (bool ok,) = IDstackFacet(other).isAppAllowed(allowedBootInfo(address(app)));
        assertTrue(ok, "allowed by its own cluster");
        _check(allowedBootInfo(address(app)), false, "appId not allowlisted");
    }

    function test_bootGate_memberOfOtherClusterRejected() public {
        address other = _deployCluster(defaultClusterArgs(), bytes32(uint256(5)));
        address foreign = newMember(other, "foreign");
        _check(allowedBootInfo(foreign), false, "appId not allowlisted");
        (bool ok,) = IDstackFacet(other).isAppAllowed(allowedBootInfo(foreign));
        assertTrue(ok, "allowed by its own cluster");
    }

    function test_bootGate_composeHashRemovedBlocksRestart() public {
        (address m,,) = deployAndRegister("node");
        _check(allowedBootInfo(m), true, "");
        vm.prank(clusterOwner);
        d.removeComposeHash(COMPOSE_HASH);
        _check(allowedBootInfo(m), false, "compose hash not allowed");
    }

    function test_bootGate_reachedThroughMember() public {
        // The dstack KMS asks the app id (the member contract), which forwards to its cluster.
        address m = newMember(cluster, "boot");
        (bool ok, string memory reason) = IClusterMember(m).isAppAllowed(allowedBootInfo(m));
        assertTrue(ok);
        assertEq(reason, "");
        AppBootInfo memory bad = allowedBootInfo(m);
        bad.deviceId = bytes32(0);
        (ok, reason) = IClusterMember(m).isAppAllowed(bad);
        assertFalse(ok);
        assertEq(reason, "device not allowed");
    }

    function test_bootGate_testAppMemberNotAllowlisted() public {
        TestAppMember app = new TestAppMember(cluster);
        _check(allowedBootInfo(address(app)), false, "appId not allowlisted");
    }
}
