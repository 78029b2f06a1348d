//! Fetching a quote's DCAP collateral from a PCCS (Intel's v4 certification API), as dstack's
//! verifier does, over our own HTTPS stack (rustls + webpki roots) rather than `dcap-qvl`'s
//! reqwest-based client.
//!
//! The collateral is signed by Intel, so a PCCS is trusted for availability only: whatever it
//! serves must still verify in [`crate::dcap::verify`]. Quotes must carry their PCK certificate
//! chain (certification data type 5, what TDX quoting enclaves on dstack hosts produce).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::dcap::Collateral;

/// Phala's public PCCS, dstack's default.
pub const PHALA_PCCS_URL: &str = "https://pccs.phala.network";
/// Per-request deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer accepted (TCB info is a few KiB, CRLs under 1 KiB).
const MAX_BODY: usize = 1 << 20;
/// Certification data type of a PCK certificate chain.
const PCK_CERT_CHAIN: u16 = 5;

/// Why collateral could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum PccsError {
    #[error("PCCS URL {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error("quote: {0}")]
    Quote(String),
    #[error(
        "the quote carries certification data type {0}, not a PCK certificate chain (5); fetching the PCK certificate by encrypted PPID is not supported"
    )]
    NoPckChain(u16),
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: missing header {header}")]
    MissingHeader { url: String, header: &'static str },
    #[error("GET {url}: {reason}")]
    BadBody { url: String, reason: String },
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A PCCS client.
#[derive(Clone)]
pub struct PccsClient {
    base: String,
    http: Client<Connector, Empty<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for PccsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PccsClient")
            .field("base", &self.base)
            .finish()
    }
}

