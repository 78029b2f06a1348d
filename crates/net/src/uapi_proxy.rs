//! The interface's public control socket, in front of boringtun's.
//!
//! `wg` reads `last_handshake_time_sec/nsec` as a wall-clock time (seconds since the epoch), but
//! boringtun 0.7 answers with the handshake's *age*, so `wg show` printed "56 years ago". The
//! device keeps boringtun's socket under a private name ([`inner_path`]) for our own calls (which
//! want the age) and serves the canonical `/var/run/wireguard/<iface>.sock` itself: requests pass
//! through unchanged, and `get` answers have their handshake times turned into absolute ones.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::uapi;

/// Largest request accepted from a client (a `set` for hundreds of peers fits).
const MAX_REQUEST: usize = 1 << 20;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// boringtun's own socket once the proxy owns the canonical path.
pub fn inner_path(iface: &str) -> PathBuf {
    Path::new(uapi::SOCK_DIR).join(format!(".{iface}.boringtun.sock"))
}

/// Rewrites a `get` answer: each peer's handshake age becomes `now − age`, as WireGuard's
/// protocol defines the fields. Everything else passes unchanged.
pub fn absolute_handshake_times(answer: &str, now: SystemTime) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut pending_sec: Option<u64> = None;
    let flush = |out: &mut String, sec: u64, nsec: u32| {
        let age = Duration::new(sec, nsec.min(999_999_999));
        let at = now
            .checked_sub(age)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        out.push_str(&format!(
            "last_handshake_time_sec={}\nlast_handshake_time_nsec={}\n",
            at.as_secs(),
            at.subsec_nanos()
        ));
    };
    for line in answer.split_inclusive('\n') {
        let (key, value) = line
            .trim_end_matches('\n')
            .split_once('=')
            .unwrap_or(("", ""));
        match (key, value.parse::<u64>()) {
            ("last_handshake_time_sec", Ok(sec)) => {
                if let Some(prev) = pending_sec.replace(sec) {
                    flush(&mut out, prev, 0);
                }
            }
            ("last_handshake_time_nsec", Ok(nsec)) if pending_sec.is_some() => {
                let sec = pending_sec.take().unwrap_or_default();
                flush(&mut out, sec, u32::try_from(nsec).unwrap_or(0));
            }
            _ => {
                if let Some(sec) = pending_sec.take() {
                    flush(&mut out, sec, 0);
                }
                out.push_str(line);
            }
        }
    }
    if let Some(sec) = pending_sec {
        flush(&mut out, sec, 0);
    }
    out
}

/// Serves `listener` (bound at the canonical path) by forwarding to `inner` until aborted.
pub async fn serve(listener: UnixListener, inner: PathBuf) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // A transient accept error (EMFILE); don't spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = forward(client, &inner).await {
                tracing::debug!(error = %e, "wg control request failed");
            }
        });
    }
}

/// One request: read it up to its blank line, forward it, rewrite a `get` answer.
async fn forward(mut client: UnixStream, inner: &Path) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !req.ends_with(b"\n\n") {
            let n = client.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
            if req.len() > MAX_REQUEST {
                return Err(std::io::Error::other("request too large"));
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::other("request timed out"))??;
    // `wg` probes sockets by connecting and closing: never hand boringtun an incomplete request,
    // which its event loop would wait on (stalling the interface).
    if !req.ends_with(b"\n\n") {
        return Ok(());
    }
    let is_get = req.starts_with(b"get=1\n");
    let mut device = UnixStream::connect(inner).await?;
    device.write_all(&req).await?;
    // Half-close: whatever the request holds, boringtun's reader then sees its end.
    device.shutdown().await?;
    let mut answer = Vec::new();
    device.read_to_end(&mut answer).await?;
    let answer = if is_get {
        absolute_handshake_times(&String::from_utf8_lossy(&answer), SystemTime::now()).into_bytes()
    } else {
        answer
    };
    client.write_all(&answer).await?;
    client.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ages_become_absolute_times_and_nothing_else_changes() {
        let now = UNIX_EPOCH + Duration::new(1_800_000_000, 500);
        let answer = "private_key=aa\nlisten_port=1\npublic_key=bb\nlast_handshake_time_sec=3\n\
                      last_handshake_time_nsec=100\nrx_bytes=10\npublic_key=cc\nrx_bytes=0\n\
                      public_key=dd\nlast_handshake_time_sec=2000000000\nerrno=0\n\n";
        let out = absolute_handshake_times(answer, now);
        assert_eq!(
            out,
            "private_key=aa\nlisten_port=1\npublic_key=bb\nlast_handshake_time_sec=1799999997\n\
             last_handshake_time_nsec=400\nrx_bytes=10\npublic_key=cc\nrx_bytes=0\n\
             public_key=dd\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n\n"
        );
        // An answer without handshakes is returned as is.
        let plain = "listen_port=1\nerrno=0\n\n";
        assert_eq!(absolute_handshake_times(plain, now), plain);
    }

    /// `wg` probes by connecting and closing; the proxy must not open a connection to boringtun
    /// for that (boringtun's event loop would wait on it), and a full request gets the rewritten
    /// answer.
    #[tokio::test]
    async fn probes_are_not_forwarded_and_gets_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner.sock");
        let device = UnixListener::bind(&inner).unwrap();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = device.accept().await.unwrap();
                let mut req = Vec::new();
                c.read_to_end(&mut req).await.unwrap();
                c.write_all(b"public_key=aa\nlast_handshake_time_sec=10\nlast_handshake_time_nsec=0\nerrno=0\n\n")
                    .await
                    .unwrap();
                seen_tx.send(req).unwrap();
            }
        });
        let public = dir.path().join("public.sock");
        let listener = UnixListener::bind(&public).unwrap();
        tokio::spawn(serve(listener, inner));

        drop(UnixStream::connect(&public).await.unwrap());
        let mut c = UnixStream::connect(&public).await.unwrap();
        c.write_all(b"get=1\n\n").await.unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        assert_eq!(
            seen_rx.recv().await.unwrap(),
            b"get=1\n\n",
            "only the real request"
        );
        let sec: u64 = answer
            .lines()
            .find_map(|l| l.strip_prefix("last_handshake_time_sec="))
            .unwrap()
            .parse()
            .unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now - sec >= 10 && now - sec < 20, "{answer}");
        assert!(seen_rx.try_recv().is_err());
    }
}
