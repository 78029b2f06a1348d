//! devtee's measurements: the event log it keeps, the RTMRs that log replays to, and simulated
//! quotes in the TDX v4 layout that carry them.
//!
//! The log has the shape dstack's agent serves — boot events in RTMR0–2, dstack's runtime events
//! (`app-id`, `compose-hash`, `instance-id`, …) in RTMR3, then whatever the app emits — so
//! the SDKs' `replay_rtmrs` and our own [`crate::eventlog`] reproduce the quote's RTMRs. The quote
//! is marked simulated where every DCAP verifier looks first: the QE vendor id, a debug TD
//! attribute, and signature data no quoting enclave produced.

use alloy_primitives::{Address, B256};
use sha2::{Digest, Sha256, Sha384};

use crate::eventlog::{self, EventLogEntry};
use crate::tdx::{
    ATT_KEY_TYPE_ECDSA_P256, DEVTEE_QE_VENDOR_ID, Measurement, QuoteHeader, TEE_TYPE_TDX, TdReport,
    TdxQuote,
};

/// The header's user data of a devtee quote.
pub const SIMULATED_USER_DATA: [u8; 20] = *b"attestmesh-devtee-v1";
/// The signature data of a devtee quote: no quoting enclave signed it.
pub const SIMULATED_SIGNATURE: &[u8] =
    b"attestmesh devtee: simulated TDX quote, no TEE, not signed by any quoting enclave";
/// TD attributes of a devtee quote: the DEBUG bit, which production policies refuse.
pub const SIMULATED_TD_ATTRIBUTES: [u8; 8] = [1, 0, 0, 0, 0, 0, 0, 0];
/// `event_type` devtee gives its boot events (EV_EFI_PLATFORM_FIRMWARE_BLOB2's value).
const BOOT_EVENT_TYPE: u32 = 0x8000_000a;

fn sha384_of(label: &str) -> Measurement {
    Sha384::digest(label.as_bytes()).into()
}

fn sha256_of(label: &str) -> B256 {
    B256::from_slice(&Sha256::digest(label.as_bytes()))
}

/// MRTD of every devtee "TD".
pub fn mr_td() -> Measurement {
    sha384_of("attestmesh.devtee.mrtd.v1")
}

/// The OS image hash devtee reports.
pub fn os_image_hash() -> B256 {
    sha256_of("attestmesh.devtee.os-image.v1")
}

/// The device id devtee reports (one simulated machine).
pub fn device_id() -> B256 {
    sha256_of("attestmesh.devtee.device.v1")
}

/// What one devtee instance has measured, in order.
#[derive(Debug, Clone)]
pub struct Measured {
    log: Vec<EventLogEntry>,
}

impl Measured {
    /// The log of a freshly booted CVM running `compose_hash` as `app_id`.
    pub fn boot(
        app_id: Address,
        compose_hash: B256,
        instance_id: Address,
        key_provider: &str,
    ) -> Self {
        let mut log: Vec<EventLogEntry> = (0..3)
            .map(|imr| {
                let label = format!("attestmesh.devtee.boot.rtmr{imr}");
                EventLogEntry {
                    imr,
                    event_type: BOOT_EVENT_TYPE,
                    digest: crate::hexfmt::encode(sha384_of(&label)),
                    event: String::new(),
                    event_payload: crate::hexfmt::encode(label.as_bytes()),
                }
            })
            .collect();
        for (name, payload) in [
            ("system-preparing", &[][..]),
            ("app-id", app_id.as_slice()),
            (eventlog::COMPOSE_HASH_EVENT, compose_hash.as_slice()),
            ("instance-id", instance_id.as_slice()),
            ("boot-mr-done", &[]),
            ("key-provider", key_provider.as_bytes()),
            ("system-ready", &[]),
        ] {
            log.push(eventlog::runtime_event(name, payload));
        }
        Self { log }
    }

    /// Records an app event (`/EmitEvent`): extended into RTMR3 like dstack's.
    pub fn emit(&mut self, event: &str, payload: &[u8]) {
        self.log.push(eventlog::runtime_event(event, payload));
    }

    pub fn log(&self) -> &[EventLogEntry] {
        &self.log
    }

    /// The four RTMRs the log replays to.
    pub fn rtmrs(&self) -> [Measurement; 4] {
        // Every entry was written by this module with a valid digest, so replay cannot fail;
        // an all-zero answer would only make quotes disagree with the log, never crash.
        eventlog::replay(&self.log).unwrap_or([[0; 48]; 4])
    }

    /// `mr_aggregated` as devtee reports it: SHA-256 over MRTD and the four RTMRs.
    pub fn mr_aggregated(&self) -> B256 {
        let mut h = Sha256::new();
        h.update(mr_td());
        for r in self.rtmrs() {
            h.update(r);
        }
        B256::from_slice(&h.finalize())
    }

    /// A simulated v4 quote over `report_data` with the current RTMRs.
    pub fn quote(&self, report_data: [u8; 64]) -> Vec<u8> {
        TdxQuote {
            header: QuoteHeader {
                version: 4,
                att_key_type: ATT_KEY_TYPE_ECDSA_P256,
                tee_type: TEE_TYPE_TDX,
                qe_svn: 0,
                pce_svn: 0,
                qe_vendor_id: DEVTEE_QE_VENDOR_ID,
                user_data: SIMULATED_USER_DATA,
            },
            report: TdReport {
                tee_tcb_svn: [0; 16],
                mr_seam: sha384_of("attestmesh.devtee.mrseam.v1"),
                mr_signer_seam: [0; 48],
                seam_attributes: [0; 8],
                td_attributes: SIMULATED_TD_ATTRIBUTES,
                xfam: [0; 8],
                mr_td: mr_td(),
                mr_config_id: [0; 48],
                mr_owner: [0; 48],
                mr_owner_config: [0; 48],
                rtmr: self.rtmrs(),
                report_data,
            },
            signature_data: SIMULATED_SIGNATURE.to_vec(),
        }
        .encode_v4()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quotes_carry_the_rtmrs_the_log_replays_to_and_the_compose_hash() {
        let compose = B256::repeat_byte(4);
        let mut m = Measured::boot(
            Address::repeat_byte(1),
            compose,
            Address::repeat_byte(2),
            "{}",
        );
        let q = TdxQuote::parse(&m.quote([9; 64])).unwrap();
        assert!(q.is_simulated());
        assert_eq!(q.report.report_data, [9; 64]);
        assert_eq!(q.report.rtmr, eventlog::replay(m.log()).unwrap());
        assert_eq!(
            eventlog::compose_hash(m.log(), &q.report.rtmr[3]),
            Ok(compose)
        );

        let before = q.report.rtmr[3];
        m.emit("my-app-event", b"hello");
        let q2 = TdxQuote::parse(&m.quote([0; 64])).unwrap();
        assert_ne!(q2.report.rtmr[3], before);
        assert_eq!(q2.report.rtmr[..3], q.report.rtmr[..3]);
        assert_eq!(
            eventlog::compose_hash(m.log(), &q2.report.rtmr[3]),
            Ok(compose)
        );
    }
}
