//! One lab process. Runs inside a namespace (`ip netns exec`), because boringtun's device and its
//! threads live in the namespace of the process that creates them.
//!
//! Subcommands:
//! - `node --iface I --key K --addr IP/P --listen-port N --host H [--bridge-listen A]
//!   [--gateway A] [--peer KEY,MESHIP,direct:IP:PORT | --peer KEY,MESHIP,bridge:HOST]...
//!   [--ingress-max-total N] [--ingress-max-per-peer N] [--ingress-proof-timeout-secs S]`
//! - `gateway --listen A --domain D [--route APPID=IP]...`
//! - `echo-server --listen A`
//! - `echo-client --connect A --bytes N`
//! - `flood --connect A --sni H --claim H2 --claim-count N --random-count M --hold-secs S`: the
//!   attacker of issue 11 hole 4. Opens N idle TLS connections with SNI `H` naming `H2` in ALPN
//!   and M naming random hosts, sends nothing, and after S seconds prints
//!   `FLOOD attempted=.. tls_ok=.. open=..` (`open` = connections the far side has not closed).
//!
//! Long-running roles print `READY` when serving and shut down cleanly when stdin closes.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use attestmesh_net::bridge::{Bridge, BridgeConfig, DEFAULT_WG_TCP_PORT};
use attestmesh_net::gateway::{GatewayConfig, Routes};
use attestmesh_net::ingress::IngressLimits;
use attestmesh_net::tls;
use attestmesh_net::{DeviceSettings, PeerSettings, PrivateKey, PublicKey, WgDevice};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

type Res<T> = Result<T, String>;

struct Args(Vec<(String, String)>);

impl Args {
    fn parse(raw: &[String]) -> Res<Self> {
        let mut out = Vec::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or(format!("unexpected {k}"))?;
            let v = it.next().ok_or(format!("--{key} needs a value"))?;
            out.push((key.to_owned(), v.clone()));
        }
        Ok(Self(out))
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    fn req(&self, k: &str) -> Res<&str> {
        self.get(k).ok_or(format!("missing --{k}"))
    }
    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Res<T> {
    s.parse().map_err(|_| format!("bad {what}: {s}"))
}

/// Resolves when stdin reaches EOF: the lab closes it to stop us, and it also closes if the lab
/// process dies, so we never outlive a crashed test.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

enum PeerRoute {
    Direct(SocketAddr),
    Bridge(String),
}

async fn node(a: &Args) -> Res<()> {
    let key: PrivateKey = parse("key", a.req("key")?)?;
    let (ip, prefix) = a.req("addr")?.split_once('/').ok_or("addr needs /prefix")?;
    let mut settings = DeviceSettings::new(key, parse("addr", ip)?, parse("prefix", prefix)?);
    settings.name = a.req("iface")?.to_owned();
    if let Some(p) = a.get("listen-port") {
        settings.listen_port = parse("listen-port", p)?;
    }
    if let Some(t) = a.get("threads") {
        settings.threads = parse("threads", t)?;
    }
    let dev = WgDevice::create(settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut peers = Vec::new();
    for spec in a.all("peer") {
        let mut parts = spec.splitn(3, ',');
        let (Some(k), Some(ip), Some(route)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("bad --peer {spec}"));
        };
        let key: PublicKey = parse("peer key", k)?;
        let ip: IpAddr = parse("peer ip", ip)?;
        let route = if let Some(ep) = route.strip_prefix("direct:") {
            PeerRoute::Direct(parse("endpoint", ep)?)
        } else if let Some(h) = route.strip_prefix("bridge:") {
            PeerRoute::Bridge(h.to_owned())
        } else {
            return Err(format!("bad peer route {route}"));
        };
        peers.push((key, ip, route));
    }
    let needs_bridge = peers.iter().any(|p| matches!(p.2, PeerRoute::Bridge(_)));
    let bridge = if needs_bridge {
        let listen = match a.get("bridge-listen") {
            Some(l) => parse("bridge-listen", l)?,
            None => SocketAddr::from(([0, 0, 0, 0], DEFAULT_WG_TCP_PORT)),
        };
        let gateway_connect = a.get("gateway").map(|g| parse("gateway", g)).transpose()?;
        let cfg = BridgeConfig {
            listen,
            wg_port: dev.listen_port(),
            local_host: a.req("host")?.to_owned(),
            gateway_connect,
            gateway_port: 443,
        };
        let mut limits = IngressLimits::default();
        if let Some(v) = a.get("ingress-max-total") {
            limits.max_total = parse("ingress-max-total", v)?;
        }
        if let Some(v) = a.get("ingress-max-per-peer") {
            limits.max_per_peer = parse("ingress-max-per-peer", v)?;
        }
        if let Some(v) = a.get("ingress-proof-timeout-secs") {
            limits.proof_timeout = Duration::from_secs(parse("ingress-proof-timeout-secs", v)?);
        }
        Some(
            Bridge::start_with_limits(cfg, limits)
                .await
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    for (key, ip, route) in &peers {
        let endpoint = match (route, &bridge) {
            (PeerRoute::Direct(ep), _) => *ep,
            (PeerRoute::Bridge(h), Some(b)) => b.add_peer(h).await.map_err(|e| e.to_string())?,
            (PeerRoute::Bridge(_), None) => return Err("bridge missing".into()),
        };
        dev.set_peer(&PeerSettings::new(*key, *ip, Some(endpoint)))
            .map_err(|e| e.to_string())?;
    }
    println!("READY");
    stdin_closed().await;
    drop(bridge);
    dev.shutdown();
    println!("BYE");
    Ok(())
}

async fn gateway(a: &Args) -> Res<()> {
    let mut routes = Routes::new();
    for r in a.all("route") {
        let (id, ip) = r.split_once('=').ok_or(format!("bad --route {r}"))?;
        routes.insert(id, parse("route address", ip)?);
    }
    let cfg = GatewayConfig {
        listen: parse("listen", a.req("listen")?)?,
        domain: a.req("domain")?.to_owned(),
        routes: attestmesh_net::gateway::RouteTable::new(routes),
        tls: None,
    };
    let gw = attestmesh_net::gateway::Gateway::bind(cfg)
        .await
        .map_err(|e| e.to_string())?;
    println!("READY");
    gw.serve(stdin_closed()).await.map_err(|e| e.to_string())
}

async fn echo_server(a: &Args) -> Res<()> {
    let l = TcpListener::bind(parse::<SocketAddr>("listen", a.req("listen")?)?)
        .await
        .map_err(|e| e.to_string())?;
    println!("READY");
    let serve = async {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    };
    tokio::select! {
        _ = serve => Ok(()),
        _ = stdin_closed() => Ok(()),
    }
}

/// Sends deterministic pseudo-random bytes and checks the echo is byte-identical.
async fn echo_client(a: &Args) -> Res<()> {
    let n: usize = parse("bytes", a.req("bytes")?)?;
    let addr: SocketAddr = parse("connect", a.req("connect")?)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n as u64;
    let payload: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut r, mut w) = s.into_split();
    let send = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&send).await?;
        w.shutdown().await
    });
    let mut back = Vec::with_capacity(n);
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut back))
        .await
        .map_err(|_| "echo timed out".to_string())?
        .map_err(|e| e.to_string())?;
    writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if back != payload {
        return Err(format!("echo differs: sent {n} bytes, got {}", back.len()));
    }
    println!("OK {n}");
    Ok(())
}

