//! The guest-agent methods devtee answers, as pure functions of its state and the request.
//!
//! Each returns the answer body or a [`MethodError`] (the real agent answers every error with
//! HTTP 400 and `{"error": …}`; devtee keeps 500 for its own failures).

use alloy_primitives::B256;
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::State;
use super::measured;
use crate::hexfmt;
use crate::kms;
use crate::wire::{
    AttestResponse, EmitEventRequest, GetKeyRequest, GetKeyResponse, GetQuoteRequest,
    GetQuoteResponse, InfoResponse, SignRequest, SignResponse, TcbInfo, VerifyRequest,
    VerifyResponse, VersionResponse,
};

/// The guest-agent release whose API devtee answers.
pub const EMULATED_VERSION: &str = "0.5.11";
/// Key path and purpose of `/Sign`'s key, as dstack derives it.
const SIGN_PATH: &str = "vms";
const SIGN_PURPOSE: &str = "signing";
/// Longest event name `/EmitEvent` takes.
const MAX_EVENT_NAME: usize = 256;

/// A request devtee refuses (400) or cannot serve (500).
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

fn bad(msg: impl Into<String>) -> MethodError {
    MethodError::BadRequest(msg.into())
}

/// The three algorithms of `/Sign` and `/Verify`, and `/GetKey`'s two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Ed25519,
    Secp256k1,
    Secp256k1Prehashed,
}

fn algorithm(name: &str) -> Result<Algorithm, MethodError> {
    match name {
        "ed25519" => Ok(Algorithm::Ed25519),
        "secp256k1" | "k256" => Ok(Algorithm::Secp256k1),
        "secp256k1_prehashed" => Ok(Algorithm::Secp256k1Prehashed),
        other => Err(bad(format!(
            "Unsupported algorithm {other:?} (ed25519, secp256k1, secp256k1_prehashed)"
        ))),
    }
}

pub fn version() -> VersionResponse {
    VersionResponse {
        version: EMULATED_VERSION.to_string(),
        rev: "attestmesh-devtee".to_string(),
    }
}

fn hex48(m: &[u8; 48]) -> String {
    hexfmt::encode(m)
}

pub fn info(state: &State) -> Result<InfoResponse, MethodError> {
    let measured = state.measured();
    let rtmr = measured.rtmrs();
    let tcb = TcbInfo {
        mrtd: hex48(&measured::mr_td()),
        rtmr0: hex48(&rtmr[0]),
        rtmr1: hex48(&rtmr[1]),
        rtmr2: hex48(&rtmr[2]),
        rtmr3: hex48(&rtmr[3]),
        mr_aggregated: hexfmt::encode(measured.mr_aggregated()),
        os_image_hash: hexfmt::encode(measured::os_image_hash()),
        compose_hash: hexfmt::encode(state.compose_hash),
        device_id: hexfmt::encode(measured::device_id()),
        event_log: measured.log().to_vec(),
        app_compose: state.app_compose.clone(),
    };
    let tcb_info = serde_json::to_string_pretty(&tcb)
        .map_err(|e| MethodError::Internal(format!("encoding tcb_info: {e}")))?;
    Ok(InfoResponse {
        app_id: hexfmt::encode(state.app_id),
        instance_id: hexfmt::encode(state.instance_id),
        app_name: state.app_name.clone(),
        device_id: tcb.device_id.clone(),
        mr_aggregated: tcb.mr_aggregated.clone(),
        os_image_hash: tcb.os_image_hash.clone(),
        compose_hash: tcb.compose_hash.clone(),
        key_provider_info: state.key_provider_info.clone(),
        tcb_info,
        app_cert: state.tls.ca_pem().to_string(),
        vm_config: state.vm_config.clone(),
        cloud_vendor: "attestmesh-devtee".to_string(),
        cloud_product: "simulated".to_string(),
    })
}

