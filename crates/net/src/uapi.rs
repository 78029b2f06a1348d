//! Client for the WireGuard cross-platform text protocol ("UAPI") on
//! `/var/run/wireguard/<iface>.sock`: the same socket `wg` uses, so whatever we configure, `wg show`
//! sees.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::keys::PublicKey;

/// Directory where userspace WireGuard implementations put their control sockets.
pub const SOCK_DIR: &str = "/var/run/wireguard";

/// Answers larger than this are not a WireGuard device talking.
const MAX_RESPONSE: u64 = 4 << 20;

/// Failures talking to the control socket.
#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("device answered errno={0}")]
    Errno(i32),
    #[error("malformed UAPI response: {0}")]
    Malformed(String),
}

/// The control socket path of an interface.
pub fn sock_path(iface: &str) -> PathBuf {
    Path::new(SOCK_DIR).join(format!("{iface}.sock"))
}

/// Sends one request (`get=1` or `set=1` with its body) and returns the body of the answer
/// without the `errno` line. A non-zero errno is an error.
pub fn request(path: &Path, request: &str) -> Result<String, UapiError> {
    let io = |source| UapiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    // The device closes the connection after answering one request.
    stream
        .take(MAX_RESPONSE)
        .read_to_string(&mut answer)
        .map_err(io)?;
    let mut body = String::new();
    let mut errno = None;
    for line in answer.lines() {
        if let Some(v) = line.strip_prefix("errno=") {
            errno = Some(
                v.parse::<i32>()
                    .map_err(|_| UapiError::Malformed(line.to_owned()))?,
            );
        } else if !line.is_empty() {
            body.push_str(line);
            body.push('\n');
        }
    }
    match errno {
        Some(0) => Ok(body),
        Some(e) => Err(UapiError::Errno(e)),
        None => Err(UapiError::Malformed("no errno line".into())),
    }
}

/// One peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<String>,
    pub persistent_keepalive: Option<u16>,
    /// boringtun reports the age of the last handshake here (not an epoch time as the protocol
    /// text says); `None` until the first handshake completes.
    pub last_handshake_age: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The device as a whole, parsed from a `get=1` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatus {
    pub public_key: Option<PublicKey>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerStatus>,
}

/// Parses a `get=1` body. Unknown keys are ignored so newer devices stay readable.
pub fn parse_get(body: &str) -> Result<DeviceStatus, UapiError> {
    let bad = |line: &str| UapiError::Malformed(line.to_owned());
    let mut status = DeviceStatus::default();
    let mut hs_sec: Option<u64> = None;
    for line in body.lines() {
        let Some((key, val)) = line.split_once('=') else {
            return Err(bad(line));
        };
        if key == "public_key" {
            finish_handshake(&mut status, hs_sec.take());
            status.peers.push(PeerStatus {
                public_key: PublicKey::from_hex(val).map_err(|_| bad(line))?,
                endpoint: None,
                allowed_ips: Vec::new(),
                persistent_keepalive: None,
                last_handshake_age: None,
                rx_bytes: 0,
                tx_bytes: 0,
            });
            continue;
        }
        match (status.peers.last_mut(), key) {
            (None, "own_public_key") => {
                status.public_key = Some(PublicKey::from_hex(val).map_err(|_| bad(line))?)
            }
            (None, "listen_port") => status.listen_port = Some(val.parse().map_err(|_| bad(line))?),
            (Some(p), "endpoint") => p.endpoint = Some(val.parse().map_err(|_| bad(line))?),
            (Some(p), "allowed_ip") => p.allowed_ips.push(val.to_owned()),
            (Some(p), "persistent_keepalive_interval") => {
                p.persistent_keepalive = Some(val.parse().map_err(|_| bad(line))?)
            }
            (Some(_), "last_handshake_time_sec") => {
                hs_sec = Some(val.parse().map_err(|_| bad(line))?)
            }
            (Some(p), "last_handshake_time_nsec") => {
                let nsec: u32 = val.parse().map_err(|_| bad(line))?;
                if let Some(sec) = hs_sec.take() {
                    p.last_handshake_age = Some(Duration::new(sec, nsec));
                }
            }
            (Some(p), "rx_bytes") => p.rx_bytes = val.parse().map_err(|_| bad(line))?,
            (Some(p), "tx_bytes") => p.tx_bytes = val.parse().map_err(|_| bad(line))?,
            _ => {}
        }
    }
    finish_handshake(&mut status, hs_sec);
    Ok(status)
}

fn finish_handshake(status: &mut DeviceStatus, sec: Option<u64>) {
    if let (Some(p), Some(sec)) = (status.peers.last_mut(), sec) {
        p.last_handshake_age = Some(Duration::from_secs(sec));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get_answer() {
        let pk = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
        let body = format!(
            "own_public_key={pk}\nlisten_port=51821\npublic_key={pk}\npersistent_keepalive_interval=25\n\
             endpoint=127.0.0.1:4000\nallowed_ip=10.0.0.2/32\nlast_handshake_time_sec=3\n\
             last_handshake_time_nsec=5\nrx_bytes=10\ntx_bytes=20\npublic_key={pk}\nrx_bytes=0\ntx_bytes=0\n"
        );
        let st = parse_get(&body).unwrap();
        assert_eq!(st.listen_port, Some(51821));
        assert_eq!(st.peers.len(), 2);
        let p = &st.peers[0];
        assert_eq!(p.endpoint, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(p.allowed_ips, vec!["10.0.0.2/32".to_string()]);
        assert_eq!(p.persistent_keepalive, Some(25));
        assert_eq!(p.last_handshake_age, Some(Duration::new(3, 5)));
        assert_eq!((p.rx_bytes, p.tx_bytes), (10, 20));
        assert_eq!(st.peers[1].last_handshake_age, None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_get("no equals sign").is_err());
        assert!(parse_get("listen_port=notanumber").is_err());
    }
}
