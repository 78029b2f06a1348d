//! The network lab (DESIGN §6.4): N node namespaces, each linked by one veth pair to a gateway
//! namespace only, processes run inside them, and `tc netem` on the links. Everything created is
//! removed on drop, including on panic. Test infrastructure, so it shells out to `ip` and `tc`.

pub mod devnet;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Lab failures.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("process in {ns} did not become ready: {detail}")]
    NotReady { ns: String, detail: String },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command and fails with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: format!("{cmd:?}"),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// True when this process can build labs (root with /dev/net/tun and `ip`).
pub fn available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    root && std::path::Path::new("/dev/net/tun").exists()
        && Command::new("ip").arg("-V").output().is_ok()
}

/// Raises this process's open-file soft limit to at least `want` (capped by the hard limit) and
/// returns the limit now in force. Processes the lab spawns inherit it, so a test that makes the
/// gateway hold thousands of connections calls this first.
pub fn raise_fd_limit(want: u64) -> Result<u64, LabError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let io = |e: nix::errno::Errno| LabError::Io(std::io::Error::from(e));
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io)?;
    if soft >= want {
        return Ok(soft);
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).map_err(io)?;
    Ok(new)
}

/// One node's place in the lab.
#[derive(Debug, Clone)]
pub struct LabNode {
    pub ns: String,
    /// The veth end inside the gateway namespace (where netem is applied).
    pub gw_if: String,
    /// The veth end inside the node namespace.
    pub node_if: String,
    /// The node's underlay address.
    pub addr: Ipv4Addr,
    /// The gateway namespace's address on this node's link.
    pub gw_addr: Ipv4Addr,
}

/// A running lab. Drop removes its processes, namespaces and links.
pub struct Lab {
    /// Unique per lab: keeps names (including WireGuard interface names, which must be unique
    /// across namespaces) from colliding between concurrent labs.
    pub prefix: String,
    pub gw_ns: String,
    pub nodes: Vec<LabNode>,
    namespaces: Vec<String>,
    procs: Vec<LabProcess>,
}

