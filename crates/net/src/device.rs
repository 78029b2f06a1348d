//! The mesh interface: a TUN device driven by boringtun in userspace (no kernel WireGuard needed,
//! DESIGN §6.2), configured in-process over netlink (address, MTU, link state) and boringtun's UAPI
//! socket (keys and peers).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use boringtun::device::{DeviceConfig, DeviceHandle};
use futures_util::TryStreamExt as _;
use rtnetlink::LinkUnspec;
use zeroize::Zeroizing;

use crate::keys::{PrivateKey, PublicKey};
use crate::uapi::{self, DeviceStatus, UapiError};
use crate::uapi_proxy;

/// Default interface name (DESIGN §6.2).
pub const DEFAULT_IFACE: &str = "attestmesh0";
/// Default MTU: leaves room for WireGuard's 80 bytes of overhead in a 1500-byte path.
pub const DEFAULT_MTU: u32 = 1420;
/// Default WireGuard UDP listen port, distinct from the heartbeat port 51820.
pub const DEFAULT_LISTEN_PORT: u16 = 51821;
/// Default persistent keepalive: keeps NAT/gateway state and the TCP bridge warm.
pub const DEFAULT_KEEPALIVE_SECS: u16 = 25;

/// How to build the interface.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    pub name: String,
    pub private_key: PrivateKey,
    pub address: IpAddr,
    pub prefix: u8,
    pub mtu: u32,
    pub listen_port: u16,
    /// boringtun worker threads; each also opens its own TUN queue.
    pub threads: usize,
}

impl DeviceSettings {
    /// Settings with the DESIGN defaults for everything but identity and address.
    pub fn new(private_key: PrivateKey, address: IpAddr, prefix: u8) -> Self {
        Self {
            name: DEFAULT_IFACE.to_owned(),
            private_key,
            address,
            prefix,
            mtu: DEFAULT_MTU,
            listen_port: DEFAULT_LISTEN_PORT,
            threads: 2,
        }
    }
}

/// One peer: its key and mesh IP come from the chain; the endpoint is where its datagrams go
/// (a direct UDP address, or a bridge's loopback socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    pub public_key: PublicKey,
    pub mesh_ip: IpAddr,
    pub endpoint: Option<SocketAddr>,
    pub keepalive_secs: Option<u16>,
}

impl PeerSettings {
    /// A peer with the DESIGN keepalive.
    pub fn new(public_key: PublicKey, mesh_ip: IpAddr, endpoint: Option<SocketAddr>) -> Self {
        Self {
            public_key,
            mesh_ip,
            endpoint,
            keepalive_secs: Some(DEFAULT_KEEPALIVE_SECS),
        }
    }
}

