//! Reads the server name (SNI) from a TLS ClientHello without terminating TLS, as the gateway's
//! passthrough routing needs. Hand-written and bounds-checked everywhere: the input is whatever a
//! stranger sent.

/// ClientHellos larger than this are refused (real ones are a few hundred bytes to a few KiB).
pub const MAX_HELLO: usize = 16 * 1024;

/// Result of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sni {
    /// More bytes are needed.
    Incomplete,
    /// A complete ClientHello naming this host (ASCII, lowercased).
    Found(String),
    /// A complete ClientHello without a host name.
    Missing,
    /// Not a TLS ClientHello.
    Invalid,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Looks for the SNI in the first bytes of a connection. The ClientHello may span several TLS
/// records; their handshake payloads are joined first.
pub fn parse(input: &[u8]) -> Sni {
    let mut records = Reader { b: input };
    let mut hs: Vec<u8> = Vec::new();
    loop {
        let Some(header) = records.take(5) else {
            return if records.b.is_empty() || records.b[0] == 0x16 {
                Sni::Incomplete
            } else {
                Sni::Invalid
            };
        };
        // Content type handshake, legacy version 3.x.
        if header[0] != 0x16 || header[1] != 3 {
            return Sni::Invalid;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 16384 + 256 {
            return Sni::Invalid;
        }
        let Some(body) = records.take(len) else {
            return Sni::Incomplete;
        };
        hs.extend_from_slice(body);
        if hs.len() > MAX_HELLO + 4 {
            return Sni::Invalid;
        }
        if hs.len() < 4 {
            continue;
        }
        if hs[0] != 1 {
            return Sni::Invalid; // first handshake message must be ClientHello
        }
        let msg_len = (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
        if msg_len > MAX_HELLO {
            return Sni::Invalid;
        }
        if hs.len() >= 4 + msg_len {
            return client_hello(&hs[4..4 + msg_len]).unwrap_or(Sni::Invalid);
        }
    }
}

fn client_hello(body: &[u8]) -> Option<Sni> {
    let mut r = Reader { b: body };
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    if r.b.is_empty() {
        return Some(Sni::Missing); // no extensions at all
    }
    let mut exts = Reader { b: r.vec16()? };
    while !exts.b.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader {
            b: Reader { b: data }.vec16()?,
        };
        while !list.b.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                return host_name(name);
            }
        }
        return Some(Sni::Missing);
    }
    Some(Sni::Missing)
}

fn host_name(name: &[u8]) -> Option<Sni> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.' || *b == b'_');
    if !ok {
        return None;
    }
    let s = std::str::from_utf8(name).ok()?;
    Some(Sni::Found(s.to_ascii_lowercase()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// The first flight of a real rustls client.
    fn real_hello(host: &str) -> Vec<u8> {
        let cfg = crate::tls::client_config(b"x".to_vec()).unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::clone(&cfg), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn finds_sni_in_a_real_client_hello() {
        let hello = real_hello("ABCdef-51900s.mesh.test");
        assert_eq!(parse(&hello), Sni::Found("abcdef-51900s.mesh.test".into()));
        // Every strict prefix is incomplete, never a wrong answer.
        for n in 0..hello.len() {
            assert_eq!(parse(&hello[..n]), Sni::Incomplete, "prefix {n}");
        }
    }

    #[test]
    fn hello_split_across_records() {
        let hello = real_hello("a-1s.example");
        let body = &hello[5..];
        let (x, y) = body.split_at(10);
        let mut split = Vec::new();
        for part in [x, y] {
            split.extend_from_slice(&[0x16, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(parse(&split), Sni::Found("a-1s.example".into()));
    }

    #[test]
    fn ip_address_names_have_no_sni() {
        // rustls sends no SNI for an IP address.
        let cfg = crate::tls::client_config(b"x".to_vec()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        assert_eq!(parse(&out), Sni::Missing);
    }

    #[test]
    fn rejects_non_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Sni::Invalid);
        assert_eq!(parse(&[0x16, 3, 1, 0, 0]), Sni::Invalid);
        assert_eq!(parse(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Sni::Invalid);
        assert_eq!(parse(&[]), Sni::Incomplete);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        /// Random bytes behind a valid record and handshake header reach the inner parser.
        #[test]
        fn random_hello_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut m = vec![0x16, 3, 1];
            m.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
            m.push(1);
            m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            m.extend_from_slice(&body);
            let _ = parse(&m);
        }

        /// Mutating one byte of a real hello never panics.
        #[test]
        fn mutated_real_hello_never_panics(pos in 0usize..512, val in any::<u8>()) {
            let mut h = real_hello("abc-443s.example.org");
            let p = pos % h.len();
            h[p] = val;
            let _ = parse(&h);
        }
    }
}