pub fn get_key(state: &State, req: GetKeyRequest) -> Result<GetKeyResponse, MethodError> {
    let alg = match req.algorithm.as_str() {
        "" => Algorithm::Secp256k1,
        name => algorithm(name)?,
    };
    if alg == Algorithm::Secp256k1Prehashed {
        return Err(bad("GetKey derives secp256k1 or ed25519 keys"));
    }
    let issued = kms::issue(&state.root, state.app_id, &req.path, &req.purpose)
        .map_err(|e| MethodError::Internal(format!("key derivation failed: {e}")))?;
    let app_sig = match alg {
        Algorithm::Ed25519 => {
            let public = ed25519_dalek::SigningKey::from_bytes(&issued.secret).verifying_key();
            app_signature(state, &req.purpose, public.as_bytes())?
        }
        _ => issued.app_sig,
    };
    Ok(GetKeyResponse {
        key: hexfmt::encode(issued.secret.as_slice()),
        signature_chain: vec![hexfmt::encode(app_sig), hexfmt::encode(issued.kms_sig)],
    })
}

/// The app key's signature over `purpose:hex(pubkey)`.
fn app_signature(state: &State, purpose: &str, pubkey: &[u8]) -> Result<[u8; 65], MethodError> {
    let app = kms::app_key(&state.root, state.app_id)
        .map_err(|e| MethodError::Internal(format!("app key: {e}")))?;
    kms::app_sig(&app, purpose, pubkey).map_err(|e| MethodError::Internal(format!("app sig: {e}")))
}

/// At most 64 bytes, zero-padded as the agent does.
fn report_data(hex: &str) -> Result<[u8; 64], MethodError> {
    let data = hexfmt::decode("report_data", hex).map_err(|e| bad(e.to_string()))?;
    if data.len() > 64 {
        return Err(bad(format!(
            "report_data is {} bytes, at most 64 allowed",
            data.len()
        )));
    }
    let mut report = [0u8; 64];
    report[..data.len()].copy_from_slice(&data);
    Ok(report)
}

pub fn get_quote(state: &State, req: GetQuoteRequest) -> Result<GetQuoteResponse, MethodError> {
    let report = report_data(&req.report_data)?;
    let measured = state.measured();
    let event_log = serde_json::to_string(measured.log())
        .map_err(|e| MethodError::Internal(format!("encoding event log: {e}")))?;
    Ok(GetQuoteResponse {
        quote: hexfmt::encode(measured.quote(report)),
        event_log,
        report_data: Some(hexfmt::encode(report)),
        vm_config: Some(state.vm_config.clone()),
    })
}

/// Tag of devtee's attestation blob: a byte no dstack attestation version uses.
pub const ATTESTATION_TAG: u8 = 0xde;

/// `/Attest`: `0xde ‖ u32le(len) ‖ quote ‖ u32le(len) ‖ event log JSON`. dstack's verifier
/// does not know the tag, as it does not trust the quote.
pub fn attest(state: &State, req: GetQuoteRequest) -> Result<AttestResponse, MethodError> {
    let q = get_quote(state, req)?;
    let quote =
        hexfmt::decode("quote", &q.quote).map_err(|e| MethodError::Internal(e.to_string()))?;
    let mut blob = vec![ATTESTATION_TAG];
    for part in [&quote[..], q.event_log.as_bytes()] {
        let len = u32::try_from(part.len())
            .map_err(|_| MethodError::Internal("attestation part too large".into()))?;
        blob.extend_from_slice(&len.to_le_bytes());
        blob.extend_from_slice(part);
    }
    Ok(AttestResponse {
        attestation: hexfmt::encode(blob),
    })
}

pub fn emit_event(state: &State, req: EmitEventRequest) -> Result<(), MethodError> {
    if req.event.is_empty() || req.event.len() > MAX_EVENT_NAME || req.event.contains(':') {
        return Err(bad(format!(
            "event name must be 1..={MAX_EVENT_NAME} bytes without ':' (got {:?})",
            req.event
        )));
    }
    let payload = hexfmt::decode("payload", &req.payload).map_err(|e| bad(e.to_string()))?;
    state.emit(&req.event, &payload)
}

/// The key `/Sign` uses and the chain binding it to the app.
struct SignKey {
    secret: Zeroizing<[u8; 32]>,
    kms_sig: [u8; 65],
}

