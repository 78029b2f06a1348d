//! Sealed boxes interoperate with libsodium itself (through PyNaCl): each side opens what the
//! other sealed. Fails, never skips, when python3 or PyNaCl is missing — CI must install
//! `pip install pynacl==1.5.0`.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use alloy_primitives::{B256, hex};
use attestmesh_core::keys::X25519Secret;
use attestmesh_core::sealed;
use rand_core::{OsRng, RngCore};

/// Reads one JSON request on stdin, answers on stdout. Ops: keypair, seal, open.
const PY: &str = r#"
import sys, json
try:
    from nacl import bindings as b
except ImportError as e:
    print("PYNACL_MISSING: " + str(e), file=sys.stderr)
    sys.exit(3)
req = json.load(sys.stdin)
out = {}
if req["op"] == "keypair":
    pk, sk = b.crypto_box_keypair()
    out = {"pk": pk.hex(), "sk": sk.hex()}
elif req["op"] == "seal":
    out = {"sealed": b.crypto_box_seal(bytes.fromhex(req["msg"]), bytes.fromhex(req["pk"])).hex()}
elif req["op"] == "open":
    pk = bytes.fromhex(req["pk"]); sk = bytes.fromhex(req["sk"])
    out = {"msg": b.crypto_box_seal_open(bytes.fromhex(req["sealed"]), pk, sk).hex()}
json.dump(out, sys.stdout)
"#;

fn python(req: serde_json::Value) -> serde_json::Value {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3 and `pip install pynacl==1.5.0`")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("PYNACL_MISSING") {
        panic!("PyNaCl is not installed for python3: run `pip install pynacl==1.5.0` ({stderr})");
    }
    assert!(out.status.success(), "python failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn field(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap()).unwrap()
}

#[test]
fn libsodium_opens_what_rust_sealed() {
    let kp = python(serde_json::json!({"op": "keypair"}));
    let pk = B256::from_slice(&field(&kp, "pk"));
    for len in [0usize, 1, 32, 777] {
        let mut msg = vec![0u8; len];
        OsRng.fill_bytes(&mut msg);
        let sealed_box = sealed::seal(&pk, &msg, &mut OsRng).unwrap();
        let opened = python(serde_json::json!({
            "op": "open",
            "pk": hex::encode(pk),
            "sk": hex::encode(field(&kp, "sk")),
            "sealed": hex::encode(&sealed_box),
        }));
        assert_eq!(field(&opened, "msg"), msg);
    }
}

#[test]
fn rust_opens_what_libsodium_sealed() {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let r = X25519Secret::from_seed(seed);
    for len in [0usize, 1, 32, 777] {
        let mut msg = vec![0u8; len];
        OsRng.fill_bytes(&mut msg);
        let sealed_box = python(serde_json::json!({
            "op": "seal",
            "pk": hex::encode(r.public()),
            "msg": hex::encode(&msg),
        }));
        assert_eq!(
            sealed::open(&r, &field(&sealed_box, "sealed")).unwrap(),
            msg
        );
    }
}
