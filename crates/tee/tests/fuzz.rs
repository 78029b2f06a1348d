//! Fuzz targets of attestmesh-tee's decoders (proptest; BRIEF convention: one `fuzz_<decoder>`
//! per decoder, cases from `ATTESTMESH_FUZZ_CASES`, default 256).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy_primitives::B256;
use attestmesh_tee::devtee::SIMULATED_QUOTE_MAGIC;
use attestmesh_tee::quote::{QuoteError, report_data};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("ATTESTMESH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A TDX-shaped quote of `version` (4 or 5) carrying `rd` where the layout puts report_data.
fn tdx_quote(version: u16, rd: &[u8; 64], tail: usize) -> Vec<u8> {
    let offset = if version == 5 { 48 + 6 + 520 } else { 48 + 520 };
    let mut q = vec![0u8; offset + 64 + tail];
    q[..2].copy_from_slice(&version.to_le_bytes());
    q[offset..offset + 64].copy_from_slice(rd);
    q
}

fn simulated(compose: B256, rd: &[u8; 64]) -> Vec<u8> {
    let mut q = SIMULATED_QUOTE_MAGIC.to_vec();
    q.extend_from_slice(&[0x1d; 20]);
    q.extend_from_slice(compose.as_slice());
    q.extend_from_slice(rd);
    q
}

proptest! {
    #![proptest_config(config())]

    /// `quote::report_data` on the Indexer's attestation bytes: arbitrary input never panics and
    /// fails with a typed error or reads 64 bytes; a well-formed v4/v5 or simulated quote gives
    /// back exactly the report_data it carries; truncation is `Truncated`; a changed version
    /// (other than 4/5) is `UnsupportedVersion`; a byte flipped inside report_data changes the
    /// result (so it is really read from there).
    #[test]
    fn fuzz_quote_report_data(
        junk in proptest::collection::vec(any::<u8>(), 0..1200),
        rd in any::<[u8; 64]>(),
        v5 in any::<bool>(),
        tail in 0usize..600,
        cut in any::<usize>(),
        at in 0usize..64,
        mask in 1u8..=255,
        version in any::<u16>(),
        allow in any::<bool>(),
    ) {
        match report_data(&junk, allow) {
            Ok(q) => prop_assert_eq!(q.report_data.len(), 64),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }

        let version_ok = if v5 { 5 } else { 4 };
        let q = tdx_quote(version_ok, &rd, tail);
        let parsed = report_data(&q, false).unwrap();
        prop_assert_eq!(parsed.report_data, rd);
        prop_assert_eq!(parsed.simulated_compose_hash, None);

        let need = q.len() - tail;
        let short = &q[..cut % need];
        let r = report_data(short, false);
        if short.len() < 2 {
            prop_assert_eq!(r, Err(QuoteError::Empty));
        } else {
            prop_assert_eq!(r, Err(QuoteError::Truncated(short.len())));
        }

        let mut other = q.clone();
        other[..2].copy_from_slice(&version.to_le_bytes());
        if version != 4 && version != 5 {
            prop_assert_eq!(report_data(&other, false), Err(QuoteError::UnsupportedVersion(version)));
        }

        let offset = need - 64;
        let mut flipped = q.clone();
        flipped[offset + at] ^= mask;
        prop_assert_ne!(report_data(&flipped, false).unwrap().report_data, rd);

        let sim = simulated(B256::repeat_byte(9), &rd);
        prop_assert_eq!(report_data(&sim, false), Err(QuoteError::SimulatedRefused));
        let s = report_data(&sim, true).unwrap();
        prop_assert_eq!(s.report_data, rd);
        prop_assert_eq!(s.simulated_compose_hash, Some(B256::repeat_byte(9)));
        let sim_cut = &sim[..SIMULATED_QUOTE_MAGIC.len() + cut % (sim.len() - SIMULATED_QUOTE_MAGIC.len())];
        prop_assert_eq!(report_data(sim_cut, true), Err(QuoteError::BadSimulated));
    }
}
