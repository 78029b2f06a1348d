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
    #[error("PEM: {0}")]
    Pem(String),
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

/// A development CA and the wildcard certificate `*.<domain>` it signs. The dev gateway
/// terminates TLS with the leaf for `<app>-<port>.<domain>` names, as dstack's gateway does with
/// its public certificate; agents and operators trust the CA instead of a public root.
#[derive(Debug, Clone)]
pub struct DevCa {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

/// Generates a fresh [`DevCa`] for `domain`.
pub fn dev_ca(domain: &str) -> Result<DevCa, TlsError> {
    let domain = domain.trim_matches('.');
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "AttestMesh devnet gateway CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf = rcgen::CertificateParams::new(vec![format!("*.{domain}")])?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    Ok(DevCa {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf_cert.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
    })
}

/// The server side of the gateway's terminating form: the certificate chain and key from PEM,
/// ALPN `h2` (gRPC) then `http/1.1` (health, metrics), spoken on to the node in the clear.
pub fn terminating_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client of the gateway's terminating form (`<app>-<port>.<domain>`): the server certificate
/// must chain to the webpki (Mozilla) roots, as a dstack gateway's public certificate does, or
/// to one of the PEM certificates in `extra_ca_pem` (a dev gateway's CA). Announces `http/1.1`.
pub fn gateway_client_config(extra_ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(TlsError::Pem("the CA file holds no certificate".into()));
        }
        for c in certs {
            roots.add(c)?;
        }
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
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
    fn dev_ca_leaf_serves_and_bad_pem_is_refused() {
        let ca = dev_ca("mesh.test.").unwrap();
        assert!(ca.ca_pem.contains("BEGIN CERTIFICATE"));
        terminating_server_config(ca.leaf_pem.as_bytes(), ca.leaf_key_pem.as_bytes()).unwrap();
        assert!(matches!(
            terminating_server_config(b"", ca.leaf_key_pem.as_bytes()),
            Err(TlsError::Pem(_))
        ));
        assert!(matches!(
            terminating_server_config(ca.leaf_pem.as_bytes(), b"junk"),
            Err(TlsError::Pem(_))
        ));
    }

    /// Runs a TLS handshake between `client` and `server` in memory; `Err` is the client's.
    fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            let _ = s.process_new_packets();
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets()?;
            if !c.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn gateway_client_trusts_the_dev_ca_and_nothing_else() {
        let ca = dev_ca("mesh.test").unwrap();
        let server =
            terminating_server_config(ca.leaf_pem.as_bytes(), ca.leaf_key_pem.as_bytes()).unwrap();
        let trusting = gateway_client_config(Some(ca.ca_pem.as_bytes())).unwrap();
        handshake(trusting.clone(), server.clone(), "abc-9090.mesh.test").unwrap();
        // The wildcard covers one label only, and another CA is not this one.
        assert!(handshake(trusting, server.clone(), "abc-9090.other.test").is_err());
        let other = dev_ca("mesh.test").unwrap();
        let stranger = gateway_client_config(Some(other.ca_pem.as_bytes())).unwrap();
        assert!(handshake(stranger, server.clone(), "abc-9090.mesh.test").is_err());
        let public_only = gateway_client_config(None).unwrap();
        assert!(handshake(public_only, server, "abc-9090.mesh.test").is_err());
        for bad in [&b""[..], b"not pem", ca.leaf_key_pem.as_bytes()] {
            assert!(
                matches!(gateway_client_config(Some(bad)), Err(TlsError::Pem(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn configs_build() {
        server_config().unwrap();
        client_config(identity_alpn("x")).unwrap();
    }
}
