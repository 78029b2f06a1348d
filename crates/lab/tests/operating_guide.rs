//! The operator guide, run (root): every command of `docs/operating.md`, in order, against a
//! local chain, with devtee CVMs behind the dev gateway — a step that is not in the guide is not
//! in this test.
//!
//! The guide marks what a step is with an HTML comment before it (invisible when rendered):
//! - `<!-- guide-test: env -->` — the operator's own values (`export NAME=…`). The test gives
//!   the local values for exactly those names and fails if the guide asks for another one.
//! - `<!-- guide-test: run -->` — run the block with bash (`set -euo pipefail`) in the operator's
//!   working directory; exported variables carry over to later blocks.
//! - `<!-- guide-test: service NAME -->` — a long-running command on "your server" (the gateway
//!   namespace, which plays the internet), started in the background.
//! - `<!-- guide-test: cvm MANIFEST ENV_FILE VAR -->` — "deploy a dstack app from MANIFEST with
//!   ENV_FILE as its encrypted environment, app id $VAR". When a block follows, it is the
//!   operator noting the id dstack assigned (`export VAR=…`): the test assigns one instead.
//!
//! What stands in for the platform, and nothing else: anvil with EntryPoint v0.7 at its canonical
//! address (as on Base), alto as "your bundler", the dev gateway (its CA trusted as a dstack
//! gateway's public certificate is, and DNS for `*.<domain>` pointing at it — a `curl` wrapper
//! and `GATEWAY_CONNECT`), and for each CVM: a namespace linked only to the gateway, devtee
//! measuring that manifest, and the manifest's compose run as dstack runs it (each service whose
//! image is the attestmesh image started with its command, the image's environment, its
//! `environment:` interpolated from the encrypted environment, its volumes mapped to a directory
//! of that CVM). Two emulation artifacts, because the CVMs share one file system here: each agent
//! gets its own `INTERFACE` name (WireGuard's control socket lives in /var/run/wireguard), and
//! devtee's quotes need `INDEXER_ALLOW_SIMULATED_QUOTES`. The example app is not started (the
//! guide's goal is a healthy cluster; `devnet_example` runs the app).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, keccak256};
use attestmesh_chain::deploy::Artifacts;
use attestmesh_chain::devstack::{self, ANVIL_KEY_8, ANVIL_KEY_9, AltoConfig, AnvilConfig};
use attestmesh_chain::rpc::RpcClient;
use attestmesh_lab::devnet::{self, GatewayReach, netns, proc};

const DOMAIN: &str = "guide.attestmesh.test";
const BUNDLER_PORT: u16 = 14337;
const GUIDE: &str = include_str!("../../../docs/operating.md");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATTESTMESH_BIN") {
        return Some(PathBuf::from(p));
    }
    let me = std::env::current_exe().ok()?;
    let p = me.parent()?.parent()?.join("attestmesh");
    p.is_file().then_some(p)
}

/// One marked step of the guide.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Env(String),
    Run(String),
    Service {
        name: String,
        script: String,
    },
    Cvm {
        manifest: String,
        env_file: String,
        var: String,
        /// The operator's `export VAR=…` after deploying, when dstack assigns the id.
        assigned: bool,
    },
}

/// The marked steps of `text`, in order. A directive takes the fenced block that follows it
/// (only blank lines between); `cvm` may stand alone.
fn steps(text: &str) -> Vec<Step> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(d) = lines[i]
            .trim()
            .strip_prefix("<!-- guide-test:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            i += 1;
            continue;
        };
        let words: Vec<&str> = d.split_whitespace().collect();
        i += 1;
        let mut j = i;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        let block = if j < lines.len() && lines[j].starts_with("```sh") {
            let end = (j + 1..lines.len())
                .find(|&k| lines[k].starts_with("```"))
                .unwrap_or_else(|| panic!("unterminated block after line {j}"));
            let body = lines[j + 1..end].join("\n");
            i = end + 1;
            Some(body)
        } else {
            None
        };
        let need = |b: Option<String>| b.unwrap_or_else(|| panic!("`{d}` needs a ```sh block"));
        out.push(match words.as_slice() {
            ["env"] => Step::Env(need(block)),
            ["run"] => Step::Run(need(block)),
            ["service", name] => Step::Service {
                name: (*name).to_owned(),
                script: need(block),
            },
            ["cvm", manifest, env_file, var] => Step::Cvm {
                manifest: (*manifest).to_owned(),
                env_file: (*env_file).to_owned(),
                var: (*var).to_owned(),
                assigned: block.is_some(),
            },
            _ => panic!("unknown guide-test directive `{d}`"),
        });
    }
    out
}

