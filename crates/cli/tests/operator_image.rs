//! The node image files, checked without a container engine (none exists on the build machines):
//! the dstack compose example must mount the guest-agent socket, pass the TUN device with
//! NET_ADMIN, share the app socket directory, health-check `/healthz` on the agent's health
//! address, start the app only when the agent is healthy — and run a real `attestmesh`
//! subcommand with flags and environment variables the binary accepts. The Dockerfile's final
//! stage must run the binary the builder stage builds.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("deploy/docker-compose.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Flags and env twins a subcommand accepts, from the built binary's `--help`; `None` when the
/// binary has no such subcommand.
fn accepted(subcommand: &str) -> Option<(Vec<String>, Vec<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_attestmesh"))
        .args([subcommand, "--help"])
        .env("LOG", "warn")
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let flags = help
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '-')
                .to_string()
        })
        .collect();
    let envs = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next().map(str::to_string))
        .collect();
    Some((flags, envs))
}

/// The agent's settings from its definition (crates/node/src/config.rs): `(flag, env)` for every
/// field. Used only while the binary does not expose `node` yet.
fn node_args_from_source() -> (Vec<String>, Vec<String>) {
    let src = std::fs::read_to_string(repo().join("crates/node/src/config.rs")).unwrap();
    let (mut flags, mut envs) = (Vec::new(), Vec::new());
    let mut pending_env: Option<String> = None;
    for line in src.lines() {
        let l = line.trim();
        if let Some(rest) = l.split("env = \"").nth(1) {
            pending_env = rest.split('"').next().map(str::to_string);
        }
        if let (Some(field), Some(env)) = (
            l.strip_prefix("pub ").and_then(|r| r.split(':').next()),
            pending_env.clone(),
        ) && l.contains(':')
            && !l.contains("fn ")
        {
            flags.push(format!("--{}", field.trim().replace('_', "-")));
            envs.push(env);
            pending_env = None;
        }
    }
    (flags, envs)
}

#[test]
fn compose_file_has_the_dstack_agent_shape() {
    let c = compose();
    let agent = &c["services"]["agent"];
    let app = &c["services"]["app"];

    let volumes = strings(&agent["volumes"]);
    assert!(
        volumes
            .iter()
            .any(|v| v == "/var/run/dstack.sock:/var/run/dstack.sock"),
        "the dstack guest-agent socket is not mounted: {volumes:?}"
    );
    assert!(
        strings(&agent["devices"])
            .iter()
            .any(|d| d.starts_with("/dev/net/tun")),
        "no TUN device"
    );
    assert!(
        strings(&agent["cap_add"]).contains(&"NET_ADMIN".to_string()),
        "no NET_ADMIN"
    );

    // The app socket directory is one named volume mounted in both services.
    let command = strings(&agent["command"]);
    let flag_value = |flag: &str| {
        command
            .iter()
            .position(|a| a == flag)
            .and_then(|i| command.get(i + 1))
            .cloned()
    };
    let socket = flag_value("--agent-socket").expect("--agent-socket in the agent command");
    let socket_dir = socket.rsplit_once('/').unwrap().0.to_string();
    let shared = volumes
        .iter()
        .find(|v| v.ends_with(&format!(":{socket_dir}")))
        .unwrap_or_else(|| panic!("no volume at {socket_dir}: {volumes:?}"))
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        c["volumes"].get(shared.as_str()).is_some(),
        "{shared} is not a named volume"
    );
    assert!(
        strings(&app["volumes"]).contains(&format!("{shared}:{socket_dir}")),
        "the app does not mount the agent socket directory"
    );
    assert_eq!(
        app["environment"]["AGENT_SOCKET"].as_str(),
        Some(socket.as_str())
    );

    // Health: the check hits /healthz on the address the agent serves it on.
    let health = flag_value("--health-addr").expect("--health-addr in the agent command");
    let test = strings(&agent["healthcheck"]["test"]).join(" ");
    assert!(
        test.contains(&format!("http://{health}/healthz")),
        "healthcheck {test:?} does not hit {health}/healthz"
    );
    assert_eq!(
        app["depends_on"]["agent"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(app["network_mode"].as_str(), Some("service:agent"));

    // The command is a real subcommand; its flags and env settings exist.
    let sub = command.first().expect("a subcommand").clone();
    let (flags, envs) = match accepted(&sub) {
        Some(a) => a,
        None => {
            assert_eq!(sub, "node", "unknown subcommand {sub}");
            eprintln!(
                "NOTE: the binary has no `attestmesh node` subcommand yet; checking the compose \
                 file against crates/node/src/config.rs instead"
            );
            node_args_from_source()
        }
    };
    for flag in command.iter().filter(|a| a.starts_with("--")) {
        assert!(
            flags.contains(flag),
            "`attestmesh {sub}` has no flag {flag}"
        );
    }
    let env = agent["environment"].as_mapping().unwrap();
    for key in env.keys().filter_map(Value::as_str) {
        // LOG is the binary's global log filter.
        assert!(
            key == "LOG" || envs.iter().any(|e| e == key),
            "`attestmesh {sub}` reads no environment variable {key}"
        );
    }
    for needed in [
        "RPC_URL",
        "BUNDLER_URL",
        "PAYMASTER_URL",
        "GATEWAY_DOMAIN",
        "CHAIN_ID",
    ] {
        assert!(env.contains_key(needed), "agent environment lacks {needed}");
    }
}

#[test]
fn dockerfile_final_stage_runs_the_built_binary() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = text.split("\nFROM ").collect();
    assert!(stages.len() >= 3, "multi-stage: builder and runtime");
    let builder = stages[1];
    let runtime = stages.last().unwrap();
    assert!(
        builder.contains("--bin attestmesh"),
        "the builder builds the attestmesh binary"
    );
    assert!(
        builder.contains("target/release/attestmesh /out/attestmesh"),
        "the builder exports /out/attestmesh"
    );
    assert!(runtime.contains("COPY --from=builder /out/attestmesh /usr/local/bin/attestmesh"));
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/attestmesh\"]"));
    assert!(
        !runtime.contains("cargo"),
        "no toolchain in the runtime stage"
    );
    // The compose healthcheck needs curl in the runtime image.
    assert!(runtime.contains("curl"));
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
    // The workspace inputs the builder copies exist.
    for dir in ["crates", "proto", "artifacts", "spec"] {
        assert!(
            text.contains(&format!("COPY {dir} ./{dir}")),
            "{dir} not copied"
        );
        assert!(repo().join(dir).is_dir());
    }
}

#[test]
fn example_cluster_config_parses_except_for_its_placeholders() {
    // The example must be valid TOML with exactly the keys `create` accepts; its zero KMS root
    // is a placeholder the operator must replace, and `create` says so by key.
    let path = repo().join("deploy/cluster.example.toml");
    let err = attestmesh_ops::config::ClusterConfig::load(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kms_roots[0]") && err.contains("zero address"),
        "{err}"
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "kms_roots = [\"0x0000000000000000000000000000000000000000\"]",
        "kms_roots = [\"0x00000000000000000000000000000000000000AA\"]",
    );
    attestmesh_ops::config::ClusterConfig::parse(&text, &path).unwrap();
}
