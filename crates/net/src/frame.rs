//! Sans-IO codec for WireGuard datagrams on a byte stream (DESIGN §6.3): each datagram is
//! `u16 big-endian length ‖ bytes`.
//!
//! The stream crosses an untrusted gateway, so the decoder checks every frame against the shape of
//! a WireGuard message. A frame that is longer than its declared length shows up as a following
//! "frame" whose header is payload bytes: that fails the shape check. Any violation poisons the
//! decoder and the caller resets the connection; WireGuard itself still authenticates whatever
//! passes.

use bytes_buf::Buf;

/// Largest frame accepted: a WireGuard data message for MTU 1420 is 1452 bytes; allow any MTU up
/// to 1500 plus headroom, and nothing near the 64 KiB a u16 could declare.
pub const MAX_FRAME: usize = 1600;

const MSG_INIT: u8 = 1;
const MSG_RESPONSE: u8 = 2;
const MSG_COOKIE: u8 = 3;
const MSG_DATA: u8 = 4;
const LEN_INIT: usize = 148;
const LEN_RESPONSE: usize = 92;
const LEN_COOKIE: usize = 64;
/// Header (16) + Poly1305 tag (16); a keepalive is exactly this.
const LEN_DATA_MIN: usize = 32;

/// Why a stream was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("zero-length frame")]
    Empty,
    #[error("frame declares {0} bytes, more than the {MAX_FRAME}-byte limit")]
    Oversized(usize),
    #[error("frame of {len} bytes is not a WireGuard message (type byte {kind})")]
    NotWireGuard { kind: u8, len: usize },
}

/// Checks that a datagram has the shape of one WireGuard message (type, reserved zeros, length).
pub fn check_wireguard(datagram: &[u8]) -> Result<(), FrameError> {
    let len = datagram.len();
    let kind = datagram.first().copied().unwrap_or(0);
    let bad = FrameError::NotWireGuard { kind, len };
    if len < 4 || datagram[1..4] != [0, 0, 0] {
        return Err(bad);
    }
    let ok = match kind {
        MSG_INIT => len == LEN_INIT,
        MSG_RESPONSE => len == LEN_RESPONSE,
        MSG_COOKIE => len == LEN_COOKIE,
        // The spec pads data payloads to 16 bytes, but boringtun does not, so only the minimum
        // (header + tag) is checked.
        MSG_DATA => len >= LEN_DATA_MIN,
        _ => false,
    };
    if ok { Ok(()) } else { Err(bad) }
}

/// Appends one framed datagram to `out`. Refuses datagrams the peer's decoder would reject, so we
/// never send what we would not accept.
pub fn encode(datagram: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if datagram.is_empty() {
        return Err(FrameError::Empty);
    }
    if datagram.len() > MAX_FRAME {
        return Err(FrameError::Oversized(datagram.len()));
    }
    let len = u16::try_from(datagram.len()).map_err(|_| FrameError::Oversized(datagram.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(datagram);
    Ok(())
}

/// Incremental decoder: feed it whatever the stream delivered, then pull frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Buf,
    failed: Option<FrameError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes. Bytes after a failure are discarded.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the error that poisoned
    /// the stream (returned again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.compact_consumed();
        let avail = self.buf.as_slice();
        if avail.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([avail[0], avail[1]]));
        let err = if len == 0 {
            Some(FrameError::Empty)
        } else if len > MAX_FRAME {
            Some(FrameError::Oversized(len))
        } else {
            None
        };
        if let Some(e) = err {
            self.failed = Some(e.clone());
            self.buf.clear();
            return Err(e);
        }
        if avail.len() < 2 + len {
            return Ok(None);
        }
        if let Err(e) = check_wireguard(&avail[2..2 + len]) {
            self.failed = Some(e.clone());
            self.buf.clear();
            return Err(e);
        }
        Ok(Some(self.buf.consume(2 + len, 2)))
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.as_slice().len()
    }
}

/// A tiny consume-from-the-front buffer, so decoding does not memmove on every frame.
mod bytes_buf {
    #[derive(Debug, Default)]
    pub struct Buf {
        data: Vec<u8>,
        start: usize,
        /// Bytes handed out by the last `consume`, dropped on the next call.
        pending: usize,
    }

    impl Buf {
        pub fn extend(&mut self, bytes: &[u8]) {
            self.compact_consumed();
            if self.start > 0 && self.start >= self.data.len() / 2 {
                self.data.drain(..self.start);
                self.start = 0;
            }
            self.data.extend_from_slice(bytes);
        }

        pub fn compact_consumed(&mut self) {
            self.start += self.pending;
            self.pending = 0;
            if self.start == self.data.len() {
                self.data.clear();
                self.start = 0;
            }
        }

