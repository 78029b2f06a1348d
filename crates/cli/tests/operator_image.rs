//! The node image files, checked without a container engine (none exists on the build machines):
//! the dstack compose example must mount the guest-agent socket, pass the TUN device with
//! NET_ADMIN, share the app socket directory, health-check `/healthz` on the agent's health
//! address, start the app only when the agent is healthy — and run a real `attestmesh`
//! subcommand with flags and environment variables the binary accepts. The Dockerfile's final
//! stage must run the binary the builder stage builds. The compose's example app must be built
//! from the Dockerfile's `example-app` stage and run a real `attestmesh-example` subcommand.
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
    accepted_by(
        std::path::Path::new(env!("CARGO_BIN_EXE_attestmesh")),
        subcommand,
    )
}

/// [`accepted`] for any clap binary.
fn accepted_by(exe: &std::path::Path, subcommand: &str) -> Option<(Vec<String>, Vec<String>)> {
    let out = Command::new(exe)
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

    // Health: served on every address of the container and published, so operators reach it
    // through the gateway (`<app id>-<port>.<domain>`); the check hits it on loopback.
    let health = flag_value("--health-addr").expect("--health-addr in the agent command");
    let port = health
        .strip_prefix("0.0.0.0:")
        .unwrap_or_else(|| panic!("--health-addr {health}: not reachable through the gateway"));
    assert!(
        strings(&agent["ports"]).contains(&format!("{port}:{port}")),
        "the health port {port} is not published: {:?}",
        agent["ports"]
    );
    let test = strings(&agent["healthcheck"]["test"]).join(" ");
    assert!(
        test.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "healthcheck {test:?} does not hit port {port}'s /healthz"
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

/// `$ATTESTMESH_EXAMPLE_BIN`, else `attestmesh-example` in this test's target directory, built
/// there with the running cargo when `cargo test` did not build it (e.g. `-p attestmesh-cli`).
fn example_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("ATTESTMESH_EXAMPLE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/operator_image-… → target/<profile>/attestmesh-example
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap();
    let exe = profile_dir.join("attestmesh-example");
    if !exe.is_file() {
        let mut build = Command::new(env!("CARGO"));
        build
            .arg("build")
            .arg("--manifest-path")
            .arg(repo().join("Cargo.toml"))
            .args([
                "-p",
                "attestmesh-example-app",
                "--bin",
                "attestmesh-example",
            ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(
            status.success(),
            "cargo build -p attestmesh-example-app failed"
        );
    }
    assert!(exe.is_file(), "no {}", exe.display());
    exe
}

fn agent_image(c: &Value) -> String {
    c["services"]["agent"]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn compose_example_app_is_built_from_the_dockerfile_and_runs_a_real_command() {
    let c = compose();
    let app = &c["services"]["app"];

    // dstack pulls, never builds: no build section, and both images pinned by digest (the
    // compose hash then names exactly these builds).
    for svc in ["agent", "app"] {
        let s = &c["services"][svc];
        assert!(s.get("build").is_none(), "{svc}: dstack cannot build");
        let image = s["image"].as_str().expect("image");
        let digest = image
            .split_once("@sha256:")
            .map(|(_, d)| d)
            .unwrap_or_else(|| panic!("{svc}: {image} is not pinned by digest"));
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{svc}: {image}"
        );
    }
    assert!(app["image"].as_str().unwrap().contains("/example-app@"));
    assert!(agent_image(&c).contains("/attestmesh@"));
    // The example image is the Dockerfile's example-app stage (scripts/build-image builds the
    // same layout without a daemon).
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stages: Vec<&str> = text.split("\nFROM ").collect();
    let builder = stages[1];
    assert!(builder.contains("--bin attestmesh-example"));
    assert!(builder.contains("target/release/attestmesh-example /out/attestmesh-example"));
    let stage = stages
        .iter()
        .find(|s| {
            s.lines()
                .next()
                .is_some_and(|l| l.ends_with(" AS example-app"))
        })
        .expect("a `FROM … AS example-app` stage");
    assert!(
        stage.contains(
            "COPY --from=builder /out/attestmesh-example /usr/local/bin/attestmesh-example"
        )
    );
    assert!(stage.contains("ENTRYPOINT [\"/usr/local/bin/attestmesh-example\"]"));
    assert!(
        !stage.contains("cargo"),
        "no toolchain in the example image"
    );
    // `docker build .` still produces the node image.
    assert!(
        stages
            .last()
            .unwrap()
            .contains("ENTRYPOINT [\"/usr/local/bin/attestmesh\"]")
    );

    // The command is a real `attestmesh-example` subcommand; its flags and env settings exist.
    let exe = example_exe();
    let command = strings(&app["command"]);
    let sub = command.first().expect("an example-app subcommand").clone();
    let (flags, envs) = accepted_by(&exe, &sub)
        .unwrap_or_else(|| panic!("`attestmesh-example` has no subcommand {sub}"));
    for flag in command.iter().filter(|a| a.starts_with("--")) {
        assert!(
            flags.contains(flag),
            "`attestmesh-example {sub}` has no flag {flag}"
        );
    }
    for key in app["environment"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(Value::as_str)
    {
        assert!(
            envs.iter().any(|e| e == key),
            "`attestmesh-example {sub}` reads no environment variable {key}"
        );
    }
    // The Dockerfile's default command is a real subcommand too.
    let cmd = stage
        .lines()
        .find_map(|l| l.strip_prefix("CMD [\""))
        .and_then(|r| r.split('"').next())
        .expect("a CMD in the example-app stage");
    assert!(
        accepted_by(&exe, cmd).is_some(),
        "`attestmesh-example` has no subcommand {cmd}"
    );
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
