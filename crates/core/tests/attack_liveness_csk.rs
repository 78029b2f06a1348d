//! Attack tests (DESIGN §1, §15.6) for invariant 3 (heartbeats are authenticated) and
//! invariants 4 and 7 (the CSK is verified; only sealed to the requester).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::Ipv4Addr;

use alloy_primitives::{Address, B256};
use attestmesh_core::csk::{
    self, CacheContext, CacheError, CacheMiss, CacheOutcome, ServedCskError,
};
use attestmesh_core::heartbeat::{self, HeartbeatFields};
use attestmesh_core::keys::{Ed25519Secret, SymmetricKey, X25519Secret};
use attestmesh_core::liveness::{Config, DropReason, Liveness, MemberInfo};
use attestmesh_core::sealed::{self, SealError};
use rand_core::OsRng;

const T: u64 = 1_700_000_000_000;

struct Member {
    id: B256,
    key: Ed25519Secret,
    info: MemberInfo,
}

fn member(i: u8) -> Member {
    let key = Ed25519Secret::from_seed([i; 32]);
    Member {
        id: B256::repeat_byte(i),
        info: MemberInfo {
            ed_pub: key.public(),
            mesh_ip: Ipv4Addr::new(10, 9, 0, i),
        },
        key,
    }
}

fn hb(m: &Member, key: &Ed25519Secret, seq: u64, at: u64) -> Vec<u8> {
    HeartbeatFields {
        sender: m.id,
        seq,
        unix_ms: at,
        view_len: 1,
        view_digest: heartbeat::view_digest([&m.id]),
    }
    .sign(key)
    .to_vec()
}

/// Receiver `b` with members {a, b} from chain state.
fn setup() -> (Member, Member, Liveness) {
    let a = member(1);
    let b = member(2);
    let members: HashMap<B256, MemberInfo> = [(a.id, a.info), (b.id, b.info)].into();
    let mut l = Liveness::new(b.id, b.key.clone(), Config::with_interval(2000));
    l.set_members(&members);
    (a, b, l)
}

#[test]
fn forged_heartbeat_with_wrong_key_is_dropped() {
    let (a, _, mut l) = setup();
    let attacker = Ed25519Secret::from_seed([66u8; 32]);
    let forged = hb(&a, &attacker, T, T);
    assert_eq!(
        l.on_heartbeat(T, a.info.mesh_ip, &forged),
        Err(DropReason::BadSignature)
    );
    assert!(!l.is_live(&a.id));
    // A packet pre-verified with the attacker's own key is still refused: the key must be the
    // sender's on-chain key, not just any key that verifies.
    let v = heartbeat::decode_verified(&forged, &attacker.public()).unwrap();
    assert_eq!(
        l.on_verified(T, a.info.mesh_ip, &v),
        Err(DropReason::BadSignature)
    );
    // Tampering with any signed field of a genuine packet (e.g. bumping seq) breaks it.
    let mut t = hb(&a, &a.key, T, T);
    t[44] ^= 1;
    assert_eq!(
        l.on_heartbeat(T, a.info.mesh_ip, &t),
        Err(DropReason::BadSignature)
    );
    assert!(l.live_peers().is_empty());
}

#[test]
fn replayed_heartbeat_is_dropped() {
    let (a, _, mut l) = setup();
    let p1 = hb(&a, &a.key, T, T);
    let p2 = hb(&a, &a.key, T + 2000, T + 2000);
    l.on_heartbeat(T, a.info.mesh_ip, &p1).unwrap();
    l.on_heartbeat(T + 2000, a.info.mesh_ip, &p2).unwrap();
    assert_eq!(
        l.on_heartbeat(T + 2001, a.info.mesh_ip, &p1),
        Err(DropReason::StaleSeq {
            last: T + 2000,
            got: T
        })
    );
    assert_eq!(
        l.on_heartbeat(T + 2002, a.info.mesh_ip, &p2),
        Err(DropReason::StaleSeq {
            last: T + 2000,
            got: T + 2000
        })
    );
    // A replay cannot keep a dead peer alive: after the window it is down despite replays.
    let later = T + 2000 + 8000;
    l.poll(later);
    assert!(!l.is_live(&a.id));
    assert!(l.on_heartbeat(later, a.info.mesh_ip, &p2).is_err());
    assert!(!l.is_live(&a.id));
}