impl Lab {
    /// Builds `n` node namespaces plus the gateway namespace. Link i is 10.77.i.0/24 with the
    /// gateway at .1 and the node at .2; the node's default route points at the gateway. The
    /// gateway does not forward unless `forward` is set, so nodes cannot reach each other.
    pub fn new(n: usize, forward: bool) -> Result<Self, LabError> {
        let prefix = format!(
            "am{}{}",
            std::process::id() % 1000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            gw_ns: format!("{prefix}gw"),
            prefix: prefix.clone(),
            nodes: Vec::new(),
            namespaces: Vec::new(),
            procs: Vec::new(),
        };
        lab.add_ns(&lab.gw_ns.clone())?;
        lab.ns_cmd(&lab.gw_ns, &["ip", "link", "set", "lo", "up"])?;
        let fwd = if forward { "1" } else { "0" };
        lab.ns_cmd(
            &lab.gw_ns,
            &["sysctl", "-qw", &format!("net.ipv4.ip_forward={fwd}")],
        )?;
        for i in 0..n {
            let ns = format!("{prefix}n{i}");
            lab.add_ns(&ns)?;
            let octet = u8::try_from(i + 1).map_err(|_| LabError::Command {
                cmd: "Lab::new".into(),
                detail: "too many nodes".into(),
            })?;
            let node = LabNode {
                gw_if: format!("{prefix}g{i}"),
                node_if: format!("{prefix}v{i}"),
                addr: Ipv4Addr::new(10, 77, octet, 2),
                gw_addr: Ipv4Addr::new(10, 77, octet, 1),
                ns: ns.clone(),
            };
            run(Command::new("ip").args([
                "link",
                "add",
                &node.gw_if,
                "netns",
                &lab.gw_ns,
                "type",
                "veth",
                "peer",
                "name",
                &node.node_if,
                "netns",
                &ns,
            ]))?;
            lab.ns_cmd(&ns, &["ip", "link", "set", "lo", "up"])?;
            lab.ns_cmd(
                &ns,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", node.addr),
                    "dev",
                    &node.node_if,
                ],
            )?;
            lab.ns_cmd(&ns, &["ip", "link", "set", &node.node_if, "up"])?;
            lab.ns_cmd(
                &ns,
                &[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    &node.gw_addr.to_string(),
                ],
            )?;
            let gw = lab.gw_ns.clone();
            lab.ns_cmd(
                &gw,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", node.gw_addr),
                    "dev",
                    &node.gw_if,
                ],
            )?;
            lab.ns_cmd(&gw, &["ip", "link", "set", &node.gw_if, "up"])?;
            lab.nodes.push(node);
        }
        Ok(lab)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), LabError> {
        run(Command::new("ip").args(["netns", "add", ns]))?;
        self.namespaces.push(ns.to_owned());
        Ok(())
    }

    /// A command prepared to run inside `ns`.
    pub fn command(&self, ns: &str, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(argv);
        c
    }

    /// Runs a command in `ns`; non-zero exit is an error.
    pub fn ns_cmd(&self, ns: &str, argv: &[&str]) -> Result<Output, LabError> {
        run(&mut self.command(ns, argv))
    }

    /// Runs a command in `ns` and returns its status without judging it.
    pub fn ns_status(&self, ns: &str, argv: &[&str]) -> Result<ExitStatus, LabError> {
        Ok(self
            .command(ns, argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?)
    }

    /// One ping from `ns` to `dst` with a 1 s deadline.
    pub fn ping(&self, ns: &str, dst: Ipv4Addr) -> bool {
        self.ns_status(
            ns,
            &["ping", "-n", "-q", "-c", "1", "-W", "1", &dst.to_string()],
        )
        .map(|s| s.success())
        .unwrap_or(false)
    }

    /// Pings until one succeeds or `within` passes; returns how long it took.
    pub fn ping_until(&self, ns: &str, dst: Ipv4Addr, within: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.ping(ns, dst) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Starts a long-running process in `ns` and waits until it prints `READY` on stdout. It is
    /// stopped (stdin closed, then killed) when the lab drops.
    pub fn spawn_ready(&mut self, ns: &str, argv: &[&str]) -> Result<usize, LabError> {
        let mut child = self
            .command(ns, argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take();
        let idx = self.procs.len();
        self.procs.push(LabProcess { child: Some(child) });
        let Some(stdout) = stdout else {
            return Err(LabError::NotReady {
                ns: ns.into(),
                detail: "no stdout".into(),
            });
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut lines = std::io::BufReader::new(stdout).lines();
            let mut ready = false;
            while let Some(Ok(line)) = lines.next() {
                if !ready && line.trim() == "READY" {
                    ready = true;
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| LabError::NotReady {
                ns: ns.into(),
                detail: format!("{argv:?}"),
            })?;
        Ok(idx)
    }

    /// Stops one process started with [`Lab::spawn_ready`].
    pub fn stop(&mut self, idx: usize) {
        if let Some(p) = self.procs.get_mut(idx) {
            p.stop();
        }
    }

    /// Applies netem (e.g. `["delay", "20ms"]`, `["loss", "100%"]`) to both directions of node
    /// `i`'s link.
    pub fn netem(&self, i: usize, spec: &[&str]) -> Result<(), LabError> {
        let node = &self.nodes[i];
        for (ns, dev) in [(&self.gw_ns, &node.gw_if), (&node.ns, &node.node_if)] {
            let mut argv = vec![
                "tc",
                "qdisc",
                "replace",
                "dev",
                dev.as_str(),
                "root",
                "netem",
            ];
            argv.extend_from_slice(spec);
            self.ns_cmd(ns, &argv)?;
        }
        Ok(())
    }

    /// Cuts node `i` off the gateway completely: netem `loss 100%`, or, on kernels built without
    /// sch_netem (like this project's CI machine), a zero-length `pfifo` that drops every packet.
    pub fn partition(&self, i: usize) -> Result<(), LabError> {
        match self.netem(i, &["loss", "100%"]) {
            Ok(()) => Ok(()),
            Err(LabError::Command { detail, .. }) if detail.contains("qdisc kind is unknown") => {
                let node = &self.nodes[i];
                for (ns, dev) in [(&self.gw_ns, &node.gw_if), (&node.ns, &node.node_if)] {
                    self.ns_cmd(
                        ns,
                        &[
                            "tc", "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "0",
                        ],
                    )?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes any netem from node `i`'s link.
    pub fn heal(&self, i: usize) -> Result<(), LabError> {
        let node = &self.nodes[i];
        for (ns, dev) in [(&self.gw_ns, &node.gw_if), (&node.ns, &node.node_if)] {
            self.ns_cmd(ns, &["tc", "qdisc", "del", "dev", dev, "root"])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.stop();
        }
        // Deleting a namespace deletes the veth ends inside it (and so their peers).
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

struct LabProcess {
    child: Option<Child>,
}

impl LabProcess {
    /// Closing stdin asks for a clean shutdown; a process that ignores it is killed.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.flush();
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