/// One attacker connection: dial, finish TLS, then sit idle until the far side closes or the hold
/// ends. Returns (TLS completed, still open at the end).
async fn flood_one(
    connect: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
    handshakes: Arc<Semaphore>,
    until: tokio::time::Instant,
) -> (bool, bool) {
    let Ok(permit) = handshakes.acquire_owned().await else {
        return (false, false);
    };
    let tls = tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = TcpStream::connect(connect).await?;
        connector.connect(name, tcp).await
    })
    .await;
    drop(permit);
    let Ok(Ok(mut stream)) = tls else {
        return (false, false);
    };
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return (true, true),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, false),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn flood(a: &Args) -> Res<()> {
    let connect: SocketAddr = parse("connect", a.req("connect")?)?;
    let sni = a.req("sni")?.to_owned();
    let claim = a.req("claim")?;
    let claim_n: usize = parse("claim-count", a.req("claim-count")?)?;
    let random_n: usize = parse("random-count", a.req("random-count")?)?;
    let hold: u64 = parse("hold-secs", a.req("hold-secs")?)?;
    let name = ServerName::try_from(sni).map_err(|e| e.to_string())?;
    let connector = |host: &str| {
        tls::client_config(tls::identity_alpn(host))
            .map(TlsConnector::from)
            .map_err(|e| e.to_string())
    };
    let claimed = connector(claim)?;
    let until = tokio::time::Instant::now() + Duration::from_secs(hold);
    // Bounded concurrency for the handshakes only; established connections are all held at once.
    let handshakes = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    let total = claim_n + random_n;
    for i in 0..total {
        // Spread the random claims evenly among the claimed ones.
        let random = random_n > 0
            && i % (total / random_n).max(1) == 0
            && i / (total / random_n).max(1) < random_n;
        let c = if random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            connector(&format!("{:08x}-51900s.mesh.test", x as u32))?
        } else {
            claimed.clone()
        };
        tasks.spawn(flood_one(
            connect,
            name.clone(),
            c,
            Arc::clone(&handshakes),
            until,
        ));
    }
    let (mut tls_ok, mut open) = (0usize, 0usize);
    while let Some(r) = tasks.join_next().await {
        let (ok, still) = r.map_err(|e| e.to_string())?;
        tls_ok += usize::from(ok);
        open += usize::from(still);
    }
    println!("FLOOD attempted={total} tls_ok={tls_ok} open={open}");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = raw.split_first() else {
        eprintln!("usage: am-lab-node node|gateway|echo-server|echo-client --flag value...");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let a = Args::parse(rest)?;
        match cmd.as_str() {
            "node" => node(&a).await,
            "gateway" => gateway(&a).await,
            "echo-server" => echo_server(&a).await,
            "echo-client" => echo_client(&a).await,
            "flood" => flood(&a).await,
            other => Err(format!("unknown role {other}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("am-lab-node {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
