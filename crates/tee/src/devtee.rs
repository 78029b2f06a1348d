//! devtee: a local stand-in for the dstack guest agent and its KMS (DESIGN §4.2).
//!
//! Serves `/Info`, `/GetKey` and `/GetQuote` on a unix socket with the real agent's JSON shapes
//! and the KMS formulas of [`crate::kms`], so everything above it — the client, the provider and
//! the on-chain verifier — runs unchanged. Quotes are clearly marked simulated. Development only.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{Address, B256, keccak256};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::hexfmt;
use crate::kms;
use crate::wire::{
    ErrorBody, GetKeyRequest, GetKeyResponse, GetQuoteRequest, GetQuoteResponse, InfoResponse,
};

/// First bytes of every devtee quote, so no verifier can mistake it for a TDX quote.
pub const SIMULATED_QUOTE_MAGIC: &[u8] = b"ATTESTMESH-DEVTEE-SIMULATED-QUOTE-NOT-A-TDX-QUOTE/v1\0";
/// Default compose hash reported by `/Info`: `keccak256("attestmesh.devtee.compose.v1")`.
pub fn default_compose_hash() -> B256 {
    keccak256(b"attestmesh.devtee.compose.v1")
}
/// Largest request body accepted.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long in-flight requests may run after shutdown was requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors that stop devtee.
#[derive(Debug, thiserror::Error)]
pub enum DevteeError {
    #[error("socket path {0} is in use by a running server")]
    InUse(PathBuf),
    #[error("socket path {0} exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("KMS root key is not a valid secp256k1 secret")]
    BadRootKey,
    #[error("accept failed on {path}: {source}")]
    Accept {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a devtee instance emulates.
#[derive(Clone)]
pub struct DevteeConfig {
    pub socket: PathBuf,
    pub app_id: Address,
    pub kms_root_key: Zeroizing<[u8; 32]>,
    pub compose_hash: B256,
}

impl std::fmt::Debug for DevteeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevteeConfig")
            .field("socket", &self.socket)
            .field("app_id", &self.app_id)
            .field("kms_root_key", &"<redacted>")
            .field("compose_hash", &self.compose_hash)
            .finish()
    }
}

impl DevteeConfig {
    /// A config using the published development KMS root and the default compose hash.
    pub fn dev(socket: impl Into<PathBuf>, app_id: Address) -> Self {
        Self {
            socket: socket.into(),
            app_id,
            kms_root_key: Zeroizing::new(kms::DEV_KMS_ROOT_KEY),
            compose_hash: default_compose_hash(),
        }
    }
}

struct State {
    app_id: Address,
    root: Zeroizing<[u8; 32]>,
    compose_hash: B256,
    instance_id: Address,
}

/// A bound devtee, ready to [`run`](Devtee::run).
pub struct Devtee {
    listener: UnixListener,
    socket: SocketFile,
    state: Arc<State>,
    kms_root: Address,
}

/// Removes the socket file when devtee stops, however it stops.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Devtee {
    /// Binds the socket. A stale socket file (nobody listening) is replaced; a live one or a
    /// non-socket file is an error.
    pub async fn bind(config: DevteeConfig) -> Result<Self, DevteeError> {
        let root = kms::signing_key(&config.kms_root_key).map_err(|_| DevteeError::BadRootKey)?;
        let kms_root = attestmesh_core::secp::address_of(root.verifying_key());
        clear_stale(&config.socket).await?;
        let listener = UnixListener::bind(&config.socket).map_err(|source| DevteeError::Bind {
            path: config.socket.clone(),
            source,
        })?;
        let mut pre = Vec::from(&b"attestmesh.devtee.instance.v1"[..]);
        pre.extend_from_slice(config.app_id.as_slice());
        let instance_id = Address::from_slice(&keccak256(&pre)[12..]);
        Ok(Self {
            listener,
            socket: SocketFile(config.socket),
            state: Arc::new(State {
                app_id: config.app_id,
                root: config.kms_root_key,
                compose_hash: config.compose_hash,
                instance_id,
            }),
            kms_root,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket.0
    }

    /// Address of the KMS root that signs this devtee's chains (what a cluster allowlists).
    pub fn kms_root_address(&self) -> Address {
        self.kms_root
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests briefly and removes the
    /// socket.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), DevteeError> {
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                accepted = self.listener.accept() => {
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(source) => break Err(DevteeError::Accept { path: self.socket.0.clone(), source }),
                    };
                    let state = Arc::clone(&self.state);
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, Infallible>(handle(&state, req).await) }
                        });
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await
                        {
                            tracing::debug!(error = %e, "devtee connection ended with error");
                        }
                    });
                }
                // Reap finished connections so the set does not grow without bound.
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        };
        drop(self.listener);
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            conns.abort_all();
        }
        drop(self.socket);
        result
    }
}

