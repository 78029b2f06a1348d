//! The Intel TDX quote layout (versions 4 and 5): header, TD report body, signature data.
//!
//! Parsing only: which measurements and which report_data a quote carries. Whether Intel's
//! signature chain vouches for them is [`crate::verify`]'s job. devtee writes its simulated quotes
//! in the same layout (so every parser reads them) and marks them in the header's QE vendor id,
//! a field every DCAP verifier checks against Intel's, so no real verifier can accept one.

/// Header length (v4 and v5).
pub const HEADER_LEN: usize = 48;
/// TDX 1.0 TD report body length (v4, and v5 body type 2).
pub const TD_REPORT10_LEN: usize = 584;
/// TDX 1.5 TD report body length (v5 body type 3): 1.0 plus `tee_tcb_svn2` and `mr_servicetd`.
pub const TD_REPORT15_LEN: usize = TD_REPORT10_LEN + 16 + 48;
/// Attestation key type of every TDX quote: ECDSA over P-256.
pub const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// TEE type of TDX (SGX is 0).
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Intel's QE vendor id, which DCAP verifiers require.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// devtee's QE vendor id: marks a simulated quote; DCAP verifiers reject any vendor but Intel.
pub const DEVTEE_QE_VENDOR_ID: [u8; 16] = *b"ATTESTMESH-DEVTE";

/// A 48-byte measurement register (SHA-384).
pub type Measurement = [u8; 48];

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// The TD report body fields every TDX version has (TDX 1.0 layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: Measurement,
    pub mr_signer_seam: Measurement,
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: Measurement,
    pub mr_config_id: Measurement,
    pub mr_owner: Measurement,
    pub mr_owner_config: Measurement,
    pub rtmr: [Measurement; 4],
    pub report_data: [u8; 64],
}

/// A parsed quote: header, TD report, and the signature data left unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxQuote {
    pub header: QuoteHeader,
    pub report: TdReport,
    pub signature_data: Vec<u8>,
}

/// Why bytes are not a TDX quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxError {
    #[error("empty quote")]
    Empty,
    #[error("unsupported quote version {0} (TDX quotes are versions 4 and 5)")]
    UnsupportedVersion(u16),
    #[error("not a TDX quote: tee_type {0:#x} (TDX is 0x81)")]
    NotTdx(u32),
    #[error(
        "quote v5 body type {body_type} of {size} bytes is not a TD report (2: TDX 1.0, 584 bytes; 3: TDX 1.5, 648; 4: TDX 1.5 ex, at least 648)"
    )]
    UnsupportedBody { body_type: u16, size: usize },
    #[error("quote of {0} bytes is truncated")]
    Truncated(usize),
    #[error("signature data length {declared} exceeds the {available} bytes that follow")]
    BadSignatureLength { declared: u32, available: usize },
}

/// Sequential little-endian reader over a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TdxError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(TdxError::Truncated(self.bytes.len()))?;
        let s = self
            .bytes
            .get(self.at..end)
            .ok_or(TdxError::Truncated(self.bytes.len()))?;
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], TdxError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, TdxError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, TdxError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

