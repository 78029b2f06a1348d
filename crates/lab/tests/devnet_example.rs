//! Devnet lab test (root) of the example application (crates/example-app, DESIGN §11, issue 8):
//! the `attestmesh-example` binary runs inside two node namespaces against their agents' app API
//! sockets, as an app container sharing the agent's network namespace would, and `demo` on both
//! nodes at once proves every step: healthy, peers, a sealed message each way received with the
//! right sender, the same application key derived from the CSK on both, and the authenticated
//! TCP exchange over mesh IPs in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod devnet_common;

use std::path::PathBuf;
use std::process::{Command, Output};

use devnet_common::{SERIAL, prerequisites, up};

/// `$ATTESTMESH_EXAMPLE_BIN`, else `attestmesh-example` next to the `attestmesh` binary (built by
/// `cargo test --workspace` / `cargo build -p attestmesh-example-app`).
fn example_exe(attestmesh: &std::path::Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATTESTMESH_EXAMPLE_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = attestmesh.parent()?.join("attestmesh-example");
    p.is_file().then_some(p)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value after `prefix` on the first line that starts with it.
fn line_value(out: &str, prefix: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
}

#[test]
fn example_app_demo_between_two_nodes() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(exe) = prerequisites(true) else {
        return;
    };
    let Some(example) = example_exe(&exe) else {
        attestmesh_testkit::lab::skip(
            "no attestmesh-example binary (build attestmesh-example-app or set \
             ATTESTMESH_EXAMPLE_BIN)",
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(up(exe, 2, true));
    let (a, b) = (&t.dn.state.nodes[0], &t.dn.state.nodes[1]);

    // Each node's demo targets the other; both run at once (each serves the echo the other
    // pings, and each waits for the other's message).
    let spawn = |me: &attestmesh_lab::devnet::NodeRecord, peer: String, text: &str| {
        Command::new("ip")
            .args(["netns", "exec", &me.ns])
            .arg(&example)
            .arg("--socket")
            .arg(&me.agent_socket)
            .args(["demo", "--timeout", "120", "--peer", &peer, "--text", text])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a_id, b_id) = (format!("{}", a.member_id), format!("{}", b.member_id));
    let ca = spawn(a, b_id.clone(), "hello B, this is A (devnet example)");
    let cb = spawn(b, a_id.clone(), "hello A, this is B (devnet example)");
    let oa = ca.wait_with_output().unwrap();
    let ob = cb.wait_with_output().unwrap();
    let (sa, sb) = (stdout(&oa), stdout(&ob));
    eprintln!(
        "--- node A ---\n{sa}{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    eprintln!(
        "--- node B ---\n{sb}{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    assert!(oa.status.success(), "demo on node A failed");
    assert!(ob.status.success(), "demo on node B failed");
    assert!(sa.contains("demo ok") && sb.contains("demo ok"));

    // The message A→B arrived at B, decrypted, with A as the sender (and B→A likewise).
    assert!(
        sb.contains(&format!("received from {a_id}"))
            && sb.contains("hello B, this is A (devnet example)"),
        "B did not receive A's message"
    );
    assert!(
        sa.contains(&format!("received from {b_id}"))
            && sa.contains("hello A, this is B (devnet example)"),
        "A did not receive B's message"
    );

    // Both derived the same application key from the CSK.
    let fa = line_value(&sa, "app key fingerprint:").expect("A printed its key fingerprint");
    let fb = line_value(&sb, "app key fingerprint:").expect("B printed its key fingerprint");
    assert_eq!(fa, fb, "A and B derived different application keys");
    assert_eq!(fa.len(), 16);

    // The authenticated TCP exchange over mesh IPs, both directions.
    let ip = |out: &str| {
        line_value(out, "this node:").and_then(|v| v.split_whitespace().last().map(str::to_owned))
    };
    let (ip_a, ip_b) = (ip(&sa).unwrap(), ip(&sb).unwrap());
    assert!(
        sa.contains(&format!("ping {b_id} at {ip_b}:"))
            && sa.contains("peer proved the same app key"),
        "A's ping to B over the mesh"
    );
    assert!(
        sb.contains(&format!("ping {a_id} at {ip_a}:")),
        "B's ping to A over the mesh"
    );
    assert!(sa.contains(&format!("served {b_id}")) && sb.contains(&format!("served {a_id}")));

    // The `app-key` command agrees with the demo, run as a separate app process.
    let o = Command::new("ip")
        .args(["netns", "exec", &b.ns])
        .arg(&example)
        .arg("--socket")
        .arg(&b.agent_socket)
        .arg("app-key")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        line_value(&stdout(&o), "app key fingerprint:").as_deref(),
        Some(fa.as_str())
    );
    drop(t);
}
