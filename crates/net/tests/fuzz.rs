//! Fuzz targets for every decoder in attestmesh-net that reads bytes from the network or a user
//! (issue 11, shared convention: proptest, `ATTESTMESH_FUZZ_CASES` cases, default 256). Each one
//! feeds arbitrary input and mutations of a valid encoding, and checks a property beyond "no
//! panic" where there is one.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use attestmesh_fuzzkit::{config, edits, mutate};
use attestmesh_net::frame::{self, Decoder, FrameError};
use attestmesh_net::gateway::Routes;
use attestmesh_net::sni::{self, Sni};
use attestmesh_net::uapi::{self, DeviceStatus, PeerStatus};
use attestmesh_net::uapi_proxy;
use attestmesh_net::{PublicKey, tls};
use proptest::prelude::*;

// ---- gateway: Routes::resolve ----

fn routes() -> Routes {
    Routes::parse("abcdef01 10.0.0.2\n0x1234 fd00::1\n").unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_routes_resolve(name in ".{0,80}", domain in ".{0,30}",
                           edits in edits(), port in 1u16..=65535) {
        let r = routes();
        // Arbitrary names never panic, and an answer is always one of the routed addresses.
        for (n, d) in [(name.as_str(), domain.as_str()), (name.as_str(), "mesh.test")] {
            if let Some(a) = r.resolve(n, d).map(|r| r.target) {
                let ip = a.ip();
                prop_assert!(ip == IpAddr::from([10, 0, 0, 2]) || ip == "fd00::1".parse::<IpAddr>().unwrap());
                prop_assert!(a.port() != 0);
            }
        }
        // A valid name resolves to exactly its route and port.
        let valid = format!("abcdef01-{port}s.mesh.test");
        prop_assert_eq!(r.resolve(&valid, "mesh.test").map(|r| (r.target, r.terminate)), Some((SocketAddr::from(([10, 0, 0, 2], port)), false)));
        // Mutations of it resolve only to a route, under the domain, with the port they name
        // (digits only, so `0001` names port 1 as well), terminated exactly when the `s` is gone.
        let m = mutate(valid.into_bytes(), &edits);
        let m = String::from_utf8_lossy(&m);
        if let Some(route) = r.resolve(&m, "mesh.test") {
            let a = route.target;
            let lower = m.to_ascii_lowercase();
            let label = lower.strip_suffix(".mesh.test");
            prop_assert!(label.is_some(), "{} -> {}", m, a);
            let port_text = label.and_then(|l| l.rsplit_once('-')).map(|(_, p)| p);
            let passthrough = port_text.is_some_and(|p| p.ends_with('s'));
            prop_assert_eq!(route.terminate, !passthrough, "{} -> {:?}", m, route);
            let named = port_text
                .map(|p| p.strip_suffix('s').unwrap_or(p))
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok());
            prop_assert_eq!(named, Some(a.port()), "{} -> {}", m, a);
        }
    }
}

// ---- bridge: host_from_alpn ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_host_from_alpn(bytes in proptest::collection::vec(any::<u8>(), 0..80),
                           host in ".{0,60}", edits in edits()) {
        // Whatever it accepts is exactly the prefix plus a UTF-8 name: it re-encodes to the input.
        let check = |b: &[u8]| -> Result<(), TestCaseError> {
            if let Some(h) = tls::host_from_alpn(b) {
                prop_assert_eq!(tls::identity_alpn(h), b.to_vec());
            } else {
                prop_assert!(!b.starts_with(tls::ALPN_PREFIX) || std::str::from_utf8(&b[tls::ALPN_PREFIX.len()..]).is_err());
            }
            Ok(())
        };
        check(&bytes)?;
        let valid = tls::identity_alpn(&host);
        prop_assert_eq!(tls::host_from_alpn(&valid), Some(host.as_str()));
        check(&mutate(valid, &edits))?;
    }
}

// ---- uapi: parse_get ----

fn key(b: u8) -> PublicKey {
    PublicKey([b; 32])
}

/// The `get=1` text a device would send for `st` (the fields parse_get reads).
fn render(st: &DeviceStatus) -> String {
    let mut s = String::new();
    if let Some(k) = st.public_key {
        s += &format!("own_public_key={}\n", k.to_hex());
    }
    if let Some(p) = st.listen_port {
        s += &format!("listen_port={p}\n");
    }
    for p in &st.peers {
        s += &format!("public_key={}\n", p.public_key.to_hex());
        if let Some(e) = p.endpoint {
            s += &format!("endpoint={e}\n");
        }
        for a in &p.allowed_ips {
            s += &format!("allowed_ip={a}\n");
        }
        if let Some(k) = p.persistent_keepalive {
            s += &format!("persistent_keepalive_interval={k}\n");
        }
        if let Some(age) = p.last_handshake_age {
            s += &format!(
                "last_handshake_time_sec={}\nlast_handshake_time_nsec={}\n",
                age.as_secs(),
                age.subsec_nanos()
            );
        }
        s += &format!("rx_bytes={}\ntx_bytes={}\n", p.rx_bytes, p.tx_bytes);
    }
    s
}

fn peer_status() -> impl Strategy<Value = PeerStatus> {
    (
        any::<u8>(),
        proptest::option::of((any::<u32>(), any::<u16>())),
        proptest::collection::vec((any::<u8>(), 0u8..=32), 0..3),
        proptest::option::of(any::<u16>()),
        proptest::option::of((0u64..1 << 40, 0u32..1_000_000_000)),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(k, ep, ips, ka, hs, rx, tx)| PeerStatus {
            public_key: key(k),
            endpoint: ep.map(|(ip, port)| SocketAddr::from((Ipv4Addr::from(ip), port))),
            allowed_ips: ips.iter().map(|(o, p)| format!("10.0.0.{o}/{p}")).collect(),
            persistent_keepalive: ka,
            last_handshake_age: hs.map(|(s, n)| Duration::new(s, n)),
            rx_bytes: rx,
            tx_bytes: tx,
        })
}

