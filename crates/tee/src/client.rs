//! Client of the dstack guest agent: HTTP/1.1 over its unix socket, JSON bodies, hex bytes
//! (DESIGN §4.1). One connection per call: calls happen a handful of times per boot, and a fresh
//! connection never inherits a half-broken one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::hexfmt::{self, BadHex};
use crate::wire::{
    ErrorBody, GetKeyRequest, GetKeyResponse, GetQuoteRequest, GetQuoteResponse, InfoResponse,
};

/// Where the real agent listens inside a dstack CVM.
pub const DEFAULT_SOCKET: &str = "/var/run/dstack.sock";
/// Default per-call deadline; the real agent answers `GetKey` in milliseconds, `GetQuote` in
/// well under a second.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers larger than this are refused (quotes with event logs are tens of KiB).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// `/GetKey` returns `[app_sig, kms_sig]`.
pub const SIGNATURE_CHAIN_LEN: usize = 2;

/// Everything that can go wrong talking to the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "dstack guest agent socket {0} does not exist (is this a dstack CVM, or is devtee running?)"
    )]
    SocketMissing(PathBuf),
    #[error("cannot connect to the dstack guest agent at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dstack guest agent call /{method} timed out after {after:?}")]
    Timeout {
        method: &'static str,
        after: Duration,
    },
    #[error("HTTP exchange with the dstack guest agent failed on /{method}: {source}")]
    Http {
        method: &'static str,
        #[source]
        source: hyper::Error,
    },
    #[error("dstack guest agent answered /{method} with HTTP {status}: {message}")]
    Status {
        method: &'static str,
        status: StatusCode,
        message: String,
    },
    #[error(
        "dstack guest agent answer to /{method} is not the expected JSON: {source} (body starts {snippet:?})"
    )]
    NotJson {
        method: &'static str,
        snippet: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("dstack guest agent answer to /{method} exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { method: &'static str },
    #[error(transparent)]
    BadHex(#[from] BadHex),
    #[error("key for path {path:?} is {got} bytes, need at least 32")]
    KeyLength { path: String, got: usize },
    #[error(
        "signature chain for path {path:?} has {got} entries, expected {SIGNATURE_CHAIN_LEN} (app_sig, kms_sig)"
    )]
    ChainLength { path: String, got: usize },
    #[error("signature {index} of the chain for path {path:?} is {got} bytes, expected 65")]
    SignatureLength {
        path: String,
        index: usize,
        got: usize,
    },
    #[error("report data is {0} bytes, at most 64 allowed")]
    ReportDataTooLong(usize),
    #[error("/Info app_id {0:?} is not a 20-byte address")]
    BadAppId(String),
}

/// A `GetKey` answer, decoded and length-checked.
pub struct DerivedKey {
    /// The first 32 bytes of the returned key: the seed of every key type (DESIGN §4).
    pub seed: Zeroizing<[u8; 32]>,
    /// Signature by the app key over `purpose:hex(pubkey)`, as returned (v ∈ {0,1}).
    pub app_sig: [u8; 65],
    /// Signature by the KMS root over the app key, as returned.
    pub kms_sig: [u8; 65],
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKey")
            .field("seed", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Talks to one guest agent socket.
#[derive(Debug, Clone)]
pub struct GuestAgentClient {
    socket: PathBuf,
    timeout: Duration,
}

impl GuestAgentClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `/Info`, with `app_id` checked to be an address.
    pub async fn info(&self) -> Result<InfoResponse, AgentError> {
        let (status, body) = self.call("Info", &serde_json::json!({})).await?;
        decode_info(status, &body).map(|(info, _)| info)
    }

    /// The app id (= member contract address) from `/Info`.
    pub async fn app_id(&self) -> Result<alloy_primitives::Address, AgentError> {
        let (status, body) = self.call("Info", &serde_json::json!({})).await?;
        decode_info(status, &body).map(|(_, app_id)| app_id)
    }

    /// `/GetKey`, decoded and checked: a seed of at least 32 bytes and a 2-entry chain of
    /// 65-byte signatures.
    pub async fn get_key(
        &self,
        path: &str,
        purpose: &str,
        algorithm: &str,
    ) -> Result<DerivedKey, AgentError> {
        let req = GetKeyRequest {
            path: path.to_string(),
            purpose: purpose.to_string(),
            algorithm: algorithm.to_string(),
        };
        let (status, body) = self.call("GetKey", &req).await?;
        decode_get_key(path, status, &body)
    }

    /// `/GetQuote` with up to 64 bytes of report data.
    pub async fn get_quote(&self, report_data: &[u8]) -> Result<GetQuoteResponse, AgentError> {
        if report_data.len() > 64 {
            return Err(AgentError::ReportDataTooLong(report_data.len()));
        }
        let req = GetQuoteRequest {
            report_data: hexfmt::encode(report_data),
        };
        let (status, body) = self.call("GetQuote", &req).await?;
        decode_get_quote(status, &body)
    }

    /// One `POST /<method>` round trip under the deadline: the status and the (size-capped)
    /// body, decoded by the `decode_*` functions.
    async fn call<Req: Serialize>(
        &self,
        method: &'static str,
        body: &Req,
    ) -> Result<(StatusCode, Bytes), AgentError> {
        match tokio::time::timeout(self.timeout, self.exchange(method, body)).await {
            Ok(r) => r,
            Err(_) => Err(AgentError::Timeout {
                method,
                after: self.timeout,
            }),
        }
    }

    async fn exchange<Req: Serialize>(
        &self,
        method: &'static str,
        body: &Req,
    ) -> Result<(StatusCode, Bytes), AgentError> {
        let stream = match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::SocketMissing(self.socket.clone()));
            }
            Err(source) => {
                return Err(AgentError::Connect {
                    path: self.socket.clone(),
                    source,
                });
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| AgentError::Http { method, source })?;
        // The connection task ends when the response is read and the sender dropped.
        let conn_task = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "guest agent connection closed with error");
            }
        });
        // Serialising our own request types cannot fail.
        let json = serde_json::to_vec(body).unwrap_or_default();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/{method}"))
            .header(hyper::header::HOST, "dstack")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)));
        let req = match req {
            Ok(r) => r,
            Err(_) => unreachable!("static request parts are valid"),
        };
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|source| AgentError::Http { method, source })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| match e.downcast::<hyper::Error>() {
                    Ok(source) => AgentError::Http {
                        method,
                        source: *source,
                    },
                    Err(_) => AgentError::TooLarge { method },
                })?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        drop(sender);
        conn_task.abort();
        result
    }
}

