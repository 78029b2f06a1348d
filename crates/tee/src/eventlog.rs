//! dstack's event log: the measured events behind a quote's RTMRs, and reading the compose hash
//! out of it only once the log replays to the quote's RTMR3.
//!
//! The guest agent serves the log as a JSON array of `{imr, event_type, digest, event,
//! event_payload}`. Replay is TDX's extend: each register starts at 48 zero bytes and
//! `rtmr = SHA-384(rtmr ‖ digest)` per event, in order. dstack's own runtime events (app id,
//! compose hash, instance id, …) are extended into RTMR3 with a digest over their name and
//! payload; the real agent strips those digests from `GetQuote`'s log, so the verifier
//! recomputes them from the payload and never trusts a digest it is handed for one.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::hexfmt;
use crate::tdx::Measurement;

/// `event_type` of dstack's runtime events (all in RTMR3).
pub const DSTACK_RUNTIME_EVENT_TYPE: u32 = 0x0800_0001;
/// The runtime event whose payload is the app's compose hash.
pub const COMPOSE_HASH_EVENT: &str = "compose-hash";
/// Largest event log accepted (a real one is a few hundred entries).
pub const MAX_ENTRIES: usize = 4096;

/// One event, as the guest agent serves it (bytes as hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogEntry {
    pub imr: u32,
    pub event_type: u32,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub event_payload: String,
}

/// Why an event log does not establish what it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("event log is not a JSON array of events: {0}")]
    Json(String),
    #[error("event log has {0} entries, more than {MAX_ENTRIES}")]
    TooLong(usize),
    #[error("event {index}: imr {imr} is not 0..=3")]
    BadImr { index: usize, imr: u32 },
    #[error("event {index}: {reason}")]
    BadHex { index: usize, reason: String },
    #[error("event {index}: digest of {len} bytes is longer than 48")]
    LongDigest { index: usize, len: usize },
    #[error("event {index} ({event}): its digest is not the hash of its payload")]
    DigestMismatch { index: usize, event: String },
    #[error("the event log replays to an RTMR3 other than the quote's")]
    Rtmr3Mismatch,
    #[error("no compose-hash event in RTMR3")]
    NoComposeHash,
    #[error("{0} compose-hash events in RTMR3 (exactly one expected)")]
    ManyComposeHashes(usize),
    #[error("the compose-hash event's payload is {0} bytes, not 32")]
    BadComposeHash(usize),
}

/// Parses the agent's event log (a JSON array as a string).
pub fn parse(json: &str) -> Result<Vec<EventLogEntry>, EventLogError> {
    let entries: Vec<EventLogEntry> =
        serde_json::from_str(json).map_err(|e| EventLogError::Json(e.to_string()))?;
    if entries.len() > MAX_ENTRIES {
        return Err(EventLogError::TooLong(entries.len()));
    }
    for (index, e) in entries.iter().enumerate() {
        if e.imr > 3 {
            return Err(EventLogError::BadImr { index, imr: e.imr });
        }
    }
    Ok(entries)
}

/// The digest dstack extends into RTMR3 for a runtime event:
/// `SHA-384(le32(event_type) ‖ ":" ‖ event ‖ ":" ‖ payload)`.
pub fn runtime_event_digest(event: &str, payload: &[u8]) -> Measurement {
    let mut h = Sha384::new();
    h.update(DSTACK_RUNTIME_EVENT_TYPE.to_le_bytes());
    h.update(b":");
    h.update(event.as_bytes());
    h.update(b":");
    h.update(payload);
    h.finalize().into()
}

/// A runtime event with its digest filled in.
pub fn runtime_event(event: &str, payload: &[u8]) -> EventLogEntry {
    EventLogEntry {
        imr: 3,
        event_type: DSTACK_RUNTIME_EVENT_TYPE,
        digest: hexfmt::encode(runtime_event_digest(event, payload)),
        event: event.to_string(),
        event_payload: hexfmt::encode(payload),
    }
}

/// One TDX extend.
pub fn extend(mr: &Measurement, digest: &[u8]) -> Measurement {
    let mut d = [0u8; 48];
    let n = digest.len().min(48);
    d[..n].copy_from_slice(&digest[..n]);
    let mut h = Sha384::new();
    h.update(mr);
    h.update(d);
    h.finalize().into()
}

/// The digest an event contributes: recomputed from the payload for runtime events (a given
/// digest must agree), as given for boot events (their payloads are not hashed as-is).
fn event_digest(index: usize, e: &EventLogEntry) -> Result<Vec<u8>, EventLogError> {
    let bad = |reason: String| EventLogError::BadHex { index, reason };
    let given = hexfmt::decode("digest", &e.digest).map_err(|x| bad(x.to_string()))?;
    if given.len() > 48 {
        return Err(EventLogError::LongDigest {
            index,
            len: given.len(),
        });
    }
    if e.event_type != DSTACK_RUNTIME_EVENT_TYPE {
        return Ok(given);
    }
    let payload =
        hexfmt::decode("event_payload", &e.event_payload).map_err(|x| bad(x.to_string()))?;
    let computed = runtime_event_digest(&e.event, &payload);
    if !given.is_empty() && given != computed {
        return Err(EventLogError::DigestMismatch {
            index,
            event: e.event.clone(),
        });
    }
    Ok(computed.to_vec())
}

