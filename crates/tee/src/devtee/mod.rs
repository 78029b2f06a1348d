//! devtee: a local stand-in for the dstack guest agent and its KMS (DESIGN §4.2).
//!
//! Serves every method of the guest-agent API (dstack 0.5.11: `/Info`, `/GetKey`, `/GetQuote`,
//! `/GetTlsKey`, `/Sign`, `/Verify`, `/EmitEvent`, `/Attest`, `/Version`) on a unix socket with
//! the real agent's JSON shapes and the KMS formulas of [`crate::kms`], so everything above it —
//! dstack's own SDKs, our client, the provider and the on-chain verifier — runs unchanged.
//! Quotes have the TDX v4 layout and RTMRs that the served event log replays to, and are marked
//! simulated where real verifiers reject them ([`measured`]). Development only.

mod measured;
mod methods;
mod tls;

pub use measured::{SIMULATED_SIGNATURE, SIMULATED_TD_ATTRIBUTES};
pub use methods::{ATTESTATION_TAG, EMULATED_VERSION};
pub use tls::RA_TLS_QUOTE_OID;

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

use crate::compose;
use crate::hexfmt;
use crate::kms;
use crate::wire::ErrorBody;
use measured::Measured;
use methods::MethodError;

/// The docker-compose file of devtee's default app-compose manifest.
const DEFAULT_DOCKER_COMPOSE: &str =
    "services:\n  app:\n    image: attestmesh-devtee-placeholder\n";

/// The app-compose manifest devtee reports when given none: a canonical manifest (as
/// `attestmesh cluster app-compose` writes them) around a placeholder service.
pub fn default_app_compose() -> String {
    let spec = compose::AppComposeSpec::node("attestmesh-devtee", DEFAULT_DOCKER_COMPOSE);
    // The builder fails only on invalid env names, and the placeholder names none.
    compose::build_app_compose(DEFAULT_DOCKER_COMPOSE, &spec).unwrap_or_default()
}

/// Compose hash of [`default_app_compose`]: its SHA-256, as dstack measures it.
pub fn default_compose_hash() -> B256 {
    compose::sha256(default_app_compose().as_bytes())
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
    #[error("cannot create the app CA: {0}")]
    AppCa(String),
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
    /// The app-compose manifest (`app-compose.json` bytes); its SHA-256 is the compose hash.
    pub app_compose: String,
}

impl std::fmt::Debug for DevteeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevteeConfig")
            .field("socket", &self.socket)
            .field("app_id", &self.app_id)
            .field("kms_root_key", &"<redacted>")
            .field("compose_hash", &self.compose_hash())
            .finish()
    }
}

impl DevteeConfig {
    /// A config using the published development KMS root and the default manifest.
    pub fn dev(socket: impl Into<PathBuf>, app_id: Address) -> Self {
        Self {
            socket: socket.into(),
            app_id,
            kms_root_key: Zeroizing::new(kms::DEV_KMS_ROOT_KEY),
            app_compose: default_app_compose(),
        }
    }

    /// The compose hash this config measures: SHA-256 of the manifest bytes.
    pub fn compose_hash(&self) -> B256 {
        compose::sha256(self.app_compose.as_bytes())
    }
}

/// What the methods read (and `/EmitEvent` extends).
pub(crate) struct State {
    app_id: Address,
    app_name: String,
    root: Zeroizing<[u8; 32]>,
    app_compose: String,
    compose_hash: B256,
    instance_id: Address,
    key_provider_info: String,
    vm_config: String,
    tls: tls::AppCa,
    measured: Mutex<Measured>,
}

