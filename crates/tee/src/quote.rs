//! Reading what a quote attests without verifying its signature chain: the 64-byte report_data,
//! whether devtee made it, and the compose hash its event log proves against RTMR3.
//!
//! Callers that only need to know *which key* and *which code* a quote names (the agent checking
//! an Indexer's attestation, DESIGN §9.2) use this; whether Intel vouches for the quote is a
//! separate check. Keeping the TDX layout here keeps the method details inside the TEE crate
//! (§4.4).

use alloy_primitives::B256;

use crate::eventlog::{self, EventLogError};
use crate::tdx::{Measurement, TdxError, TdxQuote};

/// What a quote attests, as far as this module reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedReport {
    pub report_data: [u8; 64],
    /// devtee made it (it attests nothing).
    pub simulated: bool,
    /// RTMR3: dstack's runtime events, the compose hash among them.
    pub rtmr3: Measurement,
}

/// Why a quote could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("simulated devtee quote refused (simulated quotes are not allowed)")]
    SimulatedRefused,
    #[error(transparent)]
    Tdx(#[from] TdxError),
    #[error("event log: {0}")]
    EventLog(#[from] EventLogError),
}

/// The report of a TDX v4/v5 quote; a devtee quote only when `allow_simulated`.
pub fn report_data(quote: &[u8], allow_simulated: bool) -> Result<QuotedReport, QuoteError> {
    let q = TdxQuote::parse(quote)?;
    if q.is_simulated() && !allow_simulated {
        return Err(QuoteError::SimulatedRefused);
    }
    Ok(QuotedReport {
        report_data: q.report.report_data,
        simulated: q.is_simulated(),
        rtmr3: q.report.rtmr[3],
    })
}

/// The compose hash `event_log` (the agent's JSON) carries, once it replays to the quote's RTMR3.
pub fn compose_hash(report: &QuotedReport, event_log: &str) -> Result<B256, QuoteError> {
    let entries = eventlog::parse(event_log)?;
    Ok(eventlog::compose_hash(&entries, &report.rtmr3)?)
}

pub use crate::tdx::is_simulated;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::devtee::DevteeConfig;

    #[tokio::test]
    async fn devtee_quotes_are_read_refused_unless_allowed_and_prove_their_compose_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DevteeConfig::dev(dir.path().join("d.sock"), alloy_primitives::Address::ZERO);
        let compose = cfg.compose_hash();
        let d = crate::devtee::Devtee::bind(cfg).await.unwrap();
        let client = crate::GuestAgentClient::new(d.socket());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(d.run(async move {
            let _ = stopped.await;
        }));
        let resp = client.get_quote(&[5u8; 64]).await.unwrap();
        let quote = crate::hexfmt::decode("quote", &resp.quote).unwrap();
        assert!(is_simulated(&quote));
        assert_eq!(
            report_data(&quote, false),
            Err(QuoteError::SimulatedRefused)
        );
        let r = report_data(&quote, true).unwrap();
        assert_eq!(r.report_data, [5u8; 64]);
        assert!(r.simulated);
        assert_eq!(compose_hash(&r, &resp.event_log), Ok(compose));
        // Another quote's RTMR3 does not accept this log.
        let other = QuotedReport {
            rtmr3: [0; 48],
            ..r
        };
        assert_eq!(
            compose_hash(&other, &resp.event_log),
            Err(QuoteError::EventLog(EventLogError::Rtmr3Mismatch))
        );
        assert!(matches!(
            report_data(&[], true),
            Err(QuoteError::Tdx(TdxError::Empty))
        ));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
