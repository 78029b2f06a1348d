//! JSON bodies of the dstack guest-agent API (DESIGN §4.1), with the field names of the real
//! agent so production works unchanged. Bytes travel as hex strings.

use serde::{Deserialize, Serialize};

/// `POST /GetKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyRequest {
    pub path: String,
    #[serde(default)]
    pub purpose: String,
    /// `secp256k1` (the agent's default) or `ed25519`.
    #[serde(default)]
    pub algorithm: String,
}

/// `GetKey` answer: the key (hex) and `[app_sig, kms_sig]` (hex, 65 bytes each, v ∈ {0,1}).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyResponse {
    pub key: String,
    pub signature_chain: Vec<String>,
}

impl std::fmt::Debug for GetKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetKeyResponse")
            .field("key", &"<redacted>")
            .field("signature_chain", &self.signature_chain)
            .finish()
    }
}

impl Drop for GetKeyResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// `POST /GetQuote`: up to 64 bytes of report data, zero-padded by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetQuoteRequest {
    pub report_data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetQuoteResponse {
    pub quote: String,
    #[serde(default)]
    pub event_log: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<String>,
}

/// `/Info`. Only `app_id` is required; the rest is passed through for diagnostics and the
/// attestation document. `app_id` comes without `0x` from the real agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    pub app_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub app_name: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub mr_aggregated: String,
    #[serde(default)]
    pub os_image_hash: String,
    #[serde(default)]
    pub compose_hash: String,
    #[serde(default)]
    pub key_provider_info: String,
    /// A JSON document serialised as a string, as the real agent sends it.
    #[serde(default)]
    pub tcb_info: String,
    #[serde(default)]
    pub app_cert: String,
    #[serde(default)]
    pub vm_config: String,
    #[serde(default)]
    pub cloud_vendor: String,
    #[serde(default)]
    pub cloud_product: String,
}

/// Error body of the agent: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `tcb_info` inside `/Info` (serialised to a string there): the measurements, the event log
/// as an array, and the app-compose manifest whose SHA-256 is `compose_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcbInfo {
    pub mrtd: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    pub mr_aggregated: String,
    pub os_image_hash: String,
    pub compose_hash: String,
    pub device_id: String,
    pub event_log: Vec<crate::eventlog::EventLogEntry>,
    pub app_compose: String,
}

/// `POST /GetTlsKey`: a fresh P-256 key and a certificate for it, issued by the app's CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GetTlsKeyRequest {
    pub subject: String,
    pub alt_names: Vec<String>,
    pub usage_ra_tls: bool,
    pub usage_server_auth: bool,
    pub usage_client_auth: bool,
    /// Seconds since the epoch.
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
    pub with_app_info: bool,
}

/// `GetTlsKey` answer: the key as PKCS#8 PEM and the chain (leaf first) as PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetTlsKeyResponse {
    pub key: String,
    pub certificate_chain: Vec<String>,
}

impl std::fmt::Debug for GetTlsKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetTlsKeyResponse")
            .field("key", &"<redacted>")
            .field("certificate_chain", &self.certificate_chain)
            .finish()
    }
}

/// `POST /Sign`: `ed25519`, `secp256k1` (ECDSA over SHA-256 of `data`) or
/// `secp256k1_prehashed` (`data` is the 32-byte digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    pub algorithm: String,
    pub data: String,
}

/// `Sign` answer: the signature, `[signature, app_sig, kms_sig]` binding the signing key to the
/// app, and the public key (compressed SEC1 or raw ed25519), all hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    pub signature: String,
    pub signature_chain: Vec<String>,
    pub public_key: String,
}

/// `POST /Verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    pub algorithm: String,
    pub data: String,
    pub signature: String,
    pub public_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub valid: bool,
}

/// `POST /EmitEvent`: extends RTMR3 with a named event; the answer is JSON `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmitEventRequest {
    pub event: String,
    #[serde(default)]
    pub payload: String,
}

/// `POST /Attest`: like `GetQuote`, packed into one attestation blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestResponse {
    pub attestation: String,
}

/// `/Version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: String,
    pub rev: String,
}
