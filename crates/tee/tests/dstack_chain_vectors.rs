//! devtee's KMS formulas against `spec/vectors/dstack_chain.json`, which was generated
//! independently (Python HKDF + cast signatures), so a drift in either side shows up here.
#![allow(clippy::unwrap_used)]

use std::str::FromStr;

use alloy_primitives::{Address, hex};
use attestmesh_core::secp;
use attestmesh_tee::kms;

#[test]
fn dstack_chain_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/vectors/dstack_chain.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let s = |k: &str| c[k].as_str().unwrap().to_string();
        let b = |k: &str| hex::decode(s(k)).unwrap();
        let root: [u8; 32] = b("kms_root_key").try_into().unwrap();
        let app = Address::from_str(&s("app_id")).unwrap();
        let root_key = kms::signing_key(&root).unwrap();
        assert_eq!(
            secp::address_of(root_key.verifying_key()),
            Address::from_str(&s("kms_root_address")).unwrap()
        );
        let app_key = kms::app_key(&root, app).unwrap();
        assert_eq!(app_key.to_bytes().to_vec(), b("app_secret"));
        assert_eq!(
            secp::compress(app_key.verifying_key()).to_vec(),
            b("app_pubkey")
        );
        let issued = kms::issue(&root, app, &s("path"), &s("purpose")).unwrap();
        assert_eq!(issued.secret.to_vec(), b("key"));
        assert_eq!(issued.app_sig.to_vec(), b("app_sig"), "{c}");
        assert_eq!(issued.kms_sig.to_vec(), b("kms_sig"), "{c}");
        let key_pub = secp::compress(kms::signing_key(&issued.secret).unwrap().verifying_key());
        assert_eq!(key_pub.to_vec(), b("key_pubkey"));
    }
}
