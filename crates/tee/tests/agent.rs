//! The guest-agent client against a real in-process devtee, and every error path of the client
//! and of devtee. Error shapes the real agent could produce but devtee never does (non-JSON,
//! short keys, bad chains, hangs) come from a canned-response socket server.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use attestmesh_core::secp;
use attestmesh_tee::attestor::Attestor;
use attestmesh_tee::client::{AgentError, GuestAgentClient};
use attestmesh_tee::devtee::{self, Devtee, DevteeConfig, DevteeError};
use attestmesh_tee::dstack::{self, DstackAttestor, DstackError};
use attestmesh_tee::kms;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

const APP: Address = Address::repeat_byte(0xa1);

/// A devtee served in-process until the returned guard is dropped.
struct Running {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), DevteeError>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) -> Result<(), DevteeError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(app: Address, root: [u8; 32]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dstack.sock");
    let mut cfg = DevteeConfig::dev(&socket, app);
    cfg.kms_root_key = zeroize::Zeroizing::new(root);
    let server = Devtee::bind(cfg).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        socket,
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

/// Serves one canned HTTP response (or none, if `reply` is None) per connection.
async fn canned(reply: Option<&'static str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                match reply {
                    Some(r) => {
                        let _ = s.write_all(r.as_bytes()).await;
                        let _ = s.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    (dir, socket)
}

fn http(status: &str, body: &str) -> &'static str {
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    )
}

