//! Verifying a TDX quote against Intel's DCAP collateral with Phala's `dcap-qvl` (DESIGN §9.2).
//!
//! [`crate::quote`] reads what a quote claims; this module decides whether Intel vouches for it:
//! the quote's signature chain up to Intel's root CA, the collateral's own signatures and
//! validity window at `now`, and the platform's TCB status against a policy. Collateral (TCB
//! info, QE identity, CRLs) is signed by Intel, so where it came from does not matter — only that
//! it verifies and is current. devtee's quotes never pass: no quoting enclave signed them.

use crate::quote::QuotedReport;
use crate::tdx::TdxQuote;

/// Intel's DCAP collateral for one quote (TCB info, QE identity, CRLs, issuer chains), in
/// `dcap-qvl`'s JSON form.
pub type Collateral = dcap_qvl::QuoteCollateralV3;

/// TCB statuses a quote may have and still be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbPolicy {
    pub accept: Vec<String>,
}

/// Statuses [`TcbPolicy::default`] accepts: a platform that is up to date, or whose remaining
/// advisories are mitigated in software (what current TDX hosts commonly report).
pub const DEFAULT_ACCEPTED_STATUSES: &[&str] = &["UpToDate", "SWHardeningNeeded"];
impl Default for TcbPolicy {
    fn default() -> Self {
        Self {
            accept: DEFAULT_ACCEPTED_STATUSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl TcbPolicy {
    /// A policy from a comma-separated list (`UpToDate,SWHardeningNeeded`) of the statuses
    /// `dcap-qvl` defines ([`dcap_qvl::TcbStatus`]). `Revoked` is never accepted.
    pub fn parse(list: &str) -> Result<Self, DcapError> {
        let mut accept = Vec::new();
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let status: Option<dcap_qvl::TcbStatus> =
                serde_json::from_value(serde_json::Value::String(s.to_string())).ok();
            if status.is_none_or(|st| st == dcap_qvl::TcbStatus::Revoked) {
                return Err(DcapError::BadPolicy(s.to_string()));
            }
            if !accept.iter().any(|a| a == s) {
                accept.push(s.to_string());
            }
        }
        if accept.is_empty() {
            return Err(DcapError::BadPolicy(list.to_string()));
        }
        Ok(Self { accept })
    }
}

/// A quote Intel vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    pub report: QuotedReport,
    pub tcb_status: String,
    pub advisory_ids: Vec<String>,
}

/// Why a quote is not accepted as genuine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    #[error("simulated devtee quote: no Intel quoting enclave signed it")]
    Simulated,
    #[error("the quote does not verify against Intel's collateral: {0}")]
    Invalid(String),
    #[error("TCB status {status} is not accepted (accepted: {accepted})")]
    TcbStatus { status: String, accepted: String },
    #[error("the verified report is not a TD report (an SGX quote?)")]
    NotTd,
    #[error("collateral is not dcap-qvl's JSON: {0}")]
    Collateral(String),
    #[error(
        "TCB status {0:?} is not one a policy may accept (a status Intel defines, such as UpToDate or SWHardeningNeeded; never Revoked)"
    )]
    BadPolicy(String),
}

/// Parses collateral JSON (as `dcap-qvl` and PCCS-fetching tools write it).
pub fn parse_collateral(json: &[u8]) -> Result<Collateral, DcapError> {
    serde_json::from_slice(json).map_err(|e| DcapError::Collateral(e.to_string()))
}