/// Everything the test started; removed on drop, also on panic.
struct World {
    prefix: String,
    gw_ns: String,
    host_if: String,
    services_addr: Ipv4Addr,
    dir: PathBuf,
    work: PathBuf,
    exe: PathBuf,
    procs: Vec<u32>,
    cvms: usize,
    interfaces: Vec<String>,
    routes: PathBuf,
    ca_file: PathBuf,
    ca_pem: String,
    _tmp: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        std::thread::scope(|s| {
            for &pid in self.procs.iter().rev() {
                s.spawn(move || proc::stop_group(pid, Duration::from_secs(10)));
            }
        });
        for i in &self.interfaces {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{i}.sock"));
        }
        for k in 0..self.cvms {
            netns::delete_namespace(&format!("{}c{k}", self.prefix));
        }
        netns::delete_namespace(&self.gw_ns);
        netns::delete_link(&self.host_if);
    }
}

impl World {
    fn spawn(&mut self, name: &str, ns: &str, argv: Vec<String>) -> devnet::ProcRecord {
        let log = self.dir.join(format!("{name}.log"));
        let rec = proc::spawn_in_ns(name, ns, &argv, &[], &log).unwrap();
        self.procs.push(rec.pid);
        rec
    }

    fn services(&self, port: u16) -> String {
        format!("http://{}:{port}", self.services_addr)
    }

    fn env_file(&self) -> PathBuf {
        self.work.join(".guide-env.sh")
    }