/// Sends a raw request to a socket and returns (status, body).
async fn raw(socket: &Path, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: dstack\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let status: u16 = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn info_getkey_getquote_roundtrip() {
    let d = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let c = GuestAgentClient::new(&d.socket);
    let info = c.info().await.unwrap();
    assert_eq!(info.app_id, alloy_primitives::hex::encode(APP));
    assert_eq!(c.app_id().await.unwrap(), APP);
    assert_eq!(
        info.compose_hash,
        alloy_primitives::hex::encode(devtee::default_compose_hash())
    );

    let k = c
        .get_key("attestmesh/owner/v1", "ethereum", "secp256k1")
        .await
        .unwrap();
    let want = kms::issue(
        &kms::DEV_KMS_ROOT_KEY,
        APP,
        "attestmesh/owner/v1",
        "ethereum",
    )
    .unwrap();
    assert_eq!(*k.seed, *want.secret);
    assert_eq!(k.app_sig, want.app_sig);
    assert_eq!(k.kms_sig, want.kms_sig);
    assert!(
        k.app_sig[64] <= 1 && k.kms_sig[64] <= 1,
        "v must be 0/1 like real dstack"
    );

    let q = c.get_quote(&[0xee; 20]).await.unwrap();
    let quote = alloy_primitives::hex::decode(&q.quote).unwrap();
    let parsed = attestmesh_tee::tdx::TdxQuote::parse(&quote).unwrap();
    assert!(parsed.is_simulated());
    let report = parsed.report.report_data;
    assert_eq!(&report[..20], &[0xee; 20]);
    assert_eq!(&report[20..], &[0u8; 44], "report data is zero-padded");
    let r = attestmesh_tee::quote::report_data(&quote, true).unwrap();
    assert_eq!(
        attestmesh_tee::quote::compose_hash(&r, &q.event_log).unwrap(),
        devtee::default_compose_hash()
    );
    let log = attestmesh_tee::eventlog::parse(&q.event_log).unwrap();
    let app_event = log.iter().find(|e| e.event == "app-id").unwrap();
    assert_eq!(app_event.event_payload, alloy_primitives::hex::encode(APP));
    d.stop().await.unwrap();
}

#[tokio::test]
async fn attestor_derives_keys_and_a_verifiable_registration() {
    let d = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let att = DstackAttestor::new(GuestAgentClient::new(&d.socket));
    assert_eq!(att.member_contract().await.unwrap(), APP);
    let derived = att.derive_keys().await.unwrap();
    let again = att.derive_keys().await.unwrap();
    assert_eq!(derived.keys.member_pub_keys(), again.keys.member_pub_keys());
    assert_eq!(derived.keys.owner.address(), again.keys.owner.address());
    let pk = derived.keys.member_pub_keys();
    let distinct = [
        pk.x,
        pk.wg,
        pk.ed,
        derived.keys.csk.commitment(),
        derived.keys.state.commitment(),
    ];
    for i in 0..distinct.len() {
        for j in i + 1..distinct.len() {
            assert_ne!(distinct[i], distinct[j], "every key type has its own path");
        }
    }
    let owner_pub = derived.keys.owner.public_compressed();
    assert_eq!(
        derived.evidence.kms_root(APP, &owner_pub).unwrap(),
        kms::DEV_KMS_ROOT_ADDRESS
    );

    let cluster = Address::repeat_byte(0xc1);
    let data = att.registration_call(&derived, cluster, APP).unwrap();
    use alloy_sol_types::SolCall;
    let call = dstack::dstack_registerCall::abi_decode(&data).unwrap();
    assert_eq!(call.memberContract, APP);
    assert_eq!(call.proof.purpose, "ethereum");
    assert_eq!(call.proof.ownerPubkey.as_ref(), &owner_pub);
    assert_eq!(
        call.proof.kmsSignature[64],
        derived.evidence.kms_sig[64] + 27
    );

    let doc = att.attestation_document([7u8; 64]).await.unwrap();
    assert_eq!(doc.format, "devtee-simulated");
    assert_eq!(doc.report_data, [7u8; 64]);
    assert_eq!(
        attestmesh_tee::quote::report_data(&doc.quote, true)
            .unwrap()
            .report_data,
        [7u8; 64]
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn same_root_and_app_give_identical_keys_other_app_unrelated() {
    let a = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let b = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let other = start(Address::repeat_byte(0xa2), kms::DEV_KMS_ROOT_KEY).await;
    for path in [dstack::OWNER_PATH, dstack::X25519_PATH, dstack::CSK_PATH] {
        let ka = GuestAgentClient::new(&a.socket)
            .get_key(path, "p", "")
            .await
            .unwrap();
        let kb = GuestAgentClient::new(&b.socket)
            .get_key(path, "p", "")
            .await
            .unwrap();
        let ko = GuestAgentClient::new(&other.socket)
            .get_key(path, "p", "")
            .await
            .unwrap();
        assert_eq!(*ka.seed, *kb.seed);
        assert_eq!(ka.app_sig, kb.app_sig);
        assert_eq!(ka.kms_sig, kb.kms_sig);
        assert_ne!(*ka.seed, *ko.seed);
    }
}

#[tokio::test]
async fn other_kms_root_signs_with_another_address() {
    let d = start(APP, [0x42; 32]).await;
    let att = DstackAttestor::new(GuestAgentClient::new(&d.socket));
    let derived = att.derive_keys().await.unwrap();
    let root = derived
        .evidence
        .kms_root(APP, &derived.keys.owner.public_compressed())
        .unwrap();
    let expected = secp::address_of(kms::signing_key(&[0x42; 32]).unwrap().verifying_key());
    assert_eq!(root, expected);
    assert_ne!(root, kms::DEV_KMS_ROOT_ADDRESS);
}

// ---- client error paths ----

#[tokio::test]
async fn missing_socket() {
    let c = GuestAgentClient::new("/nonexistent/dir/dstack.sock");
    let e = c.info().await.unwrap_err();
    assert!(
        matches!(e, AgentError::SocketMissing(ref p) if p == Path::new("/nonexistent/dir/dstack.sock")),
        "{e}"
    );
    assert!(e.to_string().contains("does not exist"));
}

#[tokio::test]
async fn socket_with_nobody_listening() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let e = GuestAgentClient::new(&socket).info().await.unwrap_err();
    assert!(matches!(e, AgentError::Connect { .. }), "{e}");
}

#[tokio::test]
async fn non_json_answer() {
    let (_d, s) = canned(Some(http("200 OK", "<html>hello</html>"))).await;
    let e = GuestAgentClient::new(&s).info().await.unwrap_err();
    assert!(
        matches!(e, AgentError::NotJson { method: "Info", ref snippet, .. } if snippet.contains("<html>")),
        "{e}"
    );
}

#[tokio::test]
async fn http_error_carries_the_agent_message() {
    let (_d, s) = canned(Some(http(
        "500 Internal Server Error",
        r#"{"error":"kms unreachable"}"#,
    )))
    .await;
    let e = GuestAgentClient::new(&s)
        .get_key("p", "", "")
        .await
        .unwrap_err();
    match e {
        AgentError::Status {
            method,
            status,
            message,
        } => {
            assert_eq!(method, "GetKey");
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(message, "kms unreachable");
        }
        other => panic!("{other}"),
    }
    // A non-JSON error body is reported verbatim.
    let (_d2, s2) = canned(Some(http("502 Bad Gateway", "upstream down"))).await;
    let e = GuestAgentClient::new(&s2).info().await.unwrap_err();
    assert!(
        matches!(e, AgentError::Status { ref message, .. } if message == "upstream down"),
        "{e}"
    );
}

#[tokio::test]
async fn devtee_400_reaches_the_client_as_status_error() {
    let d = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let e = GuestAgentClient::new(&d.socket)
        .get_key("p", "", "rsa")
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::Status { status: StatusCode::BAD_REQUEST, ref message, .. } if message.contains("Unsupported algorithm")),
        "{e}"
    );
}

