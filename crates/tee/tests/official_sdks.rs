//! devtee against dstack's official SDKs, which we did not write (issue 15 item 7): the Python
//! `dstack-sdk` from PyPI (`spec/requirements.txt`), the JavaScript `@phala/dstack-sdk` from npm
//! (`package.json`) and the Rust `dstack-sdk` crate call every guest-agent method; their own models must accept every answer, their `replay_rtmrs` must
//! reproduce the quote's RTMRs, and what they return is checked here against the KMS formulas,
//! the TDX quote layout and independent signature verification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy_primitives::{Address, hex};
use attestmesh_tee::devtee::{Devtee, DevteeConfig};
use attestmesh_tee::tdx::TdxQuote;
use attestmesh_tee::{eventlog, kms, quote};
use serde_json::Value;

const APP: Address = alloy_primitives::address!("0x7a27fc94b2d4b5b57a5d5f7a4cf4fd7e5c5b2a11");

struct Running {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), attestmesh_tee::devtee::DevteeError>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dstack.sock");
    let d = Devtee::bind(DevteeConfig::dev(&socket, APP)).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(d.run(async move {
        let _ = rx.await;
    }));
    Running {
        socket,
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

fn hexb(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

/// The key chain `[app_sig, kms_sig]` over `pubkey` under `purpose` recovers the dev KMS root.
fn check_chain(purpose: &str, pubkey: &[u8], app_sig: &[u8], kms_sig: &[u8]) {
    let app_pub = attestmesh_core::secp::compress(
        &attestmesh_core::secp::recover(&kms::app_sig_hash(purpose, pubkey), app_sig).unwrap(),
    );
    let root =
        attestmesh_core::secp::recover_address(&kms::kms_issued_hash(APP, &app_pub), kms_sig)
            .unwrap();
    assert_eq!(root, kms::DEV_KMS_ROOT_ADDRESS);
}

/// The RTMRs of a quote (hex), read with our parser at the published offsets.
fn quote_rtmrs(quote: &[u8]) -> Vec<String> {
    let q = TdxQuote::parse(quote).unwrap();
    assert!(q.is_simulated());
    q.report.rtmr.iter().map(hex::encode).collect()
}

fn python_sdk_available() -> bool {
    Command::new("python3")
        .args(["-c", "import dstack_sdk"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_or_skip(what: &str) -> bool {
    if std::env::var_os("ATTESTMESH_REQUIRE_LAB").is_some() {
        panic!("{what} is required (ATTESTMESH_REQUIRE_LAB): scripts/test installs it");
    }
    eprintln!("skipping: {what} not installed (scripts/test installs it)");
    false
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(name)
}

/// Runs `program script` against a fresh devtee and checks the report it prints.
async fn run_sdk_script(program: &'static str, script: PathBuf) {
    let d = start().await;
    let socket = d.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .arg(script)
            .env("DSTACK_SIMULATOR_ENDPOINT", &socket)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the SDK failed against devtee:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_report(&r);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dstack_sdk_calls_every_method_against_devtee() {
    if !python_sdk_available() && !require_or_skip("python3 with dstack-sdk") {
        return;
    }
    run_sdk_script("python3", script("every_method.py")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_dstack_sdk_calls_every_method_against_devtee() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../node_modules/@phala/dstack-sdk");
    if !sdk.is_dir() && !require_or_skip("node with @phala/dstack-sdk (npm ci)") {
        return;
    }
    run_sdk_script("node", script("every_method.mjs")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_dstack_sdk_calls_every_method_against_devtee() {
    use dstack_sdk::dstack_client::{DstackClient, TlsKeyConfig};
    let d = start().await;
    let c = DstackClient::new(Some(d.socket.to_str().unwrap()));
    let replayed = |q: &dstack_sdk::dstack_client::GetQuoteResponse| -> Value {
        let m = q.replay_rtmrs().unwrap();
        Value::from((0u8..4).map(|i| m[&i].clone()).collect::<Vec<_>>())
    };
    let events = |q: &dstack_sdk::dstack_client::GetQuoteResponse| -> Value {
        Value::from(
            q.decode_event_log()
                .unwrap()
                .into_iter()
                .map(|e| e.event)
                .collect::<Vec<_>>(),
        )
    };

    let version = c.version().await.unwrap();
    let info = c.info().await.unwrap();
    let tcb = &info.tcb_info;
    let key = c
        .get_key(Some("attestmesh/sdk-test".into()), Some("ethereum".into()))
        .await
        .unwrap();
    let q = c
        .get_quote(b"attestmesh sdk test report data".to_vec())
        .await
        .unwrap();
    c.emit_event("attestmesh-sdk-test".into(), b"payload".to_vec())
        .await
        .unwrap();
    let q2 = c.get_quote(b"after emit".to_vec()).await.unwrap();
    let attest = c.attest(b"attest report data".to_vec()).await.unwrap();
    let tls = c
        .get_tls_key(
            TlsKeyConfig::builder()
                .subject("sdk-test.example")
                .alt_names(vec!["sdk-test.example".into(), "localhost".into()])
                .usage_ra_tls(true)
                .usage_server_auth(true)
                .usage_client_auth(true)
                .build(),
        )
        .await
        .unwrap();
    let mut sign = serde_json::Map::new();
    let data = b"attestmesh sdk test message".to_vec();
    for (alg, msg) in [
        ("ed25519", data.clone()),
        ("secp256k1", data.clone()),
        ("secp256k1_prehashed", (0u8..32).collect::<Vec<_>>()),
    ] {
        let s = c.sign(alg, msg.clone()).await.unwrap();
        let sig = s.decode_signature().unwrap();
        let pk = s.decode_public_key().unwrap();
        let ok = c
            .verify(alg, msg.clone(), sig.clone(), pk.clone())
            .await
            .unwrap()
            .valid;
        let other = if alg == "secp256k1_prehashed" {
            vec![0u8; 32]
        } else {
            [&msg[..], b"!"].concat()
        };
        let bad = c.verify(alg, other, sig, pk).await.unwrap().valid;
        sign.insert(
            alg.into(),
            serde_json::json!({
                "data": hex::encode(&msg),
                "signature": s.signature,
                "chain": s.signature_chain,
                "public_key": s.public_key,
                "verified": ok,
                "tampered_verified": bad,
            }),
        );
    }
    let report = serde_json::json!({
        "reachable": true,
        "version": {"version": version.version, "rev": version.rev},
        "info": {
            "app_id": info.app_id,
            "instance_id": info.instance_id,
            "app_name": info.app_name,
            "compose_hash": info.compose_hash,
            "app_cert": info.app_cert,
            "tcb": {
                "mrtd": tcb.mrtd,
                "rtmr": [tcb.rtmr0, tcb.rtmr1, tcb.rtmr2, tcb.rtmr3],
                "compose_hash": tcb.compose_hash,
                "app_compose": tcb.app_compose,
                "events": tcb.event_log.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
            },
        },
        "key": {
            "key": hex::encode(key.decode_key().unwrap()),
            "chain": key.decode_signature_chain().unwrap().iter().map(hex::encode).collect::<Vec<_>>(),
        },
        "key_ed25519": null,
        "quote": {
            "quote": q.quote,
            "report_data": q.report_data,
            "replayed": replayed(&q),
            "events": events(&q),
        },
        "quote_after_emit": {
            "quote": q2.quote,
            "replayed": replayed(&q2),
            "events": events(&q2),
        },
        "attest": attest.attestation,
        "tls": {"key": tls.key, "chain": tls.certificate_chain},
        "sign": sign,
    });
    check_report(&report);
    d.stop().await;
}

/// What every SDK must have seen, whichever language produced `r`.
fn check_report(r: &Value) {
    assert_eq!(r["reachable"], true);
    assert_eq!(
        r["version"]["version"],
        attestmesh_tee::devtee::EMULATED_VERSION
    );

    // Info: the app, and a tcb_info whose manifest hashes to the compose hash it reports.
    let info = &r["info"];
    assert_eq!(hexb(&info["app_id"]), APP.as_slice());
    let compose = attestmesh_tee::devtee::default_compose_hash();
    assert_eq!(hexb(&info["compose_hash"]), compose.as_slice());
    let tcb = &info["tcb"];
    assert_eq!(hexb(&tcb["compose_hash"]), compose.as_slice());
    let manifest = tcb["app_compose"].as_str().unwrap();
    assert_eq!(
        attestmesh_tee::compose::sha256(manifest.as_bytes()),
        compose
    );
    assert!(
        info["app_cert"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // GetKey: the dstack KMS key and a chain that recovers the KMS root.
    let want = kms::issue(
        &kms::DEV_KMS_ROOT_KEY,
        APP,
        "attestmesh/sdk-test",
        "ethereum",
    )
    .unwrap();
    assert_eq!(hexb(&r["key"]["key"]), want.secret.as_slice());
    let chain = &r["key"]["chain"];
    assert_eq!(hexb(&chain[0]), want.app_sig);
    assert_eq!(hexb(&chain[1]), want.kms_sig);
    // (The Rust SDK's get_key always asks for secp256k1, so only Python reports ed25519.)
    let ed = &r["key_ed25519"];
    if !ed.is_null() {
        let seed: [u8; 32] = hexb(&ed["key"]).try_into().unwrap();
        let ed_pub = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        check_chain(
            "ed25519-purpose",
            ed_pub.as_bytes(),
            &hexb(&ed["chain"][0]),
            &hexb(&ed["chain"][1]),
        );
    }

    // GetQuote: TDX v4 layout, zero-padded report data, the SDK's replay equals the quote's
    // RTMRs and equals /Info's; the log proves the compose hash.
    let q = &r["quote"];
    let quote_bytes = hexb(&q["quote"]);
    let rd = b"attestmesh sdk test report data";
    let parsed = TdxQuote::parse(&quote_bytes).unwrap();
    assert_eq!(&parsed.report.report_data[..rd.len()], rd);
    assert!(
        parsed.report.report_data[rd.len()..]
            .iter()
            .all(|&b| b == 0)
    );
    let rtmrs = quote_rtmrs(&quote_bytes);
    let replayed: Vec<String> = strings(&q["replayed"]);
    assert_eq!(
        replayed, rtmrs,
        "the SDK's replay_rtmrs must give the quote's RTMRs"
    );
    let info_rtmrs: Vec<String> = strings(&tcb["rtmr"]);
    assert_eq!(info_rtmrs, rtmrs);
    assert_eq!(hexb(&tcb["mrtd"]), parsed.report.mr_td);
    assert!(
        q["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == eventlog::COMPOSE_HASH_EVENT)
    );

    // EmitEvent extends RTMR3 only, and the replay still matches.
    let after = &r["quote_after_emit"];
    let after_rtmrs = quote_rtmrs(&hexb(&after["quote"]));
    assert_eq!(after_rtmrs[..3], rtmrs[..3]);
    assert_ne!(after_rtmrs[3], rtmrs[3]);
    let after_replayed: Vec<String> = strings(&after["replayed"]);
    assert_eq!(after_replayed, after_rtmrs);
    assert_eq!(
        after["events"].as_array().unwrap().last().unwrap(),
        "attestmesh-sdk-test"
    );

    // Attest: devtee's tagged blob around a quote over the report data.
    let att = hexb(&r["attest"]);
    assert_eq!(att[0], attestmesh_tee::devtee::ATTESTATION_TAG);
    let qlen = u32::from_le_bytes(att[1..5].try_into().unwrap()) as usize;
    let aq = quote::report_data(&att[5..5 + qlen], true).unwrap();
    assert_eq!(&aq.report_data[..18], b"attest report data");

    // GetTlsKey: a PKCS#8 key and a two-certificate chain that webpki accepts for the name.
    let tls = &r["tls"];
    assert!(tls["key"].as_str().unwrap().contains("BEGIN PRIVATE KEY"));
    let chain = tls["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    check_tls_chain(chain[0].as_str().unwrap(), chain[1].as_str().unwrap());

    // Sign / Verify: each algorithm verifies independently here, the SDK's own Verify accepts
    // it and refuses a changed message, and the chain binds the key to the app.
    for alg in ["ed25519", "secp256k1", "secp256k1_prehashed"] {
        let s = &r["sign"][alg];
        assert_eq!(s["verified"], true, "{alg}");
        assert_eq!(s["tampered_verified"], false, "{alg}");
        let data = hexb(&s["data"]);
        let sig = hexb(&s["signature"]);
        let pk = hexb(&s["public_key"]);
        match alg {
            "ed25519" => {
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.clone().try_into().unwrap())
                    .unwrap();
                let sig = ed25519_dalek::Signature::from_bytes(&sig.clone().try_into().unwrap());
                vk.verify_strict(&data, &sig).unwrap();
            }
            _ => {
                use k256::ecdsa::signature::hazmat::PrehashVerifier;
                use sha2::Digest;
                let digest: Vec<u8> = if alg == "secp256k1" {
                    sha2::Sha256::digest(&data).to_vec()
                } else {
                    data.clone()
                };
                let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
                let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
                vk.verify_prehash(&digest, &sig).unwrap();
            }
        }
        let chain = s["chain"].as_array().unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(hexb(&chain[0]), hexb(&s["signature"]));
        check_chain("signing", &pk, &hexb(&chain[1]), &hexb(&chain[2]));
    }
}

/// A JSON array of strings.
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The leaf verifies under the CA for `sdk-test.example` with rustls' webpki verifier.
fn check_tls_chain(leaf_pem: &str, ca_pem: &str) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).unwrap();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .unwrap();
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from("sdk-test.example").unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap();
    // The RA-TLS extension carries a quote: its DER bytes appear in the certificate.
    let oid_der: &[u8] = &[
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xe7, 0x3d, 0x01, 0x01,
    ];
    assert!(
        leaf.as_ref().windows(oid_der.len()).any(|w| w == oid_der),
        "no RA-TLS quote extension"
    );
}
