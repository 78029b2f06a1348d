//! devtee as a real separate process (the binary CI ships): determinism across processes and
//! restarts, graceful SIGTERM with socket removal, configuration errors.
#![allow(clippy::unwrap_used)]

mod support;

use alloy_primitives::Address;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::client::GuestAgentClient;
use attestmesh_tee::dstack::DstackAttestor;
use attestmesh_tee::kms;
use support::DevteeProcess;

const APP: Address = Address::repeat_byte(0xa1);

async fn pub_keys(
    socket: &std::path::Path,
) -> (Address, attestmesh_core::binding::MemberPubKeys, [u8; 32]) {
    let att = DstackAttestor::new(GuestAgentClient::new(socket));
    let d = att.derive_keys().await.unwrap();
    (
        d.keys.owner.address(),
        d.keys.member_pub_keys(),
        *d.keys.csk.as_bytes(),
    )
}

#[tokio::test]
async fn two_processes_same_root_and_app_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let a = DevteeProcess::start(&dir.path().join("a.sock"), APP, None).await;
    let b = DevteeProcess::start(&dir.path().join("b.sock"), APP, None).await;
    let c =
        DevteeProcess::start(&dir.path().join("c.sock"), Address::repeat_byte(0xa2), None).await;
    for path in [
        "attestmesh/owner/v1",
        "attestmesh/x25519/v1",
        "attestmesh/state/v1",
    ] {
        let ka = GuestAgentClient::new(&a.socket)
            .get_key(path, "ethereum", "secp256k1")
            .await
            .unwrap();
        let kb = GuestAgentClient::new(&b.socket)
            .get_key(path, "ethereum", "secp256k1")
            .await
            .unwrap();
        let kc = GuestAgentClient::new(&c.socket)
            .get_key(path, "ethereum", "secp256k1")
            .await
            .unwrap();
        assert_eq!(*ka.seed, *kb.seed, "{path}");
        assert_eq!((ka.app_sig, ka.kms_sig), (kb.app_sig, kb.kms_sig), "{path}");
        assert_ne!(*ka.seed, *kc.seed, "{path}");
        assert_ne!(ka.kms_sig, kc.kms_sig, "{path}");
    }
    let (oa, pa, ca) = pub_keys(&a.socket).await;
    let (ob, pb, cb) = pub_keys(&b.socket).await;
    let (oc, pc, cc) = pub_keys(&c.socket).await;
    assert_eq!((oa, pa, ca), (ob, pb, cb));
    assert_ne!(oa, oc);
    assert_ne!(pa.x, pc.x);
    assert_ne!(pa.wg, pc.wg);
    assert_ne!(pa.ed, pc.ed);
    assert_ne!(ca, cc);
}

#[tokio::test]
async fn restart_derives_identical_keys_and_sigterm_removes_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let first = DevteeProcess::start(&socket, APP, None).await;
    let before = pub_keys(&socket).await;
    let status = first.terminate();
    assert!(status.success(), "devtee exits 0 on SIGTERM: {status:?}");
    assert!(!socket.exists(), "socket removed on shutdown");
    let _second = DevteeProcess::start(&socket, APP, None).await;
    assert_eq!(pub_keys(&socket).await, before);
}

#[tokio::test]
async fn kms_root_key_flag_changes_the_signing_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = [0x42u8; 32];
    let d = DevteeProcess::start(&dir.path().join("d.sock"), APP, Some(root)).await;
    let att = DstackAttestor::new(GuestAgentClient::new(&d.socket));
    let derived = att.derive_keys().await.unwrap();
    let signer = derived
        .evidence
        .kms_root(APP, &derived.keys.owner.public_compressed())
        .unwrap();
    assert_eq!(
        signer,
        attestmesh_core::secp::address_of(kms::signing_key(&root).unwrap().verifying_key())
    );
}

#[test]
fn bad_flags_fail_fast_with_a_named_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestmesh"))
        .args(["devtee", "--socket", "/tmp/x.sock", "--app-id", "0x1234"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--app-id"));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attestmesh"))
        .args([
            "devtee",
            "--socket",
            "/tmp/attestmesh-never.sock",
            "--app-id",
        ])
        .arg(APP.to_string())
        .args(["--kms-root-key", "0x1234"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kms-root-key") && err.contains("32 bytes"),
        "{err}"
    );
}