/// Binds and serves until `shutdown`.
pub async fn serve(
    config: DevteeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DevteeError> {
    Devtee::bind(config).await?.run(shutdown).await
}

async fn clear_stale(path: &Path) -> Result<(), DevteeError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(DevteeError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(|source| DevteeError::Bind {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(DevteeError::NotASocket(path.to_path_buf())),
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    json(status, &ErrorBody { error: msg.into() })
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().trim_start_matches('/').to_string();
    if method != Method::POST && method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} not allowed"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            );
        }
    };
    match path.as_str() {
        "Info" => json(StatusCode::OK, &info(state)),
        "GetKey" => match parse::<GetKeyRequest>(&body) {
            Ok(r) => get_key(state, r),
            Err(msg) => error(StatusCode::BAD_REQUEST, msg),
        },
        "GetQuote" => match parse::<GetQuoteRequest>(&body) {
            Ok(r) => get_quote(state, r),
            Err(msg) => error(StatusCode::BAD_REQUEST, msg),
        },
        other => error(StatusCode::NOT_FOUND, format!("no such method: /{other}")),
    }
}

/// Parses a request body; the error is the message for a 400 answer.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request JSON: {e}"))
}

fn info(state: &State) -> InfoResponse {
    let tcb = serde_json::json!({
        "simulated": true,
        "note": "devtee: no TEE, development only",
        "compose_hash": hexfmt::encode(state.compose_hash),
    });
    InfoResponse {
        app_id: hexfmt::encode(state.app_id),
        instance_id: hexfmt::encode(state.instance_id),
        app_name: "attestmesh-devtee".to_string(),
        device_id: hexfmt::encode(B256::ZERO),
        mr_aggregated: hexfmt::encode(B256::ZERO),
        os_image_hash: hexfmt::encode(B256::ZERO),
        compose_hash: hexfmt::encode(state.compose_hash),
        key_provider_info: serde_json::json!({"name": "devtee", "id": "simulated"}).to_string(),
        tcb_info: tcb.to_string(),
        app_cert: String::new(),
        vm_config: "{}".to_string(),
    }
}

fn get_key(state: &State, req: GetKeyRequest) -> Response<Full<Bytes>> {
    match req.algorithm.as_str() {
        "" | "secp256k1" | "k256" => {}
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unsupported algorithm {other:?}: devtee derives secp256k1 keys only"),
            );
        }
    }
    match kms::issue(&state.root, state.app_id, &req.path, &req.purpose) {
        Ok(issued) => json(
            StatusCode::OK,
            &GetKeyResponse {
                key: hexfmt::encode(issued.secret.as_slice()),
                signature_chain: vec![
                    hexfmt::encode(issued.app_sig),
                    hexfmt::encode(issued.kms_sig),
                ],
            },
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("key derivation failed: {e}"),
        ),
    }
}

fn get_quote(state: &State, req: GetQuoteRequest) -> Response<Full<Bytes>> {
    let data = match hexfmt::decode("report_data", &req.report_data) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if data.len() > 64 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("report_data is {} bytes, at most 64 allowed", data.len()),
        );
    }
    let mut report = [0u8; 64];
    report[..data.len()].copy_from_slice(&data);
    let quote = simulated_quote(state, &report);
    let event_log = serde_json::json!([{
        "event": "devtee-simulated",
        "note": "no TEE: this quote proves nothing",
    }]);
    json(
        StatusCode::OK,
        &GetQuoteResponse {
            quote: hexfmt::encode(quote),
            event_log: event_log.to_string(),
            report_data: Some(hexfmt::encode(report)),
            vm_config: Some("{}".to_string()),
        },
    )
}

/// Layout: `MAGIC ‖ app_id (20) ‖ compose_hash (32) ‖ report_data (64)`.
fn simulated_quote(state: &State, report: &[u8; 64]) -> Vec<u8> {
    let mut q = Vec::with_capacity(SIMULATED_QUOTE_MAGIC.len() + 20 + 32 + 64);
    q.extend_from_slice(SIMULATED_QUOTE_MAGIC);
    q.extend_from_slice(state.app_id.as_slice());
    q.extend_from_slice(state.compose_hash.as_slice());
    q.extend_from_slice(report);
    q
}

/// Splits a simulated quote into `(app_id, compose_hash, report_data)`; `None` if it is not one.
pub fn parse_simulated_quote(quote: &[u8]) -> Option<(Address, B256, [u8; 64])> {
    let rest = quote.strip_prefix(SIMULATED_QUOTE_MAGIC)?;
    if rest.len() != 20 + 32 + 64 {
        return None;
    }
    let mut report = [0u8; 64];
    report.copy_from_slice(&rest[52..]);
    Some((
        Address::from_slice(&rest[..20]),
        B256::from_slice(&rest[20..52]),
        report,
    ))
}
