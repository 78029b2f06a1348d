//! The AttestMesh data plane: a userspace WireGuard interface (boringtun on TUN), the bridge that
//! carries WireGuard datagrams over the gateway's TCP/TLS path (DESIGN §6.3), and the dev gateway
//! that stands in for dstack's SNI router (DESIGN §6.4).

pub mod bridge;
pub mod device;
pub mod frame;
pub mod gateway;
pub mod ingress;
pub mod keys;
pub mod proof;
pub mod sni;
pub mod tls;
pub mod uapi;
pub mod uapi_proxy;

pub use device::{DeviceError, DeviceSettings, PeerSettings, WgDevice};
pub use keys::{KeyParseError, PrivateKey, PublicKey};
