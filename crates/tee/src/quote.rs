//! Reading what a quote attests without verifying its signature chain: the 64-byte report_data
//! (and, for devtee's simulated quotes, the compose hash).
//!
//! Callers that only need to know *which key* a quote binds (the agent checking an Indexer's
//! attestation, DESIGN §9.2) use this; it is not a quote verifier (no PCCS, no certificate
//! chain). Keeping the TDX layout here keeps the method details inside the TEE crate (§4.4).

use alloy_primitives::B256;

use crate::devtee::{SIMULATED_QUOTE_MAGIC, parse_simulated_quote};

/// TDX quote header length (v4 and v5).
const HEADER_LEN: usize = 48;
/// v5 inserts a body descriptor (type u16, size u32) between the header and the TD report body.
const V5_BODY_DESCRIPTOR_LEN: usize = 6;
/// Offset of report_data inside the TD report body.
const REPORT_DATA_IN_BODY: usize = 520;

/// What a quote attests, as far as this module reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedReport {
    pub report_data: [u8; 64],
    /// The compose hash a devtee quote carries; `None` for TDX (it sits in the event log).
    pub simulated_compose_hash: Option<B256>,
}

/// Why a quote could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("simulated devtee quote refused (simulated quotes are not allowed)")]
    SimulatedRefused,
    #[error("simulated devtee quote is truncated or overlong")]
    BadSimulated,
    #[error("empty quote")]
    Empty,
    #[error("unsupported quote version {0}")]
    UnsupportedVersion(u16),
    #[error("quote of {0} bytes is truncated")]
    Truncated(usize),
}

/// The report_data of a TDX v4/v5 quote, or of a devtee simulated quote when `allow_simulated`.
pub fn report_data(quote: &[u8], allow_simulated: bool) -> Result<QuotedReport, QuoteError> {
    if quote.starts_with(SIMULATED_QUOTE_MAGIC) {
        if !allow_simulated {
            return Err(QuoteError::SimulatedRefused);
        }
        let (_, compose, rd) = parse_simulated_quote(quote).ok_or(QuoteError::BadSimulated)?;
        return Ok(QuotedReport {
            report_data: rd,
            simulated_compose_hash: Some(compose),
        });
    }
    let version = match quote.get(..2) {
        Some(v) => u16::from_le_bytes([v[0], v[1]]),
        None => return Err(QuoteError::Empty),
    };
    let offset = match version {
        4 => HEADER_LEN + REPORT_DATA_IN_BODY,
        5 => HEADER_LEN + V5_BODY_DESCRIPTOR_LEN + REPORT_DATA_IN_BODY,
        v => return Err(QuoteError::UnsupportedVersion(v)),
    };
    let rd = quote
        .get(offset..offset + 64)
        .ok_or(QuoteError::Truncated(quote.len()))?;
    let mut report_data = [0u8; 64];
    report_data.copy_from_slice(rd);
    Ok(QuotedReport {
        report_data,
        simulated_compose_hash: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_v5_and_simulated_layouts() {
        let rd = [7u8; 64];
        let mut v4 = vec![0u8; 48 + 584];
        v4[0] = 4;
        v4[568..632].copy_from_slice(&rd);
        assert_eq!(report_data(&v4, false).map(|q| q.report_data), Ok(rd));
        let mut v5 = vec![0u8; 48 + 6 + 584];
        v5[0] = 5;
        v5[574..638].copy_from_slice(&rd);
        assert_eq!(report_data(&v5, false).map(|q| q.report_data), Ok(rd));
        assert_eq!(
            report_data(&v4[..600], false),
            Err(QuoteError::Truncated(600))
        );
        assert_eq!(report_data(&[], false), Err(QuoteError::Empty));
        assert_eq!(
            report_data(&[3, 0, 0], false),
            Err(QuoteError::UnsupportedVersion(3))
        );
        let mut sim = SIMULATED_QUOTE_MAGIC.to_vec();
        sim.extend_from_slice(&[0u8; 20]);
        sim.extend_from_slice(B256::repeat_byte(9).as_slice());
        sim.extend_from_slice(&rd);
        assert_eq!(report_data(&sim, false), Err(QuoteError::SimulatedRefused));
        let q = report_data(&sim, true);
        assert_eq!(
            q,
            Ok(QuotedReport {
                report_data: rd,
                simulated_compose_hash: Some(B256::repeat_byte(9))
            })
        );
        assert_eq!(
            report_data(&sim[..sim.len() - 1], true),
            Err(QuoteError::BadSimulated)
        );
    }
}