/// Issue 11 hole 7: a sender whose clock jumped forward and back signs a heartbeat whose `seq`
/// is hours ahead of its own (current, correct) timestamp. Accepting it would raise the stored
/// `seq` so far that every later honest heartbeat of that sender looks like a replay: the sender
/// is locked out at this peer until the peer restarts or hours pass.
#[test]
fn attack_heartbeat_seq_far_ahead_of_its_timestamp_is_refused() {
    let (a, _, mut l) = setup();
    l.on_heartbeat(T, a.info.mesh_ip, &hb(&a, &a.key, T, T))
        .unwrap();
    let three_hours = 3 * 3_600_000;
    let ahead = hb(&a, &a.key, T + three_hours, T + 2000);
    assert_eq!(
        l.on_heartbeat(T + 2000, a.info.mesh_ip, &ahead),
        Err(DropReason::SeqOutOfWindow {
            seq: T + three_hours,
            unix_ms: T + 2000
        }),
        "seq three hours ahead of the packet's own timestamp must be refused"
    );
    // Its honest heartbeats (seq from its clock, e.g. after a restart) keep it live.
    for k in 2..6 {
        let t = T + k * 2000;
        assert_eq!(
            l.on_heartbeat(t, a.info.mesh_ip, &hb(&a, &a.key, t, t)),
            Ok(attestmesh_core::liveness::Accepted {
                peer: a.id,
                became_live: false
            }),
            "honest heartbeat at +{k} intervals"
        );
    }
    // A seq below the packet's own timestamp is malformed too (seq never trails the clock).
    let t = T + 12_000;
    assert_eq!(
        l.on_heartbeat(t, a.info.mesh_ip, &hb(&a, &a.key, t - 1, t)),
        Err(DropReason::SeqOutOfWindow {
            seq: t - 1,
            unix_ms: t
        })
    );
}

#[test]
fn replay_after_receiver_restart_is_dropped_by_freshness() {
    let (a, b, _) = setup();
    let old = hb(&a, &a.key, T, T);
    // The receiver restarted and forgot every seq; an hour-old capture is replayed to it.
    let mut fresh = Liveness::new(b.id, b.key.clone(), Config::with_interval(2000));
    fresh.set_members(&[(a.id, a.info), (b.id, b.info)].into());
    let now = T + 3_600_000;
    assert_eq!(
        fresh.on_heartbeat(now, a.info.mesh_ip, &old),
        Err(DropReason::ClockSkew {
            sender_ms: T,
            now_ms: now
        })
    );
    assert!(!fresh.is_live(&a.id));
}

#[test]
fn misattributed_heartbeat_is_dropped() {
    let (a, b, mut l) = setup();
    // A genuine heartbeat of `a`, relayed by someone else (here from b's or a stranger's IP).
    let p = hb(&a, &a.key, T, T);
    for ip in [b.info.mesh_ip, Ipv4Addr::new(10, 9, 0, 200)] {
        assert_eq!(
            l.on_heartbeat(T, ip, &p),
            Err(DropReason::WrongSourceIp {
                expected: a.info.mesh_ip,
                got: ip
            })
        );
    }
    assert!(!l.is_live(&a.id));
    // The mis-attributed attempt did not burn the seq: the genuine delivery still works.
    l.on_heartbeat(T, a.info.mesh_ip, &p).unwrap();
    assert!(l.is_live(&a.id));
}

#[test]
fn non_member_self_and_garbage_are_dropped() {
    let (_, b, mut l) = setup();
    let stranger = member(77);
    let p = hb(&stranger, &stranger.key, T, T);
    assert_eq!(
        l.on_heartbeat(T, stranger.info.mesh_ip, &p),
        Err(DropReason::NotMember(stranger.id))
    );
    let own = hb(&b, &b.key, T, T);
    assert_eq!(
        l.on_heartbeat(T, b.info.mesh_ip, &own),
        Err(DropReason::FromSelf)
    );
    assert!(matches!(
        l.on_heartbeat(T, b.info.mesh_ip, b"AMHB\x01short"),
        Err(DropReason::Malformed(_))
    ));
    assert!(l.live_peers().is_empty());
}

