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
}

/// Error body of the agent: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