/// Replays all four registers.
pub fn replay(entries: &[EventLogEntry]) -> Result<[Measurement; 4], EventLogError> {
    let mut rtmr = [[0u8; 48]; 4];
    for (index, e) in entries.iter().enumerate() {
        let imr = usize::try_from(e.imr)
            .ok()
            .filter(|&i| i < 4)
            .ok_or(EventLogError::BadImr { index, imr: e.imr })?;
        rtmr[imr] = extend(&rtmr[imr], &event_digest(index, e)?);
    }
    Ok(rtmr)
}

/// The compose hash the log's RTMR3 events carry, once the RTMR3 events replay to `rtmr3`
/// (the quote's). Boot registers are not needed for it and are not checked here.
pub fn compose_hash(entries: &[EventLogEntry], rtmr3: &Measurement) -> Result<B256, EventLogError> {
    let mut mr = [0u8; 48];
    let mut found = Vec::new();
    for (index, e) in entries.iter().enumerate().filter(|(_, e)| e.imr == 3) {
        mr = extend(&mr, &event_digest(index, e)?);
        if e.event_type == DSTACK_RUNTIME_EVENT_TYPE && e.event == COMPOSE_HASH_EVENT {
            found.push((index, &e.event_payload));
        }
    }
    if &mr != rtmr3 {
        return Err(EventLogError::Rtmr3Mismatch);
    }
    match found.as_slice() {
        [] => Err(EventLogError::NoComposeHash),
        [(index, payload)] => {
            let bytes =
                hexfmt::decode("event_payload", payload).map_err(|x| EventLogError::BadHex {
                    index: *index,
                    reason: x.to_string(),
                })?;
            if bytes.len() != 32 {
                return Err(EventLogError::BadComposeHash(bytes.len()));
            }
            Ok(B256::from_slice(&bytes))
        }
        many => Err(EventLogError::ManyComposeHashes(many.len())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn log(compose: B256) -> Vec<EventLogEntry> {
        vec![
            EventLogEntry {
                imr: 0,
                event_type: 0x8000_0001,
                digest: hexfmt::encode([1u8; 48]),
                event: String::new(),
                event_payload: "ff".into(),
            },
            runtime_event("app-id", &[2u8; 20]),
            runtime_event(COMPOSE_HASH_EVENT, compose.as_slice()),
            runtime_event("boot-mr-done", &[]),
        ]
    }

    #[test]
    fn replay_is_tdx_extend_from_zero() {
        let l = log(B256::repeat_byte(7));
        let r = replay(&l).unwrap();
        assert_eq!(r[0], extend(&[0; 48], &[1; 48]));
        assert_eq!(r[1], [0; 48]);
        let mut mr = [0u8; 48];
        for e in &l[1..] {
            mr = extend(&mr, &hexfmt::decode("d", &e.digest).unwrap());
        }
        assert_eq!(r[3], mr);
        // A short digest is zero-padded, as the SDKs do.
        assert_eq!(
            extend(&[0; 48], &[9]),
            extend(&[0; 48], &{
                let mut d = [0u8; 48];
                d[0] = 9;
                d
            })
        );
    }

    #[test]
    fn compose_hash_needs_the_replay_to_match() {
        let compose = B256::repeat_byte(7);
        let l = log(compose);
        let rtmr3 = replay(&l).unwrap()[3];
        assert_eq!(compose_hash(&l, &rtmr3), Ok(compose));

        // Stripped digests (what the real agent serves) are recomputed from payloads.
        let mut stripped = l.clone();
        for e in stripped.iter_mut().filter(|e| e.imr == 3) {
            e.digest.clear();
        }
        assert_eq!(compose_hash(&stripped, &rtmr3), Ok(compose));

        // A swapped payload with its original digest is caught; without a digest it replays
        // to another RTMR3.
        let mut lie = l.clone();
        lie[2].event_payload = hexfmt::encode([8u8; 32]);
        assert!(matches!(
            compose_hash(&lie, &rtmr3),
            Err(EventLogError::DigestMismatch { index: 2, .. })
        ));
        lie[2].digest.clear();
        assert_eq!(
            compose_hash(&lie, &rtmr3),
            Err(EventLogError::Rtmr3Mismatch)
        );

        let none: Vec<_> = l
            .iter()
            .filter(|e| e.event != COMPOSE_HASH_EVENT)
            .cloned()
            .collect();
        let r3 = replay(&none).unwrap()[3];
        assert_eq!(compose_hash(&none, &r3), Err(EventLogError::NoComposeHash));
        let mut two = l.clone();
        two.push(runtime_event(COMPOSE_HASH_EVENT, &[1u8; 32]));
        let r3 = replay(&two).unwrap()[3];
        assert_eq!(
            compose_hash(&two, &r3),
            Err(EventLogError::ManyComposeHashes(2))
        );
    }

    #[test]
    fn parse_rejects_bad_logs_by_name() {
        let l = log(B256::ZERO);
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(parse(&json).unwrap(), l);
        assert!(matches!(parse("{}"), Err(EventLogError::Json(_))));
        assert!(matches!(
            parse(r#"[{"imr":4,"event_type":1}]"#),
            Err(EventLogError::BadImr { index: 0, imr: 4 })
        ));
        let mut bad = l.clone();
        bad[0].digest = "zz".into();
        assert!(matches!(
            replay(&bad),
            Err(EventLogError::BadHex { index: 0, .. })
        ));
        bad[0].digest = hexfmt::encode([0u8; 49]);
        assert!(matches!(
            replay(&bad),
            Err(EventLogError::LongDigest { index: 0, len: 49 })
        ));
    }
}
