//! Mesh throughput (DESIGN §13): iperf3 between two lab nodes over
//! (a) our WireGuard (boringtun device configured by attestmesh-net) with direct UDP,
//! (b) the same device through the TCP/TLS bridge and the dev gateway,
//! (c) stock `boringtun-cli` configured with `wg set`, direct UDP,
//! all in the same namespaces in one run. Prints throughput and the ratios a/c and b/a.
//!
//! Needs root, iperf3 and wireguard-tools. (c) needs `boringtun-cli`: set BORINGTUN_CLI or put it
//! on PATH (`cargo install boringtun-cli --root <dir>`); without it (c) is reported as skipped.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use attestmesh_lab::Lab;
use attestmesh_net::PrivateKey;

const BIN: &str = env!("CARGO_BIN_EXE_am-lab-node");
const SECS: &str = "8";

fn mesh_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, 1 + i as u8)
}

fn host(i: usize) -> String {
    format!("b{i}-51900s.mesh.test")
}

/// Runs iperf3 from node 0 to node 1's mesh address; returns received Gbit/s.
fn iperf(lab: &mut Lab) -> Result<f64, String> {
    let ns1 = lab.nodes[1].ns.clone();
    let bind = mesh_ip(1).to_string();
    let mut server = lab
        .command(&ns1, &["iperf3", "-s", "-1", "-B", &bind])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let ns0 = lab.nodes[0].ns.clone();
    // Warm the tunnel (handshake) before measuring.
    lab.ping_until(&ns0, mesh_ip(1), Duration::from_secs(20))
        .ok_or("tunnel never came up")?;
    let out = lab
        .command(&ns0, &["iperf3", "-c", &bind, "-t", SECS, "-J"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string());
    let _ = server.kill();
    let _ = server.wait();
    let out = out?;
    let json = String::from_utf8_lossy(&out.stdout);
    let at = json
        .find("\"sum_received\"")
        .ok_or("no sum_received in iperf3 output")?;
    let rest = &json[at..];
    let k = rest
        .find("\"bits_per_second\":")
        .ok_or("no bits_per_second")?;
    let num: String = rest[k + 18..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    let bps: f64 = num.parse().map_err(|_| format!("bad number {num}"))?;
    Ok(bps / 1e9)
}

fn our_nodes(lab: &mut Lab, keys: &[PrivateKey], bridged: bool) -> Result<Vec<usize>, String> {
    let mut procs = Vec::new();
    for i in 0..2 {
        let j = 1 - i;
        let route = if bridged {
            format!("bridge:{}", host(j))
        } else {
            format!("direct:{}:51821", lab.nodes[j].addr)
        };
        let iface = format!("{}w{i}", lab.prefix);
        let key = keys[i].to_base64();
        let addr = format!("{}/24", mesh_ip(i));
        let h = host(i);
        let gw = format!("{}:443", lab.nodes[i].gw_addr);
        let peer = format!("{},{},{route}", keys[j].public_key(), mesh_ip(j));
        let ns = lab.nodes[i].ns.clone();
        let argv = [
            BIN,
            "node",
            "--iface",
            &iface,
            "--key",
            &key,
            "--addr",
            &addr,
            "--host",
            &h,
            "--gateway",
            &gw,
            "--peer",
            &peer,
        ];
        procs.push(lab.spawn_ready(&ns, &argv).map_err(|e| e.to_string())?);
    }
    Ok(procs)
}

/// A stock boringtun-cli process and its control socket, which SIGKILL leaves behind.
struct Killed(Child, String);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn boringtun_cli_path() -> Option<String> {
    if let Ok(p) = std::env::var("BORINGTUN_CLI") {
        return Some(p);
    }
    let ok = Command::new("boringtun-cli")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then(|| "boringtun-cli".to_owned())
}

/// Stock boringtun-cli, configured by `ip` and `wg set` like an operator would.
fn stock(lab: &mut Lab, keys: &[PrivateKey], cli: &str) -> Result<f64, String> {
    let mut guards = Vec::new();
    let dir = std::env::temp_dir();
    for i in 0..2 {
        let j = 1 - i;
        let ns = lab.nodes[i].ns.clone();
        let iface = format!("{}s{i}", lab.prefix);
        let child = lab
            .command(
                &ns,
                &[cli, "-f", "--disable-drop-privileges", "-t", "2", &iface],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let sock = format!("/var/run/wireguard/{iface}.sock");
        guards.push(Killed(child, sock.clone()));
        for _ in 0..100 {
            if std::path::Path::new(&sock).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let keyfile = dir.join(format!("{iface}.key"));
        std::fs::write(&keyfile, keys[i].to_base64().as_bytes()).map_err(|e| e.to_string())?;
        let keypath = keyfile.to_string_lossy().into_owned();
        let peer = keys[j].public_key().to_string();
        let ep = format!("{}:51821", lab.nodes[j].addr);
        let allowed = format!("{}/32", mesh_ip(j));
        let addr = format!("{}/24", mesh_ip(i));
        let steps: [&[&str]; 3] = [
            &[
                "wg",
                "set",
                &iface,
                "private-key",
                &keypath,
                "listen-port",
                "51821",
                "peer",
                &peer,
                "endpoint",
                &ep,
                "allowed-ips",
                &allowed,
                "persistent-keepalive",
                "25",
            ],
            &["ip", "addr", "add", &addr, "dev", &iface],
            &["ip", "link", "set", &iface, "mtu", "1420", "up"],
        ];
        for s in steps {
            lab.ns_cmd(&ns, s).map_err(|e| e.to_string())?;
        }
        let _ = std::fs::remove_file(&keyfile);
    }
    iperf(lab)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    if !attestmesh_lab::available() {
        eprintln!("mesh_throughput: skipped (needs root, /dev/net/tun, iproute2)");
        return;
    }
    let keys: Vec<PrivateKey> = (0..2).map(|_| PrivateKey::generate()).collect();
    // The gateway namespace forwards here so (a) and (c) have a direct UDP path.
    let mut lab = match Lab::new(2, true) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mesh_throughput: lab: {e}");
            std::process::exit(1);
        }
    };
    let gw_ns = lab.gw_ns.clone();
    let route0 = format!("b0={}", lab.nodes[0].addr);
    let route1 = format!("b1={}", lab.nodes[1].addr);
    if let Err(e) = lab.spawn_ready(
        &gw_ns,
        &[
            BIN,
            "gateway",
            "--listen",
            "0.0.0.0:443",
            "--domain",
            "mesh.test",
            "--route",
            &route0,
            "--route",
            &route1,
        ],
    ) {
        eprintln!("mesh_throughput: gateway: {e}");
        std::process::exit(1);
    }

    let run = |bridged: bool, lab: &mut Lab| -> Result<f64, String> {
        let procs = our_nodes(lab, &keys, bridged)?;
        let r = iperf(lab);
        for p in procs {
            lab.stop(p);
        }
        r
    };
    let a = run(false, &mut lab);
    let b = run(true, &mut lab);
    let c = match boringtun_cli_path() {
        Some(cli) => stock(&mut lab, &keys, &cli).map(Some),
        None => Ok(None),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("mesh_throughput: iperf3 TCP {SECS} s, node0 -> node1, {cores} cores, MTU 1420");
    let show = |name: &str, r: &Result<f64, String>| match r {
        Ok(g) => println!("  {name}: {g:.3} Gbit/s"),
        Err(e) => println!("  {name}: failed: {e}"),
    };
    show("(a) attestmesh wireguard, direct UDP      ", &a);
    show("(b) attestmesh wireguard, TLS bridge + gw ", &b);
    match &c {
        Ok(Some(g)) => println!("  (c) boringtun-cli + wg set, direct UDP     : {g:.3} Gbit/s"),
        Ok(None) => println!("  (c) boringtun-cli: skipped (not installed; set BORINGTUN_CLI)"),
        Err(e) => println!("  (c) boringtun-cli: failed: {e}"),
    }
    if let (Ok(a), Ok(Some(c))) = (&a, &c) {
        println!("  a/c = {:.2} (target >= 1.0)", a / c);
    }
    if let (Ok(a), Ok(b)) = (&a, &b) {
        println!("  b/a = {:.2} (target >= 0.5)", b / a);
    }
    if a.is_err() || b.is_err() || c.is_err() {
        std::process::exit(1);
    }
}
