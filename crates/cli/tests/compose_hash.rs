//! `attestmesh cluster compose-hash` / `app-compose` (issue 15 item 5), checked against what we
//! did not write: dstack's own simulator manifest (its file bytes are what dstack's guest
//! measures) and the official `dstack-sdk` Python package's `get_compose_hash` from PyPI
//! (`spec/requirements.txt`; `scripts/test` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn attestmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attestmesh"))
        .args(args)
        .env("LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn file_sha256(path: &Path) -> String {
    format!(
        "0x{}",
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    )
}

/// `dstack_sdk.get_compose_hash` of the parsed file, computed by the PyPI package itself.
fn sdk_compose_hash(path: &Path) -> String {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys\nfrom dstack_sdk import get_compose_hash\n\
             print(get_compose_hash(json.load(open(sys.argv[1], encoding='utf-8'))))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "dstack-sdk from PyPI is required (pip install -r spec/requirements.txt): {}",
        stderr(&out)
    );
    format!("0x{}", stdout(&out).trim_start_matches("0x"))
}

#[test]
fn the_hash_of_dstacks_simulator_manifest_is_its_file_bytes_and_the_sdk_form_is_named() {
    let sample = repo().join("crates/tee/testdata/dstack-simulator-app-compose.json");
    let out = attestmesh(&["cluster", "compose-hash", sample.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // What dstack's VMM writes and its guest measures into RTMR3: the file, byte for byte.
    assert_eq!(stdout(&out), file_sha256(&sample));
    assert_eq!(
        stdout(&out),
        "0x65b4e574f16973956908b6359920593c3b7d9f36f38e81a47f996a0c0d5435bb"
    );
    // The file is not canonical (keys unsorted): the SDK hashes something else, and the command
    // says so, naming the SDK's value as the SDK itself computes it.
    let sdk = sdk_compose_hash(&sample);
    assert_ne!(sdk, stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("not in canonical form"), "{err}");
    assert!(err.contains(&sdk), "{err} should name the SDK's {sdk}");
}

#[test]
fn a_manifest_built_from_the_deploy_compose_has_one_hash_for_dstack_and_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("app-compose.json");
    let compose = repo().join("deploy/docker-compose.yaml");
    let built = attestmesh(&[
        "cluster",
        "app-compose",
        compose.to_str().unwrap(),
        "--name",
        "attestmesh-node",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let hash = stdout(&built);
    assert_eq!(hash, file_sha256(&out_path));
    assert_eq!(
        hash,
        sdk_compose_hash(&out_path),
        "canonical: every tool agrees"
    );
    let hashed = attestmesh(&["cluster", "compose-hash", out_path.to_str().unwrap()]);
    assert!(hashed.status.success(), "{}", stderr(&hashed));
    assert_eq!(stdout(&hashed), hash);
    assert!(!stderr(&hashed).contains("warning"), "{}", stderr(&hashed));

    // The manifest embeds the compose verbatim and lets in exactly the variables it uses.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(
        doc["docker_compose_file"].as_str().unwrap(),
        std::fs::read_to_string(&compose).unwrap()
    );
    let envs: Vec<&str> = doc["allowed_envs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for required in ["RPC_URL", "BUNDLER_URL", "PAYMASTER_URL", "CHAIN_ID"] {
        assert!(envs.contains(&required), "{required} in {envs:?}");
    }
    assert_eq!(doc["kms_enabled"], true);
    assert_eq!(doc["gateway_enabled"], true);

    // No silent overwrite of a manifest whose hash may be allowlisted already.
    let again = attestmesh(&[
        "cluster",
        "app-compose",
        compose.to_str().unwrap(),
        "--name",
        "other",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(file_sha256(&out_path), hash);
}

#[test]
fn bad_manifests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "docker-compose.yaml",
            b"services:\n  agent:\n    image: x\n",
            "looks like a docker-compose file",
        ),
        (
            "dup.json",
            br#"{"manifest_version":2,"name":"a","name":"b","runner":"docker-compose"}"#,
            "duplicate key",
        ),
        ("array.json", b"[1,2]", "not a JSON object"),
        (
            "noname.json",
            br#"{"manifest_version":2,"runner":"docker-compose"}"#,
            "`name` is missing",
        ),
        (
            "envs.json",
            br#"{"manifest_version":2,"name":"a","runner":"docker-compose","allowed_envs":"RPC_URL"}"#,
            "allowed_envs",
        ),
    ];
    for (name, body, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = attestmesh(&["cluster", "compose-hash", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} accepted");
        assert!(stderr(&out).contains(expect), "{name}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{name}: no hash printed on error");
    }
    let missing = attestmesh(&["cluster", "compose-hash", "/nonexistent/app-compose.json"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/app-compose.json"));

    // A variable the compose uses but dstack will not pass in is a warning, not silence.
    let path = dir.path().join("partial.json");
    std::fs::write(
        &path,
        br#"{"allowed_envs":["RPC_URL"],"docker_compose_file":"x: ${RPC_URL} ${CHAIN_ID}","manifest_version":2,"name":"a","runner":"docker-compose"}"#,
    )
    .unwrap();
    let out = attestmesh(&["cluster", "compose-hash", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("CHAIN_ID"), "{}", stderr(&out));
}