/// Turns one answer of the guest agent into `Resp`: a non-success status becomes
/// [`AgentError::Status`] with the agent's `{"error"}` message (or a snippet), a body that is not
/// the expected JSON becomes [`AgentError::NotJson`]. These bytes come from outside the agent's
/// code, so this (and the `decode_*` functions built on it) is what the fuzz targets exercise.
pub fn decode_body<Resp: DeserializeOwned>(
    method: &'static str,
    status: StatusCode,
    body: &[u8],
) -> Result<Resp, AgentError> {
    if !status.is_success() {
        let message = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => e.error,
            Err(_) => snippet(body),
        };
        return Err(AgentError::Status {
            method,
            status,
            message,
        });
    }
    serde_json::from_slice(body).map_err(|source| AgentError::NotJson {
        method,
        snippet: snippet(body),
        source,
    })
}

/// Decodes an `/Info` answer and its `app_id` (an address, with or without `0x`).
pub fn decode_info(
    status: StatusCode,
    body: &[u8],
) -> Result<(InfoResponse, alloy_primitives::Address), AgentError> {
    let info: InfoResponse = decode_body("Info", status, body)?;
    let app_id = parse_app_id(&info.app_id)?;
    Ok((info, app_id))
}

/// Decodes and checks a `/GetKey` answer for `path` (see [`decode_key`]).
pub fn decode_get_key(
    path: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<DerivedKey, AgentError> {
    let resp: GetKeyResponse = decode_body("GetKey", status, body)?;
    decode_key(path, &resp)
}

/// Decodes a `/GetQuote` answer; the quote must be hex.
pub fn decode_get_quote(status: StatusCode, body: &[u8]) -> Result<GetQuoteResponse, AgentError> {
    let resp: GetQuoteResponse = decode_body("GetQuote", status, body)?;
    hexfmt::decode("quote", &resp.quote)?;
    Ok(resp)
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned()
}

fn parse_app_id(s: &str) -> Result<alloy_primitives::Address, AgentError> {
    let bytes = hexfmt::decode("app_id", s).map_err(|_| AgentError::BadAppId(s.to_string()))?;
    if bytes.len() != 20 {
        return Err(AgentError::BadAppId(s.to_string()));
    }
    Ok(alloy_primitives::Address::from_slice(&bytes))
}

/// Checks and decodes a `GetKey` answer.
pub fn decode_key(path: &str, resp: &GetKeyResponse) -> Result<DerivedKey, AgentError> {
    let key = Zeroizing::new(hexfmt::decode("key", &resp.key)?);
    if key.len() < 32 {
        return Err(AgentError::KeyLength {
            path: path.to_string(),
            got: key.len(),
        });
    }
    if resp.signature_chain.len() != SIGNATURE_CHAIN_LEN {
        return Err(AgentError::ChainLength {
            path: path.to_string(),
            got: resp.signature_chain.len(),
        });
    }
    let mut sigs = [[0u8; 65]; SIGNATURE_CHAIN_LEN];
    for (index, (s, out)) in resp.signature_chain.iter().zip(sigs.iter_mut()).enumerate() {
        let raw = hexfmt::decode("signature_chain", s)?;
        if raw.len() != 65 {
            return Err(AgentError::SignatureLength {
                path: path.to_string(),
                index,
                got: raw.len(),
            });
        }
        out.copy_from_slice(&raw);
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&key[..32]);
    Ok(DerivedKey {
        seed,
        app_sig: sigs[0],
        kms_sig: sigs[1],
    })
}
