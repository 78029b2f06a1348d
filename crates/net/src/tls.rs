//! TLS for the bridge leg. It is routing, not security (invariant 2): the server presents a
//! throwaway self-signed certificate and the client accepts any certificate; WireGuard
//! authenticates every datagram inside. The client still checks the handshake signature so the
//! TLS session itself is well-formed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

/// ALPN prefix that carries the dialer's own gateway host name, so the receiver knows which
/// peer's loopback socket to feed (the bridge cannot read WireGuard's encrypted identities).
/// Unauthenticated by design: a lie only misroutes datagrams that WireGuard then rejects.
pub const ALPN_PREFIX: &[u8] = b"attestmesh-wg/";

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls config: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config with a fresh self-signed certificate (new on every start; nobody pins it).
pub fn server_config() -> Result<Arc<ServerConfig>, TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec!["attestmesh-wg.invalid".to_owned()])?;
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    Ok(Arc::new(cfg))
}

/// A client config that accepts any server certificate and announces `alpn`.
pub fn client_config(alpn: Vec<u8>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = AnyCertificate(provider.signature_verification_algorithms);
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn];
    Ok(Arc::new(cfg))
}

/// The ALPN value that names `host` as the dialer.
pub fn identity_alpn(host: &str) -> Vec<u8> {
    let mut v = ALPN_PREFIX.to_vec();
    v.extend_from_slice(host.as_bytes());
    v
}

/// Extracts the dialer's host name from an ALPN value.
pub fn host_from_alpn(alpn: &[u8]) -> Option<&str> {
    std::str::from_utf8(alpn.strip_prefix(ALPN_PREFIX)?).ok()
}

#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn alpn_identity_roundtrip() {
        let a = identity_alpn("abc-51900s.mesh.test");
        assert_eq!(host_from_alpn(&a), Some("abc-51900s.mesh.test"));
        assert_eq!(host_from_alpn(b"h2"), None);
    }

    #[test]
    fn configs_build() {
        server_config().unwrap();
        client_config(identity_alpn("x")).unwrap();
    }
}