impl TdxQuote {
    /// Parses a v4 or v5 TDX quote. Trailing bytes after the declared signature data are
    /// tolerated (the agent may pad), a signature length beyond the end is not.
    pub fn parse(bytes: &[u8]) -> Result<Self, TdxError> {
        if bytes.is_empty() {
            return Err(TdxError::Empty);
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.u16()?;
        if version != 4 && version != 5 {
            return Err(TdxError::UnsupportedVersion(version));
        }
        let header = QuoteHeader {
            version,
            att_key_type: r.u16()?,
            tee_type: r.u32()?,
            qe_svn: r.u16()?,
            pce_svn: r.u16()?,
            qe_vendor_id: r.array()?,
            user_data: r.array()?,
        };
        let body_len = match header.version {
            4 => TD_REPORT10_LEN,
            5 => {
                let body_type = r.u16()?;
                let size = usize::try_from(r.u32()?).unwrap_or(usize::MAX);
                // 2: TDX 1.0, 3: TDX 1.5, 4: TDX 1.5 "ex" (1.5 plus service-TD fields, whose
                // length the descriptor gives). All start with the 1.0 fields read below.
                match (body_type, size) {
                    (2, TD_REPORT10_LEN) => TD_REPORT10_LEN,
                    (3, TD_REPORT15_LEN) => TD_REPORT15_LEN,
                    (4, n) if n >= TD_REPORT15_LEN => n,
                    (t, n) => {
                        return Err(TdxError::UnsupportedBody {
                            body_type: t,
                            size: n,
                        });
                    }
                }
            }
            v => return Err(TdxError::UnsupportedVersion(v)),
        };
        if header.tee_type != TEE_TYPE_TDX {
            return Err(TdxError::NotTdx(header.tee_type));
        }
        let body_start = r.at;
        let report = TdReport {
            tee_tcb_svn: r.array()?,
            mr_seam: r.array()?,
            mr_signer_seam: r.array()?,
            seam_attributes: r.array()?,
            td_attributes: r.array()?,
            xfam: r.array()?,
            mr_td: r.array()?,
            mr_config_id: r.array()?,
            mr_owner: r.array()?,
            mr_owner_config: r.array()?,
            rtmr: [r.array()?, r.array()?, r.array()?, r.array()?],
            report_data: r.array()?,
        };
        // Skip the TDX 1.5 extras (and make sure they are there).
        r.take(body_len - (r.at - body_start))?;
        let declared = r.u32()?;
        let available = bytes.len() - r.at;
        let sig_len = usize::try_from(declared)
            .ok()
            .filter(|&n| n <= available)
            .ok_or(TdxError::BadSignatureLength {
                declared,
                available,
            })?;
        let signature_data = r.take(sig_len)?.to_vec();
        Ok(Self {
            header,
            report,
            signature_data,
        })
    }

    /// The v4 encoding of this quote (what devtee serves).
    pub fn encode_v4(&self) -> Vec<u8> {
        let h = &self.header;
        let b = &self.report;
        let mut q =
            Vec::with_capacity(HEADER_LEN + TD_REPORT10_LEN + 4 + self.signature_data.len());
        q.extend_from_slice(&4u16.to_le_bytes());
        q.extend_from_slice(&h.att_key_type.to_le_bytes());
        q.extend_from_slice(&h.tee_type.to_le_bytes());
        q.extend_from_slice(&h.qe_svn.to_le_bytes());
        q.extend_from_slice(&h.pce_svn.to_le_bytes());
        q.extend_from_slice(&h.qe_vendor_id);
        q.extend_from_slice(&h.user_data);
        for part in [
            &b.tee_tcb_svn[..],
            &b.mr_seam,
            &b.mr_signer_seam,
            &b.seam_attributes,
            &b.td_attributes,
            &b.xfam,
            &b.mr_td,
            &b.mr_config_id,
            &b.mr_owner,
            &b.mr_owner_config,
            &b.rtmr[0],
            &b.rtmr[1],
            &b.rtmr[2],
            &b.rtmr[3],
            &b.report_data,
        ] {
            q.extend_from_slice(part);
        }
        let sig_len = u32::try_from(self.signature_data.len()).unwrap_or(u32::MAX);
        q.extend_from_slice(&sig_len.to_le_bytes());
        q.extend_from_slice(&self.signature_data);
        q
    }

    /// Whether devtee made this quote (its QE vendor id), i.e. it attests nothing.
    pub fn is_simulated(&self) -> bool {
        self.header.qe_vendor_id == DEVTEE_QE_VENDOR_ID
    }
}

/// Whether `quote` is a devtee quote; false for anything that does not parse.
pub fn is_simulated(quote: &[u8]) -> bool {
    TdxQuote::parse(quote).is_ok_and(|q| q.is_simulated())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> TdxQuote {
        TdxQuote {
            header: QuoteHeader {
                version: 4,
                att_key_type: ATT_KEY_TYPE_ECDSA_P256,
                tee_type: TEE_TYPE_TDX,
                qe_svn: 1,
                pce_svn: 2,
                qe_vendor_id: INTEL_QE_VENDOR_ID,
                user_data: [3; 20],
            },
            report: TdReport {
                tee_tcb_svn: [1; 16],
                mr_seam: [2; 48],
                mr_signer_seam: [3; 48],
                seam_attributes: [4; 8],
                td_attributes: [5; 8],
                xfam: [6; 8],
                mr_td: [7; 48],
                mr_config_id: [8; 48],
                mr_owner: [9; 48],
                mr_owner_config: [10; 48],
                rtmr: [[11; 48], [12; 48], [13; 48], [14; 48]],
                report_data: [15; 64],
            },
            signature_data: vec![16; 10],
        }
    }

    #[test]
    fn v4_round_trips_at_the_published_offsets() {
        let q = sample();
        let bytes = q.encode_v4();
        assert_eq!(bytes.len(), 48 + 584 + 4 + 10);
        // Offsets of the published layout: mrtd 184, rtmr0 376, rtmr3 520, report_data 568.
        assert_eq!(&bytes[184..232], &[7; 48]);
        assert_eq!(&bytes[376..424], &[11; 48]);
        assert_eq!(&bytes[520..568], &[14; 48]);
        assert_eq!(&bytes[568..632], &[15; 64]);
        assert_eq!(&bytes[632..636], &10u32.to_le_bytes());
        assert_eq!(TdxQuote::parse(&bytes).unwrap(), q);
        assert!(!q.is_simulated());
    }

    #[test]
    fn v5_bodies_are_read_and_errors_named() {
        let v4 = sample().encode_v4();
        let mut v5 = v4[..48].to_vec();
        v5[0] = 5;
        v5.extend_from_slice(&3u16.to_le_bytes());
        v5.extend_from_slice(&(TD_REPORT15_LEN as u32).to_le_bytes());
        v5.extend_from_slice(&v4[48..632]);
        v5.extend_from_slice(&[0u8; 64]);
        v5.extend_from_slice(&v4[632..]);
        let q = TdxQuote::parse(&v5).unwrap();
        assert_eq!(q.report, sample().report);
        assert_eq!(q.signature_data, vec![16; 10]);

        assert_eq!(TdxQuote::parse(&[]), Err(TdxError::Empty));
        assert_eq!(
            TdxQuote::parse(&[3, 0, 0, 0]),
            Err(TdxError::UnsupportedVersion(3))
        );
        assert_eq!(TdxQuote::parse(&v4[..600]), Err(TdxError::Truncated(600)));
        let mut sgx = v4.clone();
        sgx[4] = 0;
        assert_eq!(TdxQuote::parse(&sgx), Err(TdxError::NotTdx(0)));
        let mut long = v4.clone();
        long[632..636].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(
            TdxQuote::parse(&long),
            Err(TdxError::BadSignatureLength {
                declared: 99,
                available: 10
            })
        );
        let mut body = v5.clone();
        body[48] = 9;
        assert_eq!(
            TdxQuote::parse(&body),
            Err(TdxError::UnsupportedBody {
                body_type: 9,
                size: TD_REPORT15_LEN
            })
        );
    }
}