fn device_status() -> impl Strategy<Value = DeviceStatus> {
    (
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec(peer_status(), 0..4),
    )
        .prop_map(|(k, port, peers)| DeviceStatus {
            public_key: k.map(key),
            listen_port: port,
            peers,
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_uapi_parse_get(text in "(?s).{0,400}", st in device_status(), edits in edits()) {
        let _ = uapi::parse_get(&text);
        // Round trip: the text of a status parses back to it.
        let body = render(&st);
        prop_assert_eq!(uapi::parse_get(&body).unwrap(), st);
        // Mutations: an error or a status, never a panic.
        let m = mutate(body.into_bytes(), &edits);
        let _ = uapi::parse_get(&String::from_utf8_lossy(&m));
    }

    /// The control-socket proxy's rewrite of a device answer (`uapi_proxy`): any text never
    /// panics; a real status keeps every peer, key and counter, and each handshake age `a`
    /// becomes the wall-clock time `now − a`.
    #[test]
    fn fuzz_uapi_proxy_rewrite(text in "(?s).{0,400}", st in device_status(), edits in edits(),
                               now_secs in 1_000_000_000u64..4_000_000_000) {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(now_secs);
        let _ = uapi_proxy::absolute_handshake_times(&text, now);
        let body = render(&st);
        let out = uapi::parse_get(&uapi_proxy::absolute_handshake_times(&body, now)).unwrap();
        prop_assert_eq!(out.peers.len(), st.peers.len());
        for (got, want) in out.peers.iter().zip(&st.peers) {
            prop_assert_eq!(got.public_key, want.public_key);
            prop_assert_eq!(got.rx_bytes, want.rx_bytes);
            prop_assert_eq!(got.tx_bytes, want.tx_bytes);
            if let (Some(age), Some(abs)) = (want.last_handshake_age, got.last_handshake_age) {
                let expect = now_secs.saturating_sub(age.as_secs() + u64::from(age.subsec_nanos() > 0));
                prop_assert!(abs.as_secs().abs_diff(expect) <= 1, "{:?} -> {:?}", age, abs);
            }
        }
        let m = mutate(body.into_bytes(), &edits);
        let _ = uapi_proxy::absolute_handshake_times(&String::from_utf8_lossy(&m), now);
    }
}

// ---- frame: the u16-length stream decoder ----

fn wg_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just((1u8, 148usize)),
        Just((2, 92)),
        Just((3, 64)),
        (Just(4u8), 32usize..=frame::MAX_FRAME),
    ]
    .prop_flat_map(|(kind, len)| {
        proptest::collection::vec(any::<u8>(), len - 4).prop_map(move |rest| {
            let mut m = vec![kind, 0, 0, 0];
            m.extend(rest);
            m
        })
    })
}

/// Decodes `wire` fed in chunks of the given sizes (cycled); returns the frames and the error
/// that stopped the stream, if any.
fn decode_chunked(wire: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    loop {
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if rest.is_empty() {
            return (out, None);
        }
        let n = cuts[i % cuts.len()].clamp(1, rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_frame_decoder(msgs in proptest::collection::vec(wg_message(), 1..12),
                          cuts in proptest::collection::vec(1usize..2000, 1..8),
                          bytes in proptest::collection::vec(any::<u8>(), 0..3000),
                          edits in edits()) {
        let mut wire = Vec::new();
        for m in &msgs {
            frame::encode(m, &mut wire).unwrap();
        }
        // Streaming: any chunking of valid frames decodes to the same frames, nothing left over.
        let (got, err) = decode_chunked(&wire, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(&got, &msgs);
        // Arbitrary and mutated streams: every frame returned is WireGuard-shaped, and the same
        // bytes give the same answer however they are cut.
        for w in [bytes, mutate(wire, &edits)] {
            let (a, ea) = decode_chunked(&w, &cuts);
            let (b, eb) = decode_chunked(&w, &[w.len().max(1)]);
            for f in &a {
                prop_assert!(frame::check_wireguard(f).is_ok());
            }
            prop_assert_eq!(a, b);
            prop_assert_eq!(ea, eb);
        }
    }
}

// ---- sni: the ClientHello parser ----

fn real_hello(host: &str, alpn: &str) -> Vec<u8> {
    let cfg = tls::client_config(tls::identity_alpn(alpn)).unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::clone(&cfg), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_sni_parse(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                      id in "[a-f0-9]{1,40}", port in 1u16..=65535, cut in any::<usize>(),
                      edits in edits()) {
        let _ = sni::parse(&bytes);
        let host = format!("{id}-{port}s.mesh.test");
        let hello = real_hello(&host, &host);
        prop_assert_eq!(sni::parse(&hello), Sni::Found(host.clone()));
        // A strict prefix is always "need more", never a wrong answer.
        let n = cut % hello.len();
        prop_assert_eq!(sni::parse(&hello[..n]), Sni::Incomplete);
        // Mutations never panic, and a name found is ASCII lowercase.
        if let Sni::Found(name) = sni::parse(&mutate(hello, &edits)) {
            prop_assert!(name.is_ascii() && name == name.to_ascii_lowercase());
        }
    }
}