struct Answer {
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl PccsClient {
    /// A client of the PCCS at `base` (e.g. [`PHALA_PCCS_URL`]; `http://` for local tests).
    pub fn new(base: &str) -> Result<Self, PccsError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://"))
            || base.parse::<hyper::Uri>().is_err()
        {
            return Err(PccsError::BadUrl(base));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| PccsError::BadUrl(format!("{base}: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            base,
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn get(&self, url: String) -> Result<Answer, PccsError> {
        let http = |reason: String| PccsError::Http {
            url: url.clone(),
            reason,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| http(format!("{e}")))?;
        let resp = tokio::time::timeout(self.timeout, self.http.get(uri))
            .await
            .map_err(|_| http(format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| http(format!("{e}")))?;
        if !resp.status().is_success() {
            return Err(PccsError::Status {
                url,
                status: resp.status().as_u16(),
            });
        }
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(self.timeout, Limited::new(body, MAX_BODY).collect())
            .await
            .map_err(|_| http("body timed out".into()))?
            .map_err(|e| http(format!("reading body: {e}")))?
            .to_bytes();
        Ok(Answer {
            headers: parts.headers,
            body,
        })
    }

    /// The collateral that verifies `quote` (TDX), with the quote's PCK chain attached.
    pub async fn fetch(&self, quote: &[u8]) -> Result<Collateral, PccsError> {
        let parsed =
            dcap_qvl::quote::Quote::parse(quote).map_err(|e| PccsError::Quote(format!("{e:#}")))?;
        if parsed.inner_cert_type() != PCK_CERT_CHAIN {
            return Err(PccsError::NoPckChain(parsed.inner_cert_type()));
        }
        let pck_chain = String::from_utf8_lossy(parsed.inner_cert_data()).into_owned();
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
            .map_err(|e| PccsError::Quote(format!("FMSPC: {e:#}")))?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| PccsError::Quote(format!("PCK CA: {e:#}")))?
            .as_id_str();
        let fmspc = alloy_primitives::hex::encode_upper(fmspc);
        let tee = if parsed.header.is_sgx() { "sgx" } else { "tdx" };
        let v4 = |tee: &str, path: &str| format!("{}/{tee}/certification/v4/{path}", self.base);

        let url = v4("sgx", &format!("pckcrl?ca={ca}&encoding=der"));
        let crl = self.get(url.clone()).await?;
        let pck_crl_issuer_chain = header(&crl, &url, "SGX-PCK-CRL-Issuer-Chain")?;

        let url = v4(tee, &format!("tcb?fmspc={fmspc}&update=standard"));
        let tcb = self.get(url.clone()).await?;
        let tcb_info_issuer_chain = header(&tcb, &url, "TCB-Info-Issuer-Chain")
            .or_else(|_| header(&tcb, &url, "SGX-TCB-Info-Issuer-Chain"))?;
        let (tcb_info, tcb_info_signature) = signed_json(&tcb.body, &url, "tcbInfo")?;

        let url = v4(tee, "qe/identity?update=standard");
        let qe = self.get(url.clone()).await?;
        let qe_identity_issuer_chain = header(&qe, &url, "SGX-Enclave-Identity-Issuer-Chain")?;
        let (qe_identity, qe_identity_signature) = signed_json(&qe.body, &url, "enclaveIdentity")?;

        // A PCCS serves the root CA CRL hex-encoded.
        let url = v4("sgx", "rootcacrl");
        let root = self.get(url.clone()).await?;
        let text = std::str::from_utf8(&root.body).map_err(|e| PccsError::BadBody {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let root_ca_crl =
            alloy_primitives::hex::decode(text.trim()).map_err(|e| PccsError::BadBody {
                url: url.clone(),
                reason: format!("root CA CRL is not hex: {e}"),
            })?;

        Ok(Collateral {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl: crl.body.to_vec(),
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: Some(pck_chain),
        })
    }
}

/// A URL-encoded PEM chain header, decoded.
fn header(a: &Answer, url: &str, name: &'static str) -> Result<String, PccsError> {
    let missing = || PccsError::MissingHeader {
        url: url.to_string(),
        header: name,
    };
    let raw = a.headers.get(name).ok_or_else(missing)?;
    let raw = raw.to_str().map_err(|_| missing())?;
    percent_decode(raw).ok_or_else(|| PccsError::BadBody {
        url: url.to_string(),
        reason: format!("header {name} is not URL-encoded UTF-8"),
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `{"<field>": {...}, "signature": "<hex>"}` → (the field's exact JSON text, signature bytes):
/// Intel signs the bytes as served, so they are kept verbatim.
fn signed_json(body: &[u8], url: &str, field: &str) -> Result<(String, Vec<u8>), PccsError> {
    let bad = |reason: String| PccsError::BadBody {
        url: url.to_string(),
        reason,
    };
    let doc: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?;
    let value = doc
        .get(field)
        .ok_or_else(|| bad(format!("no {field}")))?
        .get()
        .to_string();
    let sig: String = doc
        .get("signature")
        .ok_or_else(|| bad("no signature".into()))
        .and_then(|s| serde_json::from_str(s.get()).map_err(|e| bad(format!("signature: {e}"))))?;
    let sig = alloy_primitives::hex::decode(sig).map_err(|e| bad(format!("signature: {e}")))?;
    Ok((value, sig))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_signed_bodies_decode() {
        assert_eq!(percent_decode("a%20b%0A-").as_deref(), Some("a b\n-"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        let (v, s) = signed_json(
            br#"{"tcbInfo":{"b":1,"a":[2]},"signature":"0aff"}"#,
            "u",
            "tcbInfo",
        )
        .unwrap();
        assert_eq!(v, r#"{"b":1,"a":[2]}"#, "kept byte for byte");
        assert_eq!(s, vec![0x0a, 0xff]);
        assert!(signed_json(b"{}", "u", "tcbInfo").is_err());
        assert!(signed_json(br#"{"tcbInfo":{},"signature":"zz"}"#, "u", "tcbInfo").is_err());
        assert!(PccsClient::new("ftp://x").is_err());
    }
}