#[test]
fn key_rotation_on_chain_invalidates_old_key() {
    let (a, b, mut l) = setup();
    l.on_heartbeat(T, a.info.mesh_ip, &hb(&a, &a.key, T, T))
        .unwrap();
    // The chain now binds a new key to `a` (e.g. re-registration): the old key is worthless.
    let new_key = Ed25519Secret::from_seed([99u8; 32]);
    let mut info = a.info;
    info.ed_pub = new_key.public();
    l.set_members(&[(a.id, info), (b.id, b.info)].into());
    assert!(!l.is_live(&a.id));
    assert_eq!(
        l.on_heartbeat(T + 1, a.info.mesh_ip, &hb(&a, &a.key, T + 1, T + 1)),
        Err(DropReason::BadSignature)
    );
    l.on_heartbeat(T + 2, a.info.mesh_ip, &hb(&a, &new_key, T + 2, T + 2))
        .unwrap();
}

// ---- CSK (invariants 4 and 7) ----

fn requester() -> X25519Secret {
    X25519Secret::from_seed([21u8; 32])
}

#[test]
fn genuine_served_csk_is_accepted() {
    let csk = SymmetricKey::from_bytes([7u8; 32]);
    let r = requester();
    let sealed = sealed::seal(&r.public(), csk.as_bytes(), &mut OsRng).unwrap();
    let got = csk::verify_served(&r, &sealed, Some(&csk.commitment())).unwrap();
    assert_eq!(got, csk);
}

#[test]
fn bogus_csk_from_malicious_peer_is_rejected() {
    let real = SymmetricKey::from_bytes([7u8; 32]);
    let commitment = real.commitment();
    let r = requester();
    // A malicious member seals its own key correctly to us: it opens, but fails the commitment.
    let bogus = SymmetricKey::from_bytes([8u8; 32]);
    let sealed = sealed::seal(&r.public(), bogus.as_bytes(), &mut OsRng).unwrap();
    assert_eq!(
        csk::verify_served(&r, &sealed, Some(&commitment)),
        Err(ServedCskError::CommitmentMismatch {
            expected: commitment,
            got: bogus.commitment()
        })
    );
    // Wrong length (e.g. the real key plus a byte) is rejected before any hash comparison.
    let mut long = real.as_bytes().to_vec();
    long.push(0);
    let sealed = sealed::seal(&r.public(), &long, &mut OsRng).unwrap();
    assert_eq!(
        csk::verify_served(&r, &sealed, Some(&commitment)),
        Err(ServedCskError::Length(33))
    );
    // Sealed to someone else (e.g. a box captured from another requester).
    let other = X25519Secret::from_seed([22u8; 32]);
    let sealed = sealed::seal(&other.public(), real.as_bytes(), &mut OsRng).unwrap();
    assert_eq!(
        csk::verify_served(&r, &sealed, Some(&commitment)),
        Err(ServedCskError::Open(SealError::Authentication))
    );
    // No commitment on chain: even the real key is not accepted.
    let sealed = sealed::seal(&r.public(), real.as_bytes(), &mut OsRng).unwrap();
    assert_eq!(
        csk::verify_served(&r, &sealed, None),
        Err(ServedCskError::NoCommitment)
    );
    // Garbage never panics.
    for n in [0usize, 1, 47, 48, 80, 81, 500] {
        assert!(csk::verify_served(&r, &vec![0x5a; n], Some(&commitment)).is_err());
    }
}

fn ctx() -> CacheContext {
    CacheContext {
        cluster: Address::repeat_byte(0xc1),
        member_id: B256::repeat_byte(0x33),
    }
}

