//! The devnet's network: the lab layout of DESIGN §6.4 (node namespaces linked only to a
//! gateway namespace that plays "the internet", no forwarding, so nodes reach each other only
//! through the gateway's TCP port) plus one host link, so the operator's tools on the host can
//! reach the chain and services without those listening on the host itself.
//!
//! Unlike [`crate::Lab`], nothing here is removed on drop: the devnet must outlive `up`. Every
//! name starts with the devnet prefix so `down` can sweep whatever a failed `up` left.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use super::DevnetError;
use crate::run;

/// Namespaces and links are named `amd<k>…`; the lab's own labs use `am<digits>…`, so the two
/// never collide.
pub const PREFIX_STEM: &str = "amd";
/// At most this many devnets side by side (`k` also picks the host link's /30).
const MAX_DEVNETS: u8 = 200;

fn ip(args: &[&str]) -> Result<(), DevnetError> {
    run(Command::new("ip").args(args))?;
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<(), DevnetError> {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))?;
    Ok(())
}

/// Names of existing network namespaces.
pub fn list_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The first free devnet number: no namespace and no host link with its prefix.
pub fn pick_prefix() -> Result<(String, u8), DevnetError> {
    let existing = list_namespaces();
    for k in 0..MAX_DEVNETS {
        let prefix = format!("{PREFIX_STEM}{k}");
        let gw = format!("{prefix}gw");
        if !existing.contains(&gw) && !link_exists(&format!("{prefix}h")) {
            return Ok((prefix, k));
        }
    }
    Err(DevnetError::Setup(format!(
        "{MAX_DEVNETS} devnets already exist; `attestmesh devnet down` some of them"
    )))
}

/// The host link's addresses for devnet `k`: host `10.79.k.1/30`, gateway namespace `.2`.
pub fn host_link_addrs(k: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(10, 79, k, 1), Ipv4Addr::new(10, 79, k, 2))
}

/// Node `i`'s link: `10.77.(i+1).0/24`, gateway `.1`, node `.2` (as in [`crate::Lab`]).
pub fn node_link_addrs(i: usize) -> Result<(Ipv4Addr, Ipv4Addr), DevnetError> {
    let octet = u8::try_from(i + 1)
        .ok()
        .filter(|o| *o < 255)
        .ok_or_else(|| {
            DevnetError::Setup(format!("node index {i} is beyond the lab's 254 links"))
        })?;
    Ok((
        Ipv4Addr::new(10, 77, octet, 1),
        Ipv4Addr::new(10, 77, octet, 2),
    ))
}

/// The Indexer CVM's link: `10.78.1.0/24`, gateway `.1`, the Indexer `.2` (apart from the node
/// links' 10.77/16 and the host links' 10.79/16).
pub fn indexer_link_addrs() -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(10, 78, 1, 1), Ipv4Addr::new(10, 78, 1, 2))
}

/// Creates the gateway namespace ("the internet"), forwarding off, and the host link.
pub fn create_gateway(
    gw_ns: &str,
    host_if: &str,
    host_addr: Ipv4Addr,
    services_addr: Ipv4Addr,
) -> Result<(), DevnetError> {
    ip(&["netns", "add", gw_ns])?;
    in_ns(gw_ns, &["ip", "link", "set", "lo", "up"])?;
    // Without forwarding the gateway namespace delivers to its own addresses only: nodes
    // cannot reach each other or the host except through the services listening here.
    in_ns(gw_ns, &["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
    let peer = format!("{host_if}g");
    ip(&[
        "link", "add", host_if, "type", "veth", "peer", "name", &peer, "netns", gw_ns,
    ])?;
    ip(&["addr", "add", &format!("{host_addr}/30"), "dev", host_if])?;
    ip(&["link", "set", host_if, "up"])?;
    in_ns(
        gw_ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{services_addr}/30"),
            "dev",
            &peer,
        ],
    )?;
    in_ns(gw_ns, &["ip", "link", "set", &peer, "up"])?;
    Ok(())
}

/// Creates node namespace `ns` and its veth link to the gateway namespace.
pub fn create_node(
    gw_ns: &str,
    ns: &str,
    gw_if: &str,
    node_if: &str,
    gw_addr: Ipv4Addr,
    addr: Ipv4Addr,
) -> Result<(), DevnetError> {
    ip(&["netns", "add", ns])?;
    ip(&[
        "link", "add", gw_if, "netns", gw_ns, "type", "veth", "peer", "name", node_if, "netns", ns,
    ])?;
    in_ns(ns, &["ip", "link", "set", "lo", "up"])?;
    in_ns(
        ns,
        &["ip", "addr", "add", &format!("{addr}/24"), "dev", node_if],
    )?;
    in_ns(ns, &["ip", "link", "set", node_if, "up"])?;
    in_ns(
        ns,
        &["ip", "route", "add", "default", "via", &gw_addr.to_string()],
    )?;
    in_ns(
        gw_ns,
        &["ip", "addr", "add", &format!("{gw_addr}/24"), "dev", gw_if],
    )?;
    in_ns(gw_ns, &["ip", "link", "set", gw_if, "up"])?;
    Ok(())
}

/// Deletes a namespace (and with it every interface inside, including veth ends whose peers
/// then vanish too). Missing is fine.
pub fn delete_namespace(ns: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Deletes a host interface. Missing is fine.
pub fn delete_link(name: &str) {
    if link_exists(name) {
        let _ = Command::new("ip")
            .args(["link", "del", name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `f` on a fresh thread that has entered namespace `ns`. Sockets created there stay in
/// that namespace for their whole life, whichever thread later uses them; the thread itself
/// ends with `f`, so the caller's namespace is never touched.
pub fn with_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    let handle = std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            let file = std::fs::File::open(&path)?;
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            f()
        })?;
    handle
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// A TCP connection made from inside `ns`.
pub fn connect_in_ns(ns: &str, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    with_ns(ns, move || TcpStream::connect_timeout(&to, timeout))
}

/// A TCP listener bound inside `ns`.
pub fn listen_in_ns(ns: &str, at: SocketAddr) -> std::io::Result<TcpListener> {
    with_ns(ns, move || TcpListener::bind(at))
}

/// `GET <path>` over HTTPS to `host` through the TLS-terminating gateway at `at` (SNI and
/// `Host` both `host`), verified by `tls`.
pub fn https_get(
    at: SocketAddr,
    host: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&at, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = rustls::ClientConnection::new(tls, name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut raw = Vec::new();
    // The gateway ends the stream with close_notify; a bare EOF is a truncation and an error.
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn address_plan_keeps_links_and_host_link_apart() {
        assert_eq!(
            node_link_addrs(0).unwrap(),
            (Ipv4Addr::new(10, 77, 1, 1), Ipv4Addr::new(10, 77, 1, 2))
        );
        assert_eq!(
            node_link_addrs(253).unwrap().1,
            Ipv4Addr::new(10, 77, 254, 2)
        );
        assert!(node_link_addrs(254).is_err());
        let (h, s) = host_link_addrs(7);
        assert_eq!(
            (h, s),
            (Ipv4Addr::new(10, 79, 7, 1), Ipv4Addr::new(10, 79, 7, 2))
        );
    }
}
