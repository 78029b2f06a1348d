//! Every pure function checked against the shared vectors in `spec/vectors/` (read by the
//! Solidity tests too), so Rust and the contracts cannot drift apart.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use alloy_primitives::{Address, B256, hex, keccak256};
use attestmesh_core::binding::{MemberPubKeys, bind_hash, eth_signed_hash};
use attestmesh_core::ids::{DSTACK_ATTESTOR_ID, member_id};
use attestmesh_core::keys::{OwnerKey, X25519Secret};
use attestmesh_core::mesh::MeshCidr;
use attestmesh_core::message::{self, Envelope, FormatError};
use attestmesh_core::{sealed, secp};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/../../spec/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn cases(v: &Value) -> &Vec<Value> {
    let c = v["cases"].as_array().unwrap();
    assert!(!c.is_empty());
    c
}

fn s<'a>(c: &'a Value, k: &str) -> &'a str {
    c[k].as_str().unwrap_or_else(|| panic!("missing {k}"))
}

fn b256(c: &Value, k: &str) -> B256 {
    B256::from_str(s(c, k)).unwrap()
}

fn addr(c: &Value, k: &str) -> Address {
    Address::from_str(s(c, k)).unwrap()
}

fn bytes(c: &Value, k: &str) -> Vec<u8> {
    hex::decode(s(c, k)).unwrap()
}

#[test]
fn member_ids() {
    let v = load("member_ids.json");
    assert_eq!(
        B256::from_str(v["attestor_id_dstack"].as_str().unwrap()).unwrap(),
        DSTACK_ATTESTOR_ID
    );
    for c in cases(&v) {
        let got = member_id(
            addr(c, "cluster"),
            addr(c, "member_contract"),
            b256(c, "attestor_id"),
        );
        assert_eq!(got, b256(c, "member_id"), "{c}");
    }
}

#[test]
fn mesh_ips() {
    let v = load("mesh_ips.json");
    for c in cases(&v) {
        let cidr = MeshCidr::new(
            c["cidr_ip"].as_u64().unwrap() as u32,
            c["prefix"].as_u64().unwrap() as u8,
        )
        .unwrap();
        let id = b256(c, "member_id");
        assert_eq!(
            u64::from(cidr.mesh_ip_u32(&id)),
            c["ip"].as_u64().unwrap(),
            "{c}"
        );
        assert_eq!(cidr.mesh_ip(&id).to_string(), s(c, "dotted"), "{c}");
    }
}

#[test]
fn binding_hashes() {
    let v = load("binding_hashes.json");
    for c in cases(&v) {
        let keys = MemberPubKeys {
            x: b256(c, "x_pub_key"),
            wg: b256(c, "wg_pub_key"),
            ed: b256(c, "ed_pub_key"),
        };
        let h = bind_hash(addr(c, "cluster"), addr(c, "member_contract"), &keys);
        assert_eq!(h, b256(c, "bind_hash"), "{c}");
        assert_eq!(eth_signed_hash(&h), b256(c, "eth_signed_hash"), "{c}");
    }
}

#[test]
fn compressed_keys() {
    let v = load("compressed_keys.json");
    for c in cases(&v) {
        let sk: [u8; 32] = bytes(c, "private_key").try_into().unwrap();
        let key = OwnerKey::from_bytes(&sk).unwrap();
        assert_eq!(
            key.public_compressed().to_vec(),
            bytes(c, "compressed"),
            "{c}"
        );
        assert_eq!(key.address(), addr(c, "address"), "{c}");
        assert_eq!(
            secp::address_of_compressed(&bytes(c, "compressed")).unwrap(),
            addr(c, "address")
        );
    }
}

#[test]
fn selectors() {
    let v = load("selectors.json");
    for c in cases(&v) {
        let sel = bytes(c, "selector");
        let h = keccak256(s(c, "signature").as_bytes());
        assert_eq!(&h[..sel.len()], sel.as_slice(), "{c}");
    }
}

#[test]
fn sealed_boxes() {
    let v = load("sealed_box.json");
    for c in cases(&v) {
        let rsk: [u8; 32] = bytes(c, "recipient_secret").try_into().unwrap();
        let esk: [u8; 32] = bytes(c, "ephemeral_secret").try_into().unwrap();
        let r = X25519Secret::from_seed(rsk);
        assert_eq!(r.public(), b256(c, "recipient_public"));
        let msg = bytes(c, "message");
        let sealed_box = sealed::seal_with_ephemeral(&r.public(), &msg, &esk).unwrap();
        assert_eq!(sealed_box, bytes(c, "sealed"), "{c}");
        assert_eq!(sealed::open(&r, &bytes(c, "sealed")).unwrap(), msg);
    }
}

#[test]
fn message_plaintexts() {
    let v = load("message.json");
    for c in cases(&v) {
        let name = s(c, "name");
        let rsk: [u8; 32] = bytes(c, "recipient_secret").try_into().unwrap();
        let esk: [u8; 32] = bytes(c, "ephemeral_secret").try_into().unwrap();
        let r = X25519Secret::from_seed(rsk);
        assert_eq!(r.public(), b256(c, "recipient_public"), "{name}");
        let env = Envelope {
            cluster: addr(c, "cluster"),
            sender: b256(c, "sender"),
            recipient: b256(c, "recipient"),
            envelope_id: b256(c, "envelope_id"),
        };
        let payload = bytes(c, "payload");
        let plain = bytes(c, "plaintext");
        assert_eq!(*message::encode(&env, &payload), plain, "{name}: layout");
        assert_eq!(
            message::decode(&plain).unwrap(),
            (env, payload.as_slice()),
            "{name}: decode"
        );
        let sealed_box = message::seal_with_ephemeral(&r.public(), &env, &payload, &esk).unwrap();
        assert_eq!(sealed_box, bytes(c, "sealed"), "{name}: sealed");
        assert_eq!(
            message::open(&r, &env, &bytes(c, "sealed")).unwrap(),
            payload,
            "{name}: open"
        );
    }
    let refused = v["refused"].as_array().unwrap();
    assert!(!refused.is_empty());
    for c in refused {
        let name = s(c, "name");
        let err = message::decode(&bytes(c, "plaintext")).unwrap_err();
        let kind = match err {
            FormatError::Unversioned => "unversioned",
            FormatError::Version(_) => "version",
            FormatError::TooShort(_) => "too_short",
        };
        assert_eq!(kind, s(c, "error"), "{name}: {err}");
    }
}
