//! How the host reaches a CVM on the devnet: only through the dev gateway, as an operator
//! reaches a dstack CVM — `https://<app id>-<port>.<domain>`, TLS terminated by the gateway under
//! the devnet's CA. Nothing but the gateway's ports is reachable from the host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;

use super::{Devnet, DevnetError, netns, sock};

/// The gateway's address, domain and a TLS client that trusts its CA. Cheap to clone into a
/// blocking task.
#[derive(Clone)]
pub struct GatewayReach {
    at: SocketAddr,
    domain: String,
    tls: Arc<rustls::ClientConfig>,
}

impl GatewayReach {
    /// The gateway at `at` for `domain`, trusted by `ca_pem` (a dev gateway's CA) on top of the
    /// webpki roots.
    pub fn new(at: SocketAddr, domain: &str, ca_pem: &[u8]) -> Result<Self, DevnetError> {
        let tls = attestmesh_net::tls::gateway_client_config(Some(ca_pem))
            .map_err(|e| DevnetError::Setup(format!("the gateway's CA: {e}")))?;
        Ok(Self {
            at,
            domain: domain.to_owned(),
            tls,
        })
    }

    /// The host name the gateway terminates for `port` of app `app`.
    pub fn host(&self, app: Address, port: u16) -> String {
        format!(
            "{}-{port}.{}",
            alloy_primitives::hex::encode(app),
            self.domain
        )
    }

    /// `https://<app>-<port>.<domain><path>`.
    pub fn url(&self, app: Address, port: u16, path: &str) -> String {
        format!("https://{}{path}", self.host(app, port))
    }

    /// `GET path` on `port` of app `app` through the gateway: (HTTP status, body).
    pub fn get(&self, app: Address, port: u16, path: &str) -> std::io::Result<(u16, String)> {
        netns::https_get(
            self.at,
            &self.host(app, port),
            self.tls.clone(),
            path,
            Duration::from_secs(3),
        )
    }

    /// A JSON endpoint (`/healthz`): (HTTP status, body as JSON, `Null` if it is not JSON).
    pub fn get_json(
        &self,
        app: Address,
        port: u16,
        path: &str,
    ) -> Option<(u16, serde_json::Value)> {
        let (code, body) = self.get(app, port, path).ok()?;
        Some((
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        ))
    }
}

impl Devnet {
    /// The host's one way into the devnet's CVMs (see [`GatewayReach`]).
    pub fn gateway(&self) -> Result<GatewayReach, DevnetError> {
        let ca = std::fs::read(self.gateway_ca_file())?;
        GatewayReach::new(
            sock(self.state.services_addr, self.state.gateway_port),
            &self.state.gateway_domain,
            &ca,
        )
    }
}
