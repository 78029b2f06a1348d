//! Devnet lab tests (root): `devnet up` with 3 nodes reaches all-healthy, `status --json` tells
//! scripts everything they need, `devnet add` joins a fourth healthy node, `down` leaves no process, namespace, interface or directory,
//! and without root the command says what it needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod devnet_common;

use std::process::Command;

use attestmesh_lab::devnet;
use devnet_common::{SERIAL, prerequisites, runtime, up};

#[test]
fn three_nodes_reach_healthy_and_down_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    runtime().block_on(three_nodes_reach_healthy_and_down_leaves_nothing_async());
}

async fn three_nodes_reach_healthy_and_down_leaves_nothing_async() {
    let Some(exe) = prerequisites(true) else {
        return;
    };
    let t = up(exe.clone(), 3, true).await;
    let conv = t.dn.state.convergence_ms.expect("convergence measured");
    eprintln!("converged in {conv} ms");

    // The CLI's status --json, from another process, as a script would use it.
    let out = Command::new(&exe)
        .args(["devnet", "status", "--json", "--dir"])
        .arg(&t.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(st["rpc_url"].as_str().unwrap().starts_with("http://"));
    assert_eq!(st["cluster"], st["contracts"]["cluster"]);
    for k in [
        "entry_point",
        "cluster_diamond_factory",
        "cluster_member_factory",
        "sponsor_paymaster",
    ] {
        assert!(
            st["contracts"][k].as_str().unwrap().starts_with("0x"),
            "{k}"
        );
    }
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let mut ips = std::collections::HashSet::new();
    for n in nodes {
        assert_eq!(n["phase"], "healthy", "{n}");
        assert_eq!(n["healthy"], true);
        assert_eq!(n["live_peers"], 2, "{n}");
        assert!(
            n["namespace"]
                .as_str()
                .unwrap()
                .starts_with(&t.dn.state.prefix)
        );
        assert!(n["member_id"].as_str().unwrap().len() == 66);
        assert!(n["health_url"].as_str().unwrap().ends_with("/healthz"));
        assert!(std::path::Path::new(n["app_socket"].as_str().unwrap()).exists());
        ips.insert(n["mesh_ip"].as_str().unwrap().to_owned());
    }
    assert_eq!(ips.len(), 3, "distinct mesh IPs");
    production_topology(&t.dn, &st);
    // The readable table names every node and its phase.
    let out = Command::new(&exe)
        .args(["devnet", "status", "--dir"])
        .arg(&t.dir)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.matches("healthy").count(), 3, "{table}");

    // `devnet add` through the CLI: a fourth node joins, its row is printed once healthy.
    let out = Command::new(&exe)
        .args(["devnet", "add", "--timeout-secs", "120", "--dir"])
        .arg(&t.dir)
        .output()
        .unwrap();
    let added = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{added}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        added
            .lines()
            .any(|l| l.trim_start().starts_with("n3 ") && l.contains("healthy")),
        "{added}"
    );
    let out = Command::new(&exe)
        .args(["devnet", "status", "--json", "--dir"])
        .arg(&t.dir)
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{st}");
    assert!(nodes.iter().all(|n| n["healthy"] == true), "{st}");

    // The state on disk now includes the added node's processes.
    let state = devnet::Devnet::open(&t.dir).unwrap().state;
    let pids: Vec<u32> = state.all_procs().iter().map(|p| p.pid).collect();
    let prefix = t.dn.state.prefix.clone();
    let dir = t.dir.clone();
    // `down` through the CLI, twice: the second finds nothing and still succeeds.
    for _ in 0..2 {
        let out = Command::new(&exe)
            .args(["devnet", "down", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let left: Vec<String> = devnet::leftovers()
        .into_iter()
        .filter(|n| {
            n.starts_with(&prefix) && n[prefix.len()..].starts_with(|c: char| !c.is_ascii_digit())
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let running: Vec<u32> = pids.into_iter().filter(|p| devnet::alive(*p)).collect();
    assert!(running.is_empty(), "processes still running: {running:?}");
    assert!(!dir.exists(), "devnet directory still there");
    drop(t);
}

/// The devnet's topology is production's (DESIGN §12): the Indexer in its own CVM namespace,
/// every CVM (node or Indexer) reachable only through the gateway, over TLS it terminates.
fn production_topology(dn: &devnet::Devnet, st: &serde_json::Value) {
    let s = &dn.state;
    let ix_ns = s
        .indexer_ns
        .clone()
        .expect("the Indexer has its own namespace");
    assert_eq!(ix_ns, format!("{}ix", s.prefix));
    for name in ["indexer", "indexer-devtee"] {
        let p = s.services.iter().find(|p| p.name == name).expect(name);
        assert_eq!(p.ns, ix_ns, "{name} runs in the Indexer's CVM");
    }
    let indexer_url = st["indexer_url"].as_str().unwrap();
    assert!(
        indexer_url.starts_with("https://") && indexer_url.ends_with(devnet::GATEWAY_DOMAIN),
        "{indexer_url}"
    );
    for n in st["nodes"].as_array().unwrap() {
        let url = n["health_url"].as_str().unwrap();
        assert!(
            url.starts_with("https://") && url.contains(devnet::GATEWAY_DOMAIN),
            "health only through the gateway: {url}"
        );
    }
    // Through the gateway: each node's /metrics and the Indexer's /healthz.
    let reach = dn.gateway().unwrap();
    let (code, metrics) = reach
        .get(s.nodes[0].member_contract, devnet::HEALTH_PORT, "/metrics")
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("attestmesh_heartbeats_sent_total"),
        "{metrics}"
    );
    let registry = s.contracts.indexer_registry.unwrap();
    let (code, ix) = reach
        .get_json(registry, devnet::INDEXER_HTTP_PORT, "/healthz")
        .unwrap();
    assert_eq!(code, 200, "{ix}");
    // Not around it: from a node, neither another node's health nor the Indexer's ports; from
    // the host, no node at all.
    let short = std::time::Duration::from_secs(1);
    let ix_addr = std::net::SocketAddr::from(([10, 78, 1, 2], devnet::INDEXER_GRPC_PORT));
    let other_health = std::net::SocketAddr::new(s.nodes[1].addr.into(), devnet::HEALTH_PORT);
    for to in [ix_addr, other_health] {
        assert!(
            devnet::connect_in_ns(&s.nodes[0].ns, to, short).is_err(),
            "node 0 reached {to} around the gateway"
        );
    }
    // The host's only way in is its link to the gateway namespace, and the gateway namespace
    // forwards nothing: the host has no route into a CVM's address (a connect attempt would
    // leave by the host's default route, never entering the devnet).
    let cvm_addrs = s
        .nodes
        .iter()
        .map(|n| n.addr.to_string())
        .chain(["10.78.1.2".to_owned()]);
    for addr in cvm_addrs {
        let out = Command::new("ip")
            .args(["route", "get", &addr])
            .output()
            .unwrap();
        let route = String::from_utf8_lossy(&out.stdout);
        assert!(
            !route.contains(&format!("dev {} ", s.host_if)),
            "the host routes {addr} into the devnet: {route}"
        );
    }
}

#[test]
fn without_root_it_says_what_it_needs() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(exe) = prerequisites(false) else {
        return;
    };
    // Drop to `nobody` (util-linux setpriv) and try.
    let Ok(out) = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["devnet", "up", "--dir", "/tmp/amdn-noroot"])
        .output()
    else {
        attestmesh_testkit::lab::skip("no setpriv (util-linux) to drop root with");
        return;
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");
    assert!(
        err.contains("network namespaces") && err.contains("/dev/net/tun"),
        "{err}"
    );
    assert!(!std::path::Path::new("/tmp/amdn-noroot").exists());
}

#[test]
fn a_failed_up_leaves_nothing_behind() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(exe) = prerequisites(true) else {
        return;
    };
    runtime().block_on(async {
        let tmp = tempfile::Builder::new()
            .prefix("amdn")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().join("d");
        let mut cfg = devnet::UpConfig::new(devnet_common::repo(), exe, dir.clone());
        cfg.nodes = 1;
        // Nothing converges in a millisecond: `up` fails after starting every process.
        cfg.health_timeout = std::time::Duration::from_millis(1);
        let before = devnet::leftovers();
        let err = devnet::Devnet::up(cfg, false, &devnet_common::progress)
            .await
            .err()
            .expect("up must fail");
        assert!(err.to_string().contains("did not become ready"), "{err}");
        let after = devnet::leftovers();
        assert_eq!(after, before, "a failed up left namespaces or links");
        assert!(!dir.exists(), "a failed up left its directory");
    });
}