        pub fn as_slice(&self) -> &[u8] {
            &self.data[self.start + self.pending..]
        }

        /// Marks `n` bytes consumed and returns them minus a `skip`-byte header.
        pub fn consume(&mut self, n: usize, skip: usize) -> &[u8] {
            let from = self.start + self.pending;
            self.pending += n;
            &self.data[from + skip..from + n]
        }

        pub fn clear(&mut self) {
            self.data = Vec::new();
            self.start = 0;
            self.pending = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data_msg(payload_blocks: usize) -> Vec<u8> {
        let mut m = vec![0u8; LEN_DATA_MIN + 16 * payload_blocks];
        m[0] = MSG_DATA;
        for (i, b) in m.iter_mut().enumerate().skip(4) {
            *b = i as u8;
        }
        m
    }

    fn init_msg() -> Vec<u8> {
        let mut m = vec![0xabu8; LEN_INIT];
        m[0] = MSG_INIT;
        m[1..4].copy_from_slice(&[0, 0, 0]);
        m
    }

    #[test]
    fn roundtrip_in_one_push() {
        let msgs = [init_msg(), data_msg(0), data_msg(88)];
        let mut wire = Vec::new();
        for m in &msgs {
            encode(m, &mut wire).unwrap();
        }
        let mut d = Decoder::new();
        d.push(&wire);
        for m in &msgs {
            assert_eq!(d.next_frame().unwrap().unwrap(), &m[..]);
        }
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn roundtrip_byte_by_byte() {
        let msgs = [data_msg(3), init_msg()];
        let mut wire = Vec::new();
        for m in &msgs {
            encode(m, &mut wire).unwrap();
        }
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, msgs.to_vec());
    }

    #[test]
    fn zero_length_frame_poisons() {
        let mut d = Decoder::new();
        d.push(&[0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::Empty));
        // Valid bytes afterwards do not revive the stream.
        let mut wire = Vec::new();
        encode(&data_msg(1), &mut wire).unwrap();
        d.push(&wire);
        assert_eq!(d.next_frame(), Err(FrameError::Empty));
        assert_eq!(encode(&[], &mut wire), Err(FrameError::Empty));
    }

    #[test]
    fn oversized_declaration_is_rejected_before_the_body_arrives() {
        let mut d = Decoder::new();
        d.push(&[0xff, 0xff, 4]);
        assert_eq!(d.next_frame(), Err(FrameError::Oversized(0xffff)));
        assert!(encode(&vec![4u8; MAX_FRAME + 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn frame_longer_than_declared_is_detected() {
        // Declares a 32-byte keepalive but carries 48 bytes: the 16 extra bytes are read as the
        // next frame's header and body, which is not a WireGuard message.
        let body = data_msg(1);
        let mut wire = vec![0, 32];
        wire.extend_from_slice(&body);
        let mut d = Decoder::new();
        d.push(&wire);
        assert_eq!(d.next_frame().unwrap().unwrap(), &body[..32]);
        let mut more = Vec::new();
        encode(&data_msg(0), &mut more).unwrap();
        d.push(&more);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::NotWireGuard { .. }) | Err(FrameError::Oversized(_))
        ));
    }

    #[test]
    fn non_wireguard_payload_is_rejected() {
        let mut d = Decoder::new();
        d.push(&[0, 5, b'h', b'e', b'l', b'l', b'o']);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::NotWireGuard { kind: b'h', len: 5 })
        ));
        assert!(check_wireguard(&data_msg(0)[..31]).is_err());
        let mut bad_reserved = data_msg(0);
        bad_reserved[2] = 1;
        assert!(check_wireguard(&bad_reserved).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes in random chunks never panic, and every frame returned is well-formed.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                                    cuts in proptest::collection::vec(1usize..512, 1..16)) {
            let mut d = Decoder::new();
            let mut rest = &bytes[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Ok(Some(f)) = d.next_frame() {
                    prop_assert!(check_wireguard(f).is_ok());
                }
            }
        }

        /// Whatever valid frames are encoded come back unchanged, however the stream is cut.
        #[test]
        fn valid_streams_roundtrip(blocks in proptest::collection::vec(0usize..90, 1..20),
                                   cut in 1usize..700) {
            let msgs: Vec<Vec<u8>> = blocks.iter().map(|b| data_msg(*b)).collect();
            let mut wire = Vec::new();
            for m in &msgs { encode(m, &mut wire).unwrap(); }
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                d.push(chunk);
                while let Some(f) = d.next_frame().unwrap() { got.push(f.to_vec()); }
            }
            prop_assert_eq!(got, msgs);
        }
    }
}