    /// A variable as the operator's shell holds it after the steps so far.
    fn var(&self, name: &str) -> String {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; printf %s \"${name}\"",
                self.env_file().display()
            ))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs one block as the operator would, in their working directory and shell.
    fn run(&self, script: &str) {
        let env = self.env_file();
        let wrapped = format!(
            "set -euo pipefail\nsource {env}\n{script}\nexport -p > {env}.next\n",
            env = env.display()
        );
        let t0 = Instant::now();
        let out = Command::new("timeout")
            .arg("900")
            .arg("bash")
            .arg("-c")
            .arg(&wrapped)
            .current_dir(&self.work)
            .output()
            .unwrap();
        eprintln!(
            "--- guide step ({:.1} s):\n{script}\n--- stdout:\n{}--- stderr (tail):\n{}",
            t0.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout),
            tail(&String::from_utf8_lossy(&out.stderr), 15)
        );
        assert!(
            out.status.success(),
            "the guide step failed ({}):\n{script}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(format!("{}.next", env.display()), &env).unwrap();
    }

    fn wait_socket(&self, path: &Path, rec: &devnet::ProcRecord) {
        let t0 = Instant::now();
        while !path.exists() {
            assert!(proc::alive(rec.pid), "{}", proc::log_tail(&rec.log, 20));
            assert!(t0.elapsed() < Duration::from_secs(20), "{}", path.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "Deploy a dstack app": a CVM namespace behind the gateway, devtee measuring the
    /// manifest, the manifest's attestmesh services run as dstack runs a compose.
    fn deploy_cvm(&mut self, manifest: &str, env_file: &str, app_id: Address) {
        let k = self.cvms;
        self.cvms += 1;
        let ns = format!("{}c{k}", self.prefix);
        let (gw_addr, addr) = netns::node_link_addrs(k).unwrap();
        netns::create_node(
            &self.gw_ns,
            &ns,
            &format!("{}g{k}", self.prefix),
            &format!("{}v{k}", self.prefix),
            gw_addr,
            addr,
        )
        .unwrap();
        // The gateway learns the app (it re-reads its route file within a second).
        let mut routes = std::fs::read_to_string(&self.routes).unwrap();
        routes.push_str(&format!(
            "{} {addr}\n",
            alloy_primitives::hex::encode(app_id)
        ));
        std::fs::write(&self.routes, routes).unwrap();

        let cvm = self.dir.join(format!("cvm{k}"));
        std::fs::create_dir_all(&cvm).unwrap();
        let manifest_path = self.work.join(manifest);
        let dstack = cvm.join("dstack.sock");
        let tee = self.spawn(
            &format!("cvm{k}-devtee"),
            &ns,
            vec![
                self.exe.display().to_string(),
                "devtee".into(),
                "--socket".into(),
                dstack.display().to_string(),
                "--app-id".into(),
                app_id.to_string(),
                "--app-compose".into(),
                manifest_path.display().to_string(),
            ],
        );
        self.wait_socket(&dstack, &tee);

        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        let compose: serde_yaml::Value =
            serde_yaml::from_str(m["docker_compose_file"].as_str().unwrap()).unwrap();
        let secrets = read_env_file(&self.work.join(env_file));
        let mut started = 0;
        for (name, svc) in compose["services"].as_mapping().unwrap() {
            let name = name.as_str().unwrap();
            let image = svc["image"].as_str().unwrap_or_default();
            if !image.contains("/attestmesh@") {
                eprintln!(
                    "cvm{k}: not starting `{name}` ({image}): only the attestmesh image runs here"
                );
                continue;
            }
            // Volumes: the dstack socket is the CVM's devtee; named volumes are directories.
            let mut mounts: Vec<(String, PathBuf)> = Vec::new();
            for v in svc["volumes"].as_sequence().into_iter().flatten() {
                let (src, dst) = v.as_str().unwrap().split_once(':').unwrap();
                let host = if src == "/var/run/dstack.sock" {
                    dstack.clone()
                } else {
                    assert!(
                        !src.starts_with('/'),
                        "cvm{k}: host mount {src} has no stand-in"
                    );
                    let d = cvm.join("volumes").join(src);
                    std::fs::create_dir_all(&d).unwrap();
                    d
                };
                mounts.push((dst.to_owned(), host));
            }
            let map = |s: &str| -> String {
                for (dst, host) in &mounts {
                    if let Some(rest) = s.strip_prefix(dst.as_str())
                        && (rest.is_empty() || rest.starts_with('/'))
                    {
                        return format!("{}{rest}", host.display());
                    }
                }
                s.to_owned()
            };
            // The image's environment (Dockerfile / scripts/build-image), then the compose's.
            let mut env: BTreeMap<String, String> = [
                ("HEALTH_ADDR", "127.0.0.1:9090"),
                ("AGENT_SOCKET", "/var/run/attestmesh/agent.sock"),
                ("DSTACK_SOCKET", "/var/run/dstack.sock"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), map(v)))
            .collect();
            for (key, val) in svc["environment"].as_mapping().into_iter().flatten() {
                let val = match val {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                env.insert(
                    key.as_str().unwrap().to_owned(),
                    map(&interpolate(&val, &secrets)),
                );
            }
            // The platform: DNS for the gateway domain, its certificate trusted, devtee quotes.
            let gateway = SocketAddr::from((self.services_addr, 443));
            env.insert("GATEWAY_CONNECT".into(), gateway.to_string());
            env.insert("INDEXER_CA_FILE".into(), self.ca_file.display().to_string());
            env.insert("INDEXER_ALLOW_SIMULATED_QUOTES".into(), "true".into());
            let iface = format!("{}w{k}", self.prefix);
            env.insert("INTERFACE".into(), iface.clone());
            self.interfaces.push(iface);
            let mut argv = vec!["env".to_owned(), "-i".to_owned()];
            argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
            argv.push(self.exe.display().to_string());
            for a in svc["command"].as_sequence().unwrap() {
                argv.push(map(a.as_str().unwrap()));
            }
            self.spawn(&format!("cvm{k}-{name}"), &ns, argv);
            started += 1;
        }
        assert!(started > 0, "{manifest} runs no attestmesh service");
    }
}

/// `${VAR}` from dstack's encrypted environment; a variable it lacks is empty, as in compose.
fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            break;
        };
        out.push_str(vars.get(&rest[i + 2..i + end]).map_or("", String::as_str));
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "{what} not ready within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_guide_parses_into_the_steps_a_cluster_needs() {
    let s = steps(GUIDE);
    assert!(matches!(s.first(), Some(Step::Env(_))), "{s:?}");
    let runs: Vec<&String> = s
        .iter()
        .filter_map(|x| match x {
            Step::Run(b) => Some(b),
            _ => None,
        })
        .collect();
    for needed in [
        "cluster deploy-infra",
        "attestmesh cluster app-compose deploy/indexer-compose.yaml",
        "cluster indexer register",
        "cluster app-compose deploy/docker-compose.yaml",
        "cluster create",
        "cluster member deploy",
        "/healthz",
    ] {
        assert!(
            runs.iter().any(|b| b.contains(needed)),
            "no guide step runs `{needed}`"
        );
    }
    assert!(
        s.iter()
            .any(|x| matches!(x, Step::Service { name, .. } if name == "sponsor"))
    );
    let cvms = s.iter().filter(|x| matches!(x, Step::Cvm { .. })).count();
    assert_eq!(cvms, 4, "the Indexer and three nodes");
}