/// Errors creating or configuring the interface.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid interface name {0:?}: 1 to 15 bytes of [A-Za-z0-9_.-]")]
    BadName(String),
    #[error("invalid prefix length /{0} for {1}")]
    BadPrefix(u8, IpAddr),
    #[error(
        "interface name {0} is already served by a live control socket (names must be unique across namespaces)"
    )]
    NameInUse(String),
    #[error("boringtun: {0:?}")]
    Boringtun(boringtun::device::Error),
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("netlink socket: {0}")]
    NetlinkIo(#[from] std::io::Error),
    #[error("interface {0} vanished before it was configured")]
    NoSuchLink(String),
    #[error(transparent)]
    Uapi(#[from] UapiError),
    #[error("control socket {path}: {source}")]
    ControlSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An owned userspace WireGuard interface. Dropping it tears the interface down: boringtun's
/// threads stop, the TUN file descriptors close (the kernel then removes the link) and the control
/// socket is deleted.
pub struct WgDevice {
    name: String,
    /// boringtun's socket under its private name: our own calls (handshake *ages*).
    sock: PathBuf,
    /// The canonical `/var/run/wireguard/<iface>.sock`, served by [`uapi_proxy`] for `wg`.
    public_sock: PathBuf,
    proxy: Option<tokio::task::JoinHandle<()>>,
    handle: Option<DeviceHandle>,
    listen_port: u16,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && name != "."
        && name != ".."
}

impl WgDevice {
    /// Creates and configures the interface in the calling process's network namespace. Needs
    /// CAP_NET_ADMIN and /dev/net/tun.
    pub async fn create(settings: DeviceSettings) -> Result<Self, DeviceError> {
        if !valid_name(&settings.name) {
            return Err(DeviceError::BadName(settings.name));
        }
        let max_prefix = if settings.address.is_ipv4() { 32 } else { 128 };
        if settings.prefix > max_prefix {
            return Err(DeviceError::BadPrefix(settings.prefix, settings.address));
        }
        let sock = uapi::sock_path(&settings.name);
        // boringtun deletes an existing socket file before binding: refuse instead of silently
        // hijacking a device of the same name in another namespace.
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return Err(DeviceError::NameInUse(settings.name));
        }
        let config = DeviceConfig {
            n_threads: settings.threads.max(1),
            use_connected_socket: true,
            use_multi_queue: true,
            uapi_fd: -1,
        };
        let handle = DeviceHandle::new(&settings.name, config).map_err(DeviceError::Boringtun)?;
        let mut dev = Self {
            name: settings.name.clone(),
            sock: sock.clone(),
            public_sock: sock.clone(),
            proxy: None,
            handle: Some(handle),
            listen_port: settings.listen_port,
        };
        // From here on, an error drops `dev`, which removes the half-built interface.
        // boringtun's socket keeps working under a second name (a hard link to the same socket
        // inode); the proxy's socket then replaces the canonical name atomically, so the path
        // boringtun watches (it exits when the path disappears) never stops existing.
        let inner = uapi_proxy::inner_path(&settings.name);
        let cs = |path: &PathBuf| {
            let path = path.clone();
            move |source| DeviceError::ControlSocket { path, source }
        };
        let _ = std::fs::remove_file(&inner);
        std::fs::hard_link(&sock, &inner).map_err(cs(&inner))?;
        dev.sock = inner.clone();
        let staging = sock.with_file_name(format!(".{}.proxy.sock", settings.name));
        let _ = std::fs::remove_file(&staging);
        let listener = tokio::net::UnixListener::bind(&staging).map_err(cs(&staging))?;
        std::fs::rename(&staging, &sock).map_err(cs(&sock))?;
        dev.proxy = Some(tokio::spawn(uapi_proxy::serve(listener, inner)));
        uapi::request(&dev.sock, &set_identity_body(&settings))?;
        configure_link(&settings).await?;
        tracing::info!(iface = %dev.name, address = %settings.address, "wireguard device up");
        Ok(dev)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UDP port the device listens on.
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// Adds a peer, or replaces it if the key is already known. boringtun cannot modify a peer in
    /// place (it panics), so an update is a remove and an add in one transaction.
    pub fn set_peer(&self, peer: &PeerSettings) -> Result<(), DeviceError> {
        let known = self
            .status()?
            .peers
            .iter()
            .any(|p| p.public_key == peer.public_key);
        let mut body = String::from("set=1\n");
        if known {
            let _ = writeln!(body, "public_key={}\nremove=true", peer.public_key.to_hex());
        }
        let _ = writeln!(body, "public_key={}", peer.public_key.to_hex());
        let bits = if peer.mesh_ip.is_ipv4() { 32 } else { 128 };
        let _ = writeln!(body, "allowed_ip={}/{bits}", peer.mesh_ip);
        if let Some(ep) = peer.endpoint {
            let _ = writeln!(body, "endpoint={ep}");
        }
        if let Some(k) = peer.keepalive_secs {
            let _ = writeln!(body, "persistent_keepalive_interval={k}");
        }
        body.push('\n');
        uapi::request(&self.sock, &body)?;
        Ok(())
    }

    /// Removes a peer; removing an unknown key is not an error.
    pub fn remove_peer(&self, key: &PublicKey) -> Result<(), DeviceError> {
        let body = format!("set=1\npublic_key={}\nremove=true\n\n", key.to_hex());
        uapi::request(&self.sock, &body)?;
        Ok(())
    }

    /// The device's view of itself and its peers (handshakes, counters).
    pub fn status(&self) -> Result<DeviceStatus, DeviceError> {
        let body = uapi::request(&self.sock, "get=1\n\n")?;
        Ok(uapi::parse_get(&body)?)
    }

    /// Tears the interface down and waits for boringtun's threads to finish.
    pub fn shutdown(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        let Some(mut handle) = self.handle.take() else {
            return;
        };
        if let Some(proxy) = self.proxy.take() {
            proxy.abort();
        }
        // boringtun has no public stop call; deleting the canonical control socket path makes
        // its monitor (1 s period) stop every worker, which `wait` then joins, so teardown is
        // synchronous.
        let _ = std::fs::remove_file(&self.public_sock);
        handle.wait();
        drop(handle);
        if self.sock != self.public_sock {
            let _ = std::fs::remove_file(&self.sock);
        }
        tracing::info!(iface = %self.name, "wireguard device down");
    }
}

impl Drop for WgDevice {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The UAPI text that sets the private key and port. It holds the key's hex digits, so it is a
/// zeroizing buffer sized up front (no reallocation leaves a copy behind).
fn set_identity_body(settings: &DeviceSettings) -> Zeroizing<String> {
    let mut body = Zeroizing::new(String::with_capacity(128));
    body.push_str("set=1\nprivate_key=");
    settings.private_key.write_hex(&mut body);
    let _ = write!(body, "\nlisten_port={}\n\n", settings.listen_port);
    body
}

async fn configure_link(settings: &DeviceSettings) -> Result<(), DeviceError> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(conn);
    let result = async {
        let link = handle
            .link()
            .get()
            .match_name(settings.name.clone())
            .execute()
            .try_next()
            .await?
            .ok_or_else(|| DeviceError::NoSuchLink(settings.name.clone()))?;
        let index = link.header.index;
        handle
            .address()
            .add(index, settings.address, settings.prefix)
            .replace()
            .execute()
            .await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .mtu(settings.mtu)
                    .up()
                    .build(),
            )
            .execute()
            .await?;
        Ok::<(), DeviceError>(())
    }
    .await;
    task.abort();
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identity_body_is_zeroizing_and_exact() {
        let key = PrivateKey::from_bytes([0xab; 32]);
        let mut s = DeviceSettings::new(key, "10.0.0.1".parse().unwrap(), 24);
        s.listen_port = 4242;
        let body: Zeroizing<String> = set_identity_body(&s);
        assert_eq!(
            body.as_str(),
            format!(
                "set=1\nprivate_key={}\nlisten_port=4242\n\n",
                "ab".repeat(32)
            )
        );
        // Fits the reserved buffer, so building it never reallocated a copy of the key.
        assert!(body.len() <= 128);
    }

    #[test]
    fn names() {
        assert!(valid_name("attestmesh0"));
        assert!(valid_name("am123a"));
        assert!(!valid_name(""));
        assert!(!valid_name("abcdefghijklmnop"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
    }
}