const SIG65: &str = "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

#[tokio::test]
async fn wrong_length_key() {
    let body = format!(r#"{{"key":"abcd","signature_chain":["{SIG65}","{SIG65}"]}}"#);
    let (_d, s) = canned(Some(http("200 OK", &body))).await;
    let e = GuestAgentClient::new(&s)
        .get_key("p", "", "")
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::KeyLength { got: 2, .. }), "{e}");
}

#[tokio::test]
async fn wrong_length_chain() {
    let key = "11".repeat(32);
    let body = format!(r#"{{"key":"{key}","signature_chain":["{SIG65}"]}}"#);
    let (_d, s) = canned(Some(http("200 OK", &body))).await;
    let e = GuestAgentClient::new(&s)
        .get_key("p", "", "")
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::ChainLength { got: 1, .. }), "{e}");
}

#[tokio::test]
async fn wrong_length_signature() {
    let key = "11".repeat(32);
    let body = format!(r#"{{"key":"{key}","signature_chain":["{SIG65}","abcd"]}}"#);
    let (_d, s) = canned(Some(http("200 OK", &body))).await;
    let e = GuestAgentClient::new(&s)
        .get_key("p", "", "")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            AgentError::SignatureLength {
                index: 1,
                got: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn bad_hex() {
    let body = format!(
        r#"{{"key":"zz{}","signature_chain":["{SIG65}","{SIG65}"]}}"#,
        "11".repeat(31)
    );
    let (_d, s) = canned(Some(http("200 OK", &body))).await;
    let e = GuestAgentClient::new(&s)
        .get_key("p", "", "")
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::BadHex(ref h) if h.field == "key"),
        "{e}"
    );
}

#[tokio::test]
async fn longer_key_uses_first_32_bytes() {
    let key = format!("{}{}", "11".repeat(32), "22".repeat(32));
    let body = format!(r#"{{"key":"0x{key}","signature_chain":["{SIG65}","{SIG65}"]}}"#);
    let (_d, s) = canned(Some(http("200 OK", &body))).await;
    let k = GuestAgentClient::new(&s)
        .get_key("p", "", "")
        .await
        .unwrap();
    assert_eq!(*k.seed, [0x11; 32]);
}

#[tokio::test]
async fn bad_app_id() {
    let (_d, s) = canned(Some(http("200 OK", r#"{"app_id":"1234"}"#))).await;
    let e = GuestAgentClient::new(&s).info().await.unwrap_err();
    assert!(
        matches!(e, AgentError::BadAppId(ref a) if a == "1234"),
        "{e}"
    );
}

/// On paused time: the client gives up at its 200 ms deadline of virtual time, however slowly the
/// machine runs, while the canned agent hangs for 30 s.
#[tokio::test(start_paused = true)]
async fn timeout() {
    let (_d, s) = canned(None).await;
    let c = GuestAgentClient::new(&s).with_timeout(Duration::from_millis(200));
    let e = c.info().await.unwrap_err();
    assert!(
        matches!(e, AgentError::Timeout { method: "Info", .. }),
        "{e}"
    );
}

#[tokio::test]
async fn report_data_too_long() {
    let c = GuestAgentClient::new("/unused.sock");
    let e = c.get_quote(&[0u8; 65]).await.unwrap_err();
    assert!(matches!(e, AgentError::ReportDataTooLong(65)), "{e}");
}

#[tokio::test]
async fn attestor_surfaces_agent_errors() {
    let att = DstackAttestor::new(GuestAgentClient::new("/nonexistent/dstack.sock"));
    let e = att.derive_keys().await.unwrap_err();
    assert!(
        matches!(e, DstackError::Agent(AgentError::SocketMissing(_))),
        "{e}"
    );
}

// ---- devtee error paths ----

#[tokio::test]
async fn devtee_bad_requests_get_400_with_error_body() {
    let d = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let cases = [
        ("POST", "/GetKey", "not json", 400, "invalid request JSON"),
        ("POST", "/GetKey", r#"{"purpose":"x"}"#, 400, "path"),
        (
            "POST",
            "/GetKey",
            r#"{"path":"p","algorithm":"rsa"}"#,
            400,
            "Unsupported algorithm",
        ),
        (
            "POST",
            "/GetQuote",
            r#"{"report_data":"zz"}"#,
            400,
            "not valid hex",
        ),
        (
            "POST",
            "/GetQuote",
            &format!(r#"{{"report_data":"{}"}}"#, "00".repeat(65)),
            400,
            "at most 64",
        ),
        ("POST", "/GetQuote", "{}", 400, "report_data"),
        ("POST", "/Nope", "{}", 404, "no such method"),
        ("DELETE", "/Info", "", 405, "not allowed"),
    ];
    for (method, path, body, status, needle) in cases {
        let (got, json) = raw(&d.socket, method, path, body).await;
        assert_eq!(got, status, "{method} {path} {body}: {json}");
        let msg = json["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{method} {path}: {msg}");
    }
    // GET works like the real agent for parameterless calls.
    let (got, json) = raw(&d.socket, "GET", "/Info", "").await;
    assert_eq!(got, 200);
    assert_eq!(json["app_id"], alloy_primitives::hex::encode(APP));
}

#[tokio::test]
async fn devtee_refuses_a_live_socket_and_replaces_a_stale_one() {
    let d = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let e = Devtee::bind(DevteeConfig::dev(&d.socket, APP))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, DevteeError::InUse(_)), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let s = Devtee::bind(DevteeConfig::dev(&stale, APP)).await.unwrap();
    drop(s);

    let file = dir.path().join("regular");
    std::fs::write(&file, b"x").unwrap();
    let e = Devtee::bind(DevteeConfig::dev(&file, APP))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, DevteeError::NotASocket(_)), "{e}");
    assert!(file.exists(), "a regular file is never removed");

    let e = Devtee::bind(DevteeConfig::dev(dir.path().join("no/such/dir.sock"), APP))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, DevteeError::Bind { .. }), "{e}");
}

#[tokio::test]
async fn devtee_rejects_invalid_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = DevteeConfig::dev(dir.path().join("d.sock"), APP);
    cfg.kms_root_key = zeroize::Zeroizing::new([0u8; 32]);
    assert!(matches!(
        Devtee::bind(cfg).await.err().unwrap(),
        DevteeError::BadRootKey
    ));
    assert!(format!("{:?}", DevteeConfig::dev("/x", APP)).contains("redacted"));
}

#[tokio::test]
async fn devtee_shutdown_removes_socket() {
    let d = start(APP, kms::DEV_KMS_ROOT_KEY).await;
    let socket = d.socket.clone();
    assert!(socket.exists());
    d.stop().await.unwrap();
    assert!(!socket.exists());
    let e = GuestAgentClient::new(&socket).info().await.unwrap_err();
    assert!(matches!(e, AgentError::SocketMissing(_)));
}

#[test]
fn simulated_quotes_are_told_from_other_bytes() {
    assert!(!attestmesh_tee::quote::is_simulated(
        b"\x04\x00\x02\x00real tdx quote"
    ));
    let (q, _) = devtee::simulated_attestation(APP, B256::ZERO, [0; 64]);
    assert!(attestmesh_tee::quote::is_simulated(&q));
    assert!(!attestmesh_tee::quote::is_simulated(&q[..q.len() / 2]));
    let mut intel = q.clone();
    intel[12..28].copy_from_slice(&attestmesh_tee::tdx::INTEL_QE_VENDOR_ID);
    assert!(!attestmesh_tee::quote::is_simulated(&intel));
}