impl State {
    /// A snapshot of the measurements (a poisoned lock still holds a consistent log: every
    /// update is one push).
    fn measured(&self) -> Measured {
        match self.measured.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn emit(&self, event: &str, payload: &[u8]) -> Result<(), MethodError> {
        let mut m = match self.measured.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if m.log().len() >= crate::eventlog::MAX_ENTRIES {
            return Err(MethodError::BadRequest(format!(
                "event log is full ({} entries)",
                crate::eventlog::MAX_ENTRIES
            )));
        }
        m.emit(event, payload);
        Ok(())
    }
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
        let instance_id = instance_id(config.app_id);
        let compose_hash = config.compose_hash();
        let app_name = compose::parse(config.app_compose.as_bytes())
            .ok()
            .and_then(|c| match c.doc.get("name") {
                Some(compose::Json::String(n)) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "attestmesh-devtee".to_string());
        let key_provider_info = key_provider_info(kms_root);
        let tls = tls::AppCa::generate(&app_name).map_err(|e| DevteeError::AppCa(e.to_string()))?;
        let measured = Measured::boot(config.app_id, compose_hash, instance_id, &key_provider_info);
        Ok(Self {
            listener,
            socket: SocketFile(config.socket),
            state: Arc::new(State {
                app_id: config.app_id,
                app_name,
                root: config.kms_root_key,
                app_compose: config.app_compose,
                compose_hash,
                instance_id,
                key_provider_info,
                vm_config: serde_json::json!({
                    "os_image_hash": hexfmt::encode(measured::os_image_hash()),
                    "cpu_count": 1,
                    "memory_size": 1u64 << 30,
                })
                .to_string(),
                tls,
                measured: Mutex::new(measured),
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

/// The instance id devtee reports for `app_id` (one instance per app).
fn instance_id(app_id: Address) -> Address {
    let mut pre = Vec::from(&b"attestmesh.devtee.instance.v1"[..]);
    pre.extend_from_slice(app_id.as_slice());
    Address::from_slice(&keccak256(&pre)[12..])
}

fn key_provider_info(kms_root: Address) -> String {
    serde_json::json!({"name": "devtee-kms", "id": hexfmt::encode(kms_root)}).to_string()
}

/// The quote and event log (JSON) a devtee with the development KMS root, running
/// `compose_hash` as `app_id`, serves for `report_data`: for testing verifiers without a server.
pub fn simulated_attestation(
    app_id: Address,
    compose_hash: B256,
    report_data: [u8; 64],
) -> (Vec<u8>, String) {
    let m = Measured::boot(
        app_id,
        compose_hash,
        instance_id(app_id),
        &key_provider_info(kms::DEV_KMS_ROOT_ADDRESS),
    );
    let log = serde_json::to_string(m.log()).unwrap_or_default();
    (m.quote(report_data), log)
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
    let answer = match path.as_str() {
        "Info" => methods::info(state).map(to_json),
        "Version" => Ok(to_json(methods::version())),
        "GetKey" => parse(&body)
            .and_then(|r| methods::get_key(state, r))
            .map(to_json),
        "GetQuote" => parse(&body)
            .and_then(|r| methods::get_quote(state, r))
            .map(to_json),
        "Attest" => parse(&body)
            .and_then(|r| methods::attest(state, r))
            .map(to_json),
        "GetTlsKey" => parse(&body)
            .and_then(|r| state.tls.issue(&r, |rd| state.measured().quote(rd)))
            .map(to_json),
        "Sign" => parse(&body)
            .and_then(|r| methods::sign(state, r))
            .map(to_json),
        "Verify" => parse(&body).and_then(methods::verify).map(to_json),
        // The agent answers an empty method with JSON `null`; the Rust SDK insists on it.
        "EmitEvent" => parse(&body)
            .and_then(|r| methods::emit_event(state, r))
            .map(|()| serde_json::Value::Null),
        other => {
            return error(StatusCode::NOT_FOUND, format!("no such method: /{other}"));
        }
    };
    match answer {
        Ok(v) => json(StatusCode::OK, &v),
        Err(MethodError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, m),
        Err(MethodError::Internal(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, m),
    }
}

fn to_json<T: Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Parses a request body; an empty body means all-default arguments, as for the agent.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MethodError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| MethodError::BadRequest(format!("invalid request JSON: {e}")))
}
