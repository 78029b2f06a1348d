//! The app API's transport: gRPC over the agent's unix socket (DESIGN §11).
//!
//! tonic dials URIs, not socket paths, so the channel gets a connector that ignores the
//! placeholder URI and opens the socket. Every client of the app API (the example app, the
//! node's and the lab's tests) connects through this one function.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel to the agent listening on `path`. The connection is opened now (so a missing or
/// stale socket fails here) and re-opened on the same path if it drops.
pub async fn connect_agent(path: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    let path = path.into();
    Endpoint::from_static("http://agent.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
            }
        }))
        .await
}