#[test]
fn cache_roundtrip_and_foreign_caches_ignored() {
    let state = SymmetricKey::from_bytes([1u8; 32]);
    let csk = SymmetricKey::from_bytes([7u8; 32]);
    let c = csk.commitment();
    let file = csk::seal_cache(&state, &ctx(), &csk, &[9u8; 24]).unwrap();
    assert_eq!(file.len(), csk::CACHE_LEN);
    // The CSK is not in the file in the clear.
    assert!(!file.windows(32).any(|w| w == csk.as_bytes()));
    assert_eq!(
        csk::open_cache(&state, &ctx(), Some(&c), &file).unwrap(),
        CacheOutcome::Hit(csk.clone())
    );
    // Another cluster / member / commitment: ignored, typed.
    let mut other = ctx();
    other.cluster = Address::repeat_byte(0xc2);
    assert_eq!(
        csk::open_cache(&state, &other, Some(&c), &file).unwrap(),
        CacheOutcome::Ignored(CacheMiss::OtherCluster)
    );
    let mut other = ctx();
    other.member_id = B256::repeat_byte(0x34);
    assert_eq!(
        csk::open_cache(&state, &other, Some(&c), &file).unwrap(),
        CacheOutcome::Ignored(CacheMiss::OtherMember)
    );
    let newc = B256::repeat_byte(0xee);
    assert_eq!(
        csk::open_cache(&state, &ctx(), Some(&newc), &file).unwrap(),
        CacheOutcome::Ignored(CacheMiss::StaleCommitment {
            cached: c,
            on_chain: newc
        })
    );
    assert_eq!(
        csk::open_cache(&state, &ctx(), None, &file).unwrap(),
        CacheOutcome::Ignored(CacheMiss::NoCommitment)
    );
}

#[test]
fn tampered_or_rebound_cache_is_rejected() {
    let state = SymmetricKey::from_bytes([1u8; 32]);
    let csk = SymmetricKey::from_bytes([7u8; 32]);
    let c = csk.commitment();
    let file = csk::seal_cache(&state, &ctx(), &csk, &[9u8; 24]).unwrap();
    // Flip each byte after the magic/version: either the context no longer matches (ignored)
    // or authentication fails; never a Hit with a different key.
    for i in 5..file.len() {
        let mut t = file.clone();
        t[i] ^= 0x80;
        match csk::open_cache(&state, &ctx(), Some(&c), &t) {
            Ok(CacheOutcome::Hit(_)) => panic!("byte {i}: tampered cache accepted"),
            Ok(CacheOutcome::Ignored(_)) => assert!(i < 89, "byte {i}"),
            Err(e) => assert_eq!(e, CacheError::Authentication, "byte {i}"),
        }
    }
    // An attacker who rewrites the header to claim our context (re-binding another member's
    // cache) fails authentication: the header is AAD.
    let mut foreign_ctx = ctx();
    foreign_ctx.member_id = B256::repeat_byte(0x99);
    let mut rebound = csk::seal_cache(&state, &foreign_ctx, &csk, &[9u8; 24]).unwrap();
    rebound[25..57].copy_from_slice(ctx().member_id.as_slice());
    assert_eq!(
        csk::open_cache(&state, &ctx(), Some(&c), &rebound),
        Err(CacheError::Authentication)
    );
    // Written under another state key (another VM or app identity).
    let other_state = SymmetricKey::from_bytes([2u8; 32]);
    assert_eq!(
        csk::open_cache(&other_state, &ctx(), Some(&c), &file),
        Err(CacheError::Authentication)
    );
    // Truncated, bad magic, bad version.
    assert_eq!(
        csk::open_cache(&state, &ctx(), Some(&c), &file[..10]),
        Err(CacheError::Length(10))
    );
    let mut m = file.clone();
    m[0] = b'X';
    assert_eq!(
        csk::open_cache(&state, &ctx(), Some(&c), &m),
        Err(CacheError::BadMagic)
    );
    let mut m = file;
    m[4] = 9;
    assert_eq!(
        csk::open_cache(&state, &ctx(), Some(&c), &m),
        Err(CacheError::Version(9))
    );
}