/// Verifies `quote` with `collateral` at `now_secs` (unix seconds) and applies `policy`. Debug
/// TDs are refused (by `dcap-qvl`).
pub fn verify(
    quote: &[u8],
    collateral: &Collateral,
    now_secs: u64,
    policy: &TcbPolicy,
) -> Result<VerifiedQuote, DcapError> {
    if crate::tdx::is_simulated(quote) {
        return Err(DcapError::Simulated);
    }
    let v = dcap_qvl::verify::verify(quote, collateral, now_secs)
        .map_err(|e| DcapError::Invalid(format!("{e:#}")))?;
    if !policy.accept.contains(&v.status) {
        return Err(DcapError::TcbStatus {
            status: v.status,
            accepted: policy.accept.join(","),
        });
    }
    let td = v.report.as_td10().ok_or(DcapError::NotTd)?;
    // Our parser must read the same fields from the same bytes dcap-qvl just verified.
    let ours = TdxQuote::parse(quote).map_err(|e| DcapError::Invalid(e.to_string()))?;
    if ours.report.report_data != td.report_data || ours.report.rtmr[3] != td.rt_mr3 {
        return Err(DcapError::Invalid(
            "quote layout disagrees with the verified report".into(),
        ));
    }
    Ok(VerifiedQuote {
        report: QuotedReport {
            report_data: td.report_data,
            simulated: false,
            rtmr3: td.rt_mr3,
        },
        tcb_status: v.status,
        advisory_ids: v.advisory_ids,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dcap-qvl");
        std::fs::read(dir.join(name)).unwrap()
    }

    /// Inside both samples' validity windows (testdata/dcap-qvl/README.md).
    const V4_NOW: u64 = 1_750_332_747;
    const V5_NOW: u64 = 1_791_421_786;

    #[test]
    fn intels_samples_verify_up_to_date_and_agree_with_our_parser() {
        let policy = TcbPolicy::default();
        for (quote, coll, now) in [
            ("tdx_quote", "tdx_quote_collateral.json", V4_NOW),
            (
                "tdx_quote_td15ex",
                "tdx_quote_td15ex_collateral.json",
                V5_NOW,
            ),
        ] {
            let q = sample(quote);
            let c = parse_collateral(&sample(coll)).unwrap();
            let v = verify(&q, &c, now, &policy).unwrap();
            assert_eq!(v.tcb_status, "UpToDate", "{quote}");
            let ours = crate::quote::report_data(&q, false).unwrap();
            assert_eq!(v.report, ours, "{quote}");
        }
        // A known value of the v4 sample (its report_data starts 9a9d48e7).
        let q = sample("tdx_quote");
        let c = parse_collateral(&sample("tdx_quote_collateral.json")).unwrap();
        let v = verify(&q, &c, V4_NOW, &policy).unwrap();
        assert_eq!(&v.report.report_data[..4], &[0x9a, 0x9d, 0x48, 0xe7]);
    }

    #[test]
    fn tampering_expiry_policy_and_devtee_are_refused() {
        let q = sample("tdx_quote");
        let c = parse_collateral(&sample("tdx_quote_collateral.json")).unwrap();
        let policy = TcbPolicy::default();

        // One flipped bit anywhere in the signed header or body.
        for at in [0x10usize, 184, 520, 600] {
            let mut bad = q.clone();
            bad[at] ^= 1;
            assert!(
                matches!(
                    verify(&bad, &c, V4_NOW, &policy),
                    Err(DcapError::Invalid(_))
                ),
                "flip at {at}"
            );
        }
        // Before the collateral was issued, and after it expired.
        assert!(matches!(
            verify(&q, &c, 1_750_329_146, &policy),
            Err(DcapError::Invalid(_))
        ));
        assert!(matches!(
            verify(&q, &c, 1_752_919_235, &policy),
            Err(DcapError::Invalid(_))
        ));
        // Collateral of another platform does not verify this quote.
        let other = parse_collateral(&sample("tdx_quote_td15ex_collateral.json")).unwrap();
        assert!(verify(&q, &other, V4_NOW, &policy).is_err());
        // A policy that does not accept UpToDate.
        let strict = TcbPolicy::parse("SWHardeningNeeded").unwrap();
        assert!(matches!(
            verify(&q, &c, V4_NOW, &strict),
            Err(DcapError::TcbStatus { .. })
        ));
        // devtee's quotes: refused by us, and by dcap-qvl itself when asked directly.
        let (sim, _) = crate::devtee::simulated_attestation(
            alloy_primitives::Address::ZERO,
            Default::default(),
            [0; 64],
        );
        assert_eq!(verify(&sim, &c, V4_NOW, &policy), Err(DcapError::Simulated));
        assert!(dcap_qvl::verify::verify(&sim, &c, V4_NOW).is_err());
    }

    #[test]
    fn policies_parse_with_clear_errors() {
        assert_eq!(
            TcbPolicy::parse(" UpToDate , SWHardeningNeeded,UpToDate").unwrap(),
            TcbPolicy::default()
        );
        assert!(matches!(
            TcbPolicy::parse("Revoked"),
            Err(DcapError::BadPolicy(_))
        ));
        assert!(matches!(
            TcbPolicy::parse("uptodate"),
            Err(DcapError::BadPolicy(_))
        ));
        assert!(matches!(
            TcbPolicy::parse(" , "),
            Err(DcapError::BadPolicy(_))
        ));
        assert!(matches!(
            parse_collateral(b"{}"),
            Err(DcapError::Collateral(_))
        ));
    }
}
