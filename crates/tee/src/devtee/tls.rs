//! devtee's `/GetTlsKey`: a fresh P-256 key per call and a certificate for it issued by the
//! app's CA (a per-instance CA here; dstack's KMS issues the real one). With `usage_ra_tls` the
//! leaf carries a quote binding its public key, under dstack's RA-TLS extension OID.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha512};

use super::methods::MethodError;
use crate::wire::{GetTlsKeyRequest, GetTlsKeyResponse};

/// dstack's RA-TLS certificate extension carrying the TDX quote.
pub const RA_TLS_QUOTE_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 62397, 1, 1];
/// Default validity of a leaf when the caller gives none.
const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most alt names one certificate takes.
const MAX_ALT_NAMES: usize = 64;

/// The app CA of one devtee instance.
pub struct AppCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    pem: String,
}

impl AppCa {
    pub fn generate(app_name: &str) -> Result<Self, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("{app_name} app CA (attestmesh devtee, simulated)"),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        Ok(Self { key, cert, pem })
    }

    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// Issues a leaf; `quote_for` makes the RA-TLS quote over the given report data.
    pub fn issue(
        &self,
        req: &GetTlsKeyRequest,
        quote_for: impl FnOnce([u8; 64]) -> Vec<u8>,
    ) -> Result<GetTlsKeyResponse, MethodError> {
        let internal = |e: rcgen::Error| MethodError::Internal(format!("issuing certificate: {e}"));
        if req.alt_names.len() > MAX_ALT_NAMES {
            return Err(MethodError::BadRequest(format!(
                "{} alt names, at most {MAX_ALT_NAMES}",
                req.alt_names.len()
            )));
        }
        let mut params = rcgen::CertificateParams::new(req.alt_names.clone())
            .map_err(|e| MethodError::BadRequest(format!("alt_names: {e}")))?;
        if !req.subject.is_empty() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, req.subject.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let not_before = req.not_before.map_or(now, Duration::from_secs);
        let not_after = req
            .not_after
            .map_or(not_before + DEFAULT_VALIDITY, Duration::from_secs);
        if not_after <= not_before {
            return Err(MethodError::BadRequest(
                "not_after must be later than not_before".into(),
            ));
        }
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        let mut usages = Vec::new();
        if req.usage_server_auth {
            usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        }
        if req.usage_client_auth {
            usages.push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.extended_key_usages = usages;
        let key = rcgen::KeyPair::generate().map_err(internal)?;
        if req.usage_ra_tls {
            // report_data = SHA-512("ratls-cert:" ‖ SubjectPublicKeyInfo DER).
            let mut h = Sha512::new();
            h.update(b"ratls-cert:");
            h.update(key.public_key_der());
            let report: [u8; 64] = h.finalize().into();
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    RA_TLS_QUOTE_OID,
                    der_octet_string(&quote_for(report)),
                ));
        }
        let leaf = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(internal)?;
        Ok(GetTlsKeyResponse {
            key: key.serialize_pem(),
            certificate_chain: vec![leaf.pem(), self.pem.clone()],
        })
    }
}

fn to_time(d: Duration) -> Result<time::OffsetDateTime, MethodError> {
    let secs = i64::try_from(d.as_secs())
        .map_err(|_| MethodError::BadRequest("time out of range".into()))?;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| MethodError::BadRequest(format!("time out of range: {e}")))
}

/// DER OCTET STRING around `bytes` (the extension's content).
fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    let n = bytes.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}