#[test]
fn following_the_operator_guide_reaches_a_healthy_cluster() {
    let skip = |why: &str| attestmesh_testkit::lab::skip(why.to_owned());
    if !attestmesh_lab::available() {
        return skip("the guide test needs root, /dev/net/tun and iproute2");
    }
    let Some(exe) = exe() else {
        return skip("no attestmesh binary (build attestmesh-cli or set ATTESTMESH_BIN)");
    };
    let repo = repo();
    for tool in ["curl", "jq", "openssl"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return skip(&format!("the guide needs `{tool}` on PATH"));
        }
    }
    let cast = repo.join("node_modules/.bin/cast");
    if !cast.exists() {
        return skip("no cast in node_modules (npm ci)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The platform: the internet (gateway namespace, host link), a Base-like chain, a bundler
    // and the gateway.
    let (prefix, k) = netns::pick_prefix().unwrap();
    let (host_addr, services_addr) = netns::host_link_addrs(k);
    let tmp = tempfile::Builder::new()
        .prefix("amgd")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    let work = dir.join("operator");
    std::fs::create_dir_all(&work).unwrap();
    let ca = attestmesh_net::tls::dev_ca(DOMAIN).unwrap();
    let mut w = World {
        gw_ns: format!("{prefix}gw"),
        host_if: format!("{prefix}h"),
        prefix,
        services_addr,
        dir: dir.clone(),
        work: work.clone(),
        exe: exe.clone(),
        procs: vec![],
        cvms: 0,
        interfaces: vec![],
        routes: dir.join("gateway.routes"),
        ca_file: dir.join("gateway-ca.pem"),
        ca_pem: ca.ca_pem.clone(),
        _tmp: tmp,
    };
    netns::create_gateway(&w.gw_ns, &w.host_if, host_addr, services_addr).unwrap();
    let gw_ns = w.gw_ns.clone();
    let anvil = AnvilConfig::from_repo(&repo).bin;
    let rec = w.spawn(
        "anvil",
        &gw_ns,
        vec![
            anvil.display().to_string(),
            "--host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            "8545".into(),
        ],
    );
    let rpc_url = w.services(8545);
    let rpc = RpcClient::new(&rpc_url).unwrap();
    wait_until("anvil", Duration::from_secs(30), || {
        assert!(proc::alive(rec.pid), "{}", proc::log_tail(&rec.log, 20));
        rt.block_on(rpc.chain_id()).is_ok()
    });
    let accounts = rt.block_on(rpc.accounts()).unwrap();
    let owner = accounts[0];
    rt.block_on(devstack::deploy_entry_point(
        &rpc,
        owner,
        &Artifacts::new(repo.join("artifacts")),
    ))
    .unwrap();
    let alto = AltoConfig::from_repo(&repo, &rpc_url, &dir);
    let rec = w.spawn(
        "alto",
        &gw_ns,
        vec![
            alto.node.display().to_string(),
            alto.alto_js.display().to_string(),
            "--entrypoints".into(),
            attestmesh_chain::deploy::ENTRY_POINT_V07.to_string(),
            "--executor-private-keys".into(),
            ANVIL_KEY_8.into(),
            "--utility-private-key".into(),
            ANVIL_KEY_9.into(),
            "--rpc-url".into(),
            rpc_url.clone(),
            "--port".into(),
            BUNDLER_PORT.to_string(),
            "--safe-mode".into(),
            "false".into(),
            "--log-level".into(),
            "warn".into(),
        ],
    );
    let bundler = RpcClient::new(&w.services(BUNDLER_PORT)).unwrap();
    wait_until("alto", Duration::from_secs(90), || {
        assert!(proc::alive(rec.pid), "{}", proc::log_tail(&rec.log, 20));
        rt.block_on(bundler.call::<Vec<Address>>("eth_supportedEntryPoints", serde_json::json!([])))
            .is_ok()
    });
    std::fs::write(
        &w.routes,
        "# <app id> <CVM address>, one line per deployed app\n",
    )
    .unwrap();
    std::fs::write(&w.ca_file, &ca.ca_pem).unwrap();
    std::fs::write(dir.join("gateway-cert.pem"), &ca.leaf_pem).unwrap();
    std::fs::write(dir.join("gateway-key.pem"), &ca.leaf_key_pem).unwrap();
    let routes = w.routes.display().to_string();
    let rec = w.spawn(
        "gateway",
        &gw_ns,
        vec![
            exe.display().to_string(),
            "gateway".into(),
            "--listen".into(),
            "0.0.0.0:443".into(),
            "--domain".into(),
            DOMAIN.into(),
            "--route-file".into(),
            routes,
            "--tls-cert-file".into(),
            dir.join("gateway-cert.pem").display().to_string(),
            "--tls-key-file".into(),
            dir.join("gateway-key.pem").display().to_string(),
        ],
    );
    let gateway = SocketAddr::from((services_addr, 443));
    wait_until("the gateway", Duration::from_secs(20), || {
        assert!(proc::alive(rec.pid), "{}", proc::log_tail(&rec.log, 20));
        std::net::TcpStream::connect_timeout(&gateway, Duration::from_millis(300)).is_ok()
    });

    // What the operator has: this checkout's deploy/, an owner keystore, the tools.
    std::os::unix::fs::symlink(repo.join("deploy"), work.join("deploy")).unwrap();
    let out = Command::new(&cast)
        .args([
            "wallet",
            "import",
            "owner",
            "--private-key",
            devnet::DEPLOYER_KEY,
        ])
        .arg("--keystore-dir")
        .arg(&work)
        .args(["--unsafe-password", "guide-test-password"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(work.join("owner"), work.join("owner.json")).unwrap();
    std::fs::write(work.join("pw.txt"), "guide-test-password").unwrap();
    // DNS for the gateway domain and its certificate, as a dstack gateway's public one.
    let shims = dir.join("bin");
    std::fs::create_dir_all(&shims).unwrap();
    let shim = shims.join("curl");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/bash\n# The platform's DNS and public CA for *.{DOMAIN} (test stand-in).\n\
             extra=()\nfor a in \"$@\"; do\n  if [[ $a =~ ^https://([^/:]+\\.{dom})(/|$) ]]; then\n    \
             extra+=(--connect-to \"${{BASH_REMATCH[1]}}:443:{gateway}\" --cacert {ca})\n  fi\ndone\n\
             exec /usr/bin/curl \"${{extra[@]}}\" \"$@\"\n",
            dom = DOMAIN.replace('.', "\\."),
            ca = w.ca_file.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}:{}:{}",
        shims.display(),
        exe.parent().unwrap().display(),
        repo.join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // The operator's own values: exactly the names the guide's env block asks for.
    let mine: BTreeMap<&str, String> = [
        ("CHAIN_ID", "31337".to_owned()),
        ("RPC_URL", rpc_url.clone()),
        ("BUNDLER_URL", w.services(BUNDLER_PORT)),
        ("PAYMASTER_URL", w.services(4337)),
        ("GATEWAY_DOMAIN", DOMAIN.to_owned()),
        (
            "KMS_ROOT",
            attestmesh_tee::kms::DEV_KMS_ROOT_ADDRESS.to_string(),
        ),
        ("OWNER", owner.to_string()),
        ("PVG_ALLOWANCE", "0".to_owned()),
        (
            "ATTESTMESH_DEPLOYMENTS_DIR",
            work.join("deployments").display().to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let mut env_sh = format!("export PATH={path}\nexport LOG=warn\n");
    let mut sponsor_started = false;
    for step in steps(GUIDE) {
        match step {
            Step::Env(block) => {
                let names: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("export "))
                    .filter_map(|l| l.split_once('=').map(|(n, _)| n))
                    .collect();
                let want: Vec<&str> = mine.keys().copied().collect();
                let mut sorted = names.clone();
                sorted.sort_unstable();
                assert_eq!(
                    sorted, want,
                    "the guide's own values changed: update this test"
                );
                for (n, v) in &mine {
                    env_sh.push_str(&format!("export {n}={v}\n"));
                }
                std::fs::write(w.env_file(), &env_sh).unwrap();
            }
            Step::Run(block) => w.run(&block),
            Step::Service { name, script } => {
                let argv = vec![
                    "bash".to_owned(),
                    "-c".to_owned(),
                    format!(
                        "cd {} && source {} && exec {script}",
                        work.display(),
                        w.env_file().display()
                    ),
                ];
                w.spawn(&format!("service-{name}"), &gw_ns, argv);
                sponsor_started |= name == "sponsor";
            }
            Step::Cvm {
                manifest,
                env_file,
                var,
                assigned,
            } => {
                let app_id = if assigned {
                    // dstack assigns an app id; the operator notes it.
                    let id = Address::from_slice(&keccak256(var.as_bytes())[12..]);
                    let mut e = std::fs::read_to_string(w.env_file()).unwrap();
                    e.push_str(&format!("export {var}={id}\n"));
                    std::fs::write(w.env_file(), e).unwrap();
                    id
                } else {
                    w.var(&var)
                        .parse()
                        .unwrap_or_else(|e| panic!("${var} is not an app id: {e}"))
                };
                // The gateway picks the route up within a second; whatever dials it first
                // (the guide's curl, the agents' bridges) retries meanwhile.
                w.deploy_cvm(&manifest, &env_file, app_id);
            }
        }
    }
    assert!(sponsor_started);

    // The cluster the guide built: every node healthy through the gateway, subscribed to the
    // Indexer the guide registered, seeing both other nodes.
    let reach = GatewayReach::new(gateway, DOMAIN, w.ca_pem.as_bytes()).unwrap();
    for i in 1..=3 {
        let member: Address = w.var(&format!("MEMBER_{i}")).parse().unwrap();
        let mut last = None;
        wait_until(
            &format!("node {i} healthy, live peers and Indexer"),
            Duration::from_secs(120),
            || {
                last = reach.get_json(member, 9090, "/healthz");
                matches!(&last, Some((200, v)) if v["live_peers"] == 2 && v["indexer_subscribed"] == true)
            },
        );
        eprintln!("node {i}: {last:?}");
    }
}
