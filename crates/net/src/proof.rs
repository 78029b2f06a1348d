//! What makes a bridge ingress connection "proven" (DESIGN §6.3): it carried a WireGuard message
//! addressed to a session index that our own device announced to the peer the connection claims.
//!
//! The bridge cannot check WireGuard's MACs (it has no keys), but it sees everything the device
//! sends to each peer. Every handshake initiation and response the device sends carries the
//! device's fresh random *sender index*; the peer's responses, cookie replies and data messages
//! must echo it as their *receiver index* or the device drops them. Only someone who saw our
//! handshake traffic to that peer knows the index (boringtun draws 24 random bits per peer and adds
//! an 8-bit session counter), so echoing a recent one is a cheap capability that stands in for
//! "the device accepts this connection's traffic". It is not authentication: WireGuard still is.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

const MSG_INIT: u8 = 1;
const MSG_RESPONSE: u8 = 2;
const MSG_COOKIE: u8 = 3;
const MSG_DATA: u8 = 4;
/// Indices remembered per peer: a session lives through a few rekeys (every 2 minutes), and a
/// handshake may be retried a few times before it completes.
const REMEMBERED: usize = 8;

fn u32_at(msg: &[u8], at: usize) -> Option<u32> {
    let b = msg.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The sender index in a handshake message our device sent, if it is one.
pub fn announced_index(outgoing: &[u8]) -> Option<u32> {
    match *outgoing.first()? {
        MSG_INIT | MSG_RESPONSE if *outgoing.get(1..4)? == [0, 0, 0] => u32_at(outgoing, 4),
        _ => None,
    }
}

/// The receiver index in a message addressed to our device, if it carries one.
pub fn addressed_index(incoming: &[u8]) -> Option<u32> {
    if *incoming.get(1..4)? != [0, 0, 0] {
        return None;
    }
    match *incoming.first()? {
        MSG_RESPONSE => u32_at(incoming, 8),
        MSG_COOKIE | MSG_DATA => u32_at(incoming, 4),
        _ => None,
    }
}

/// The session indices our device recently announced to one peer.
#[derive(Debug, Default)]
pub struct SessionIndices(Mutex<VecDeque<u32>>);

impl SessionIndices {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the index in a datagram the device sent to this peer (no-op for other messages).
    pub fn learn(&self, outgoing: &[u8]) {
        let Some(idx) = announced_index(outgoing) else {
            return;
        };
        let mut known = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !known.contains(&idx) {
            if known.len() == REMEMBERED {
                known.pop_front();
            }
            known.push_back(idx);
        }
    }

    /// True if `incoming` is addressed to an index we announced to this peer.
    pub fn proves(&self, incoming: &[u8]) -> bool {
        let Some(idx) = addressed_index(incoming) else {
            return false;
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, len: usize, at: usize, idx: u32) -> Vec<u8> {
        let mut m = vec![0x5au8; len];
        m[0] = kind;
        m[1..4].copy_from_slice(&[0, 0, 0]);
        m[at..at + 4].copy_from_slice(&idx.to_le_bytes());
        m
    }

    #[test]
    fn data_and_responses_to_announced_indices_prove() {
        let s = SessionIndices::new();
        // Our device initiated with index 0x1234_5601 and responded to the peer with 0x1234_5602.
        s.learn(&msg(MSG_INIT, 148, 4, 0x1234_5601));
        s.learn(&msg(MSG_RESPONSE, 92, 4, 0x1234_5602));
        assert!(s.proves(&msg(MSG_RESPONSE, 92, 8, 0x1234_5601)));
        assert!(s.proves(&msg(MSG_DATA, 32, 4, 0x1234_5602)));
        assert!(s.proves(&msg(MSG_COOKIE, 64, 4, 0x1234_5601)));
        // A guessed index, an initiation (carries no receiver) and a malformed header do not.
        assert!(!s.proves(&msg(MSG_DATA, 32, 4, 0x1234_5603)));
        assert!(!s.proves(&msg(MSG_INIT, 148, 4, 0x1234_5601)));
        let mut bad = msg(MSG_DATA, 32, 4, 0x1234_5602);
        bad[2] = 1;
        assert!(!s.proves(&bad));
        assert!(!s.proves(&[MSG_DATA, 0, 0, 0, 1]));
    }

    #[test]
    fn only_our_handshakes_teach_indices_and_old_ones_age_out() {
        let s = SessionIndices::new();
        // Data the device sends carries the *peer's* index: it must not be learnt.
        s.learn(&msg(MSG_DATA, 32, 4, 7));
        assert!(!s.proves(&msg(MSG_DATA, 32, 4, 7)));
        for i in 0..=REMEMBERED as u32 {
            s.learn(&msg(MSG_INIT, 148, 4, 100 + i));
        }
        assert!(!s.proves(&msg(MSG_DATA, 32, 4, 100)));
        assert!(s.proves(&msg(MSG_DATA, 32, 4, 101)));
        assert!(s.proves(&msg(MSG_DATA, 32, 4, 100 + REMEMBERED as u32)));
    }
}