fn sign_key(state: &State) -> Result<SignKey, MethodError> {
    let issued = kms::issue(&state.root, state.app_id, SIGN_PATH, SIGN_PURPOSE)
        .map_err(|e| MethodError::Internal(format!("key derivation failed: {e}")))?;
    Ok(SignKey {
        secret: issued.secret,
        kms_sig: issued.kms_sig,
    })
}

fn prehash(alg: Algorithm, data: &[u8]) -> Result<B256, MethodError> {
    match alg {
        Algorithm::Secp256k1 => Ok(B256::from_slice(&Sha256::digest(data))),
        Algorithm::Secp256k1Prehashed if data.len() == 32 => Ok(B256::from_slice(data)),
        Algorithm::Secp256k1Prehashed => Err(bad(format!(
            "secp256k1_prehashed needs a 32-byte digest, got {} bytes",
            data.len()
        ))),
        Algorithm::Ed25519 => Err(MethodError::Internal("ed25519 is not prehashed".into())),
    }
}

pub fn sign(state: &State, req: SignRequest) -> Result<SignResponse, MethodError> {
    let alg = algorithm(&req.algorithm)?;
    let data = hexfmt::decode("data", &req.data).map_err(|e| bad(e.to_string()))?;
    let key = sign_key(state)?;
    let (signature, public_key) = match alg {
        Algorithm::Ed25519 => {
            use ed25519_dalek::Signer;
            let sk = ed25519_dalek::SigningKey::from_bytes(&key.secret);
            (
                sk.sign(&data).to_bytes().to_vec(),
                sk.verifying_key().to_bytes().to_vec(),
            )
        }
        _ => {
            let digest = prehash(alg, &data)?;
            let sk = kms::signing_key(&key.secret)
                .map_err(|e| MethodError::Internal(format!("signing key: {e}")))?;
            let sig: k256::ecdsa::Signature = sk
                .sign_prehash(digest.as_slice())
                .map_err(|e| MethodError::Internal(format!("signing: {e}")))?;
            let public = attestmesh_core::secp::compress(sk.verifying_key());
            (sig.to_bytes().to_vec(), public.to_vec())
        }
    };
    let app_sig = app_signature(state, SIGN_PURPOSE, &public_key)?;
    Ok(SignResponse {
        signature_chain: vec![
            hexfmt::encode(&signature),
            hexfmt::encode(app_sig),
            hexfmt::encode(key.kms_sig),
        ],
        signature: hexfmt::encode(signature),
        public_key: hexfmt::encode(public_key),
    })
}

pub fn verify(req: VerifyRequest) -> Result<VerifyResponse, MethodError> {
    let alg = algorithm(&req.algorithm)?;
    let field =
        |name: &'static str, v: &str| hexfmt::decode(name, v).map_err(|e| bad(e.to_string()));
    let data = field("data", &req.data)?;
    let signature = field("signature", &req.signature)?;
    let public_key = field("public_key", &req.public_key)?;
    let valid = match alg {
        Algorithm::Ed25519 => {
            let pk: [u8; 32] = public_key
                .as_slice()
                .try_into()
                .map_err(|_| bad("ed25519 public_key must be 32 bytes"))?;
            let sig: [u8; 64] = signature
                .as_slice()
                .try_into()
                .map_err(|_| bad("ed25519 signature must be 64 bytes"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&pk)
                .map(|vk| {
                    vk.verify_strict(&data, &ed25519_dalek::Signature::from_bytes(&sig))
                        .is_ok()
                })
                .unwrap_or(false)
        }
        _ => {
            let digest = prehash(alg, &data)?;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&public_key)
                .map_err(|_| bad("secp256k1 public_key is not a SEC1 point"))?;
            let sig = k256::ecdsa::Signature::from_slice(&signature)
                .map_err(|_| bad("secp256k1 signature must be 64 bytes r ‖ s"))?;
            vk.verify_prehash(digest.as_slice(), &sig).is_ok()
        }
    };
    Ok(VerifyResponse { valid })
}
