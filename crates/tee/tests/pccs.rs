//! The PCCS client against a PCCS-shaped server on 127.0.0.1 serving Intel's published collateral
//! for dcap-qvl's sample quote (testdata/dcap-qvl): what it fetches must verify the quote in
//! dcap-qvl exactly as the published collateral does, and a PCCS that tampers, omits a header
//! or fails is an error naming the request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use attestmesh_tee::dcap::{self, TcbPolicy};
use attestmesh_tee::pccs::{PccsClient, PccsError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const NOW: u64 = 1_750_332_747;

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/dcap-qvl")
            .join(name),
    )
    .unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Path (without query) → (headers, body), as Intel's v4 API serves them.
type Routes = HashMap<String, (Vec<(&'static str, String)>, Vec<u8>)>;

fn routes(c: &dcap::Collateral) -> Routes {
    let hex = alloy_primitives::hex::encode;
    let mut r = Routes::new();
    r.insert(
        "/sgx/certification/v4/pckcrl".into(),
        (
            vec![("SGX-PCK-CRL-Issuer-Chain", enc(&c.pck_crl_issuer_chain))],
            c.pck_crl.clone(),
        ),
    );
    r.insert(
        "/tdx/certification/v4/tcb".into(),
        (
            vec![("TCB-Info-Issuer-Chain", enc(&c.tcb_info_issuer_chain))],
            format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                c.tcb_info,
                hex(&c.tcb_info_signature)
            )
            .into_bytes(),
        ),
    );
    r.insert(
        "/tdx/certification/v4/qe/identity".into(),
        (
            vec![(
                "SGX-Enclave-Identity-Issuer-Chain",
                enc(&c.qe_identity_issuer_chain),
            )],
            format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                c.qe_identity,
                hex(&c.qe_identity_signature)
            )
            .into_bytes(),
        ),
    );
    r.insert(
        "/sgx/certification/v4/rootcacrl".into(),
        (vec![], hex(&c.root_ca_crl).into_bytes()),
    );
    r
}

/// Serves `routes` on 127.0.0.1:0 until the returned sender is dropped; logs request URIs.
async fn serve(routes: Routes) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(routes);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let routes = Arc::clone(&routes);
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let routes = Arc::clone(&routes);
                    let seen = Arc::clone(&seen);
                    async move {
                        seen.lock().unwrap().push(req.uri().to_string());
                        let resp = match routes.get(req.uri().path()) {
                            Some((headers, body)) => {
                                let mut r = Response::new(Full::new(Bytes::from(body.clone())));
                                for (k, v) in headers {
                                    r.headers_mut().insert(*k, v.parse().unwrap());
                                }
                                r
                            }
                            None => {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                                r
                            }
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// What fetching `quote`'s collateral from a PCCS serving `routes` fails with.
async fn fetch_error(routes: Routes, quote: &[u8]) -> PccsError {
    let (url, _) = serve(routes).await;
    PccsClient::new(&url)
        .unwrap()
        .fetch(quote)
        .await
        .expect_err("the fetch should fail")
}

#[tokio::test]
async fn fetched_collateral_verifies_the_sample_quote_like_the_published_one() {
    let quote = sample("tdx_quote");
    let published = dcap::parse_collateral(&sample("tdx_quote_collateral.json")).unwrap();
    let (url, seen) = serve(routes(&published)).await;
    let fetched = PccsClient::new(&url).unwrap().fetch(&quote).await.unwrap();
    assert_eq!(fetched.tcb_info, published.tcb_info);
    assert_eq!(fetched.qe_identity, published.qe_identity);
    assert_eq!(fetched.pck_crl, published.pck_crl);
    assert_eq!(fetched.root_ca_crl, published.root_ca_crl);
    let v = dcap::verify(&quote, &fetched, NOW, &TcbPolicy::default()).unwrap();
    assert_eq!(v.tcb_status, "UpToDate");
    // The requests name the quote's FMSPC and PCK CA, as Intel's API wants.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|u| u.starts_with("/tdx/certification/v4/tcb?fmspc=")
                && u.ends_with("&update=standard")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|u| u.contains("pckcrl?ca=") && u.ends_with("&encoding=der")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_lying_or_broken_pccs_is_an_error_naming_the_request() {
    let quote = sample("tdx_quote");
    let published = dcap::parse_collateral(&sample("tdx_quote_collateral.json")).unwrap();

    // Tampered TCB info: fetched fine, refused by verification.
    let mut lie = published.clone();
    lie.tcb_info = lie.tcb_info.replacen("\"tcbLevels\"", "\"tcbLevels\" ", 1);
    assert_ne!(lie.tcb_info, published.tcb_info);
    let (url, _) = serve(routes(&lie)).await;
    let fetched = PccsClient::new(&url).unwrap().fetch(&quote).await.unwrap();
    assert!(matches!(
        dcap::verify(&quote, &fetched, NOW, &TcbPolicy::default()),
        Err(dcap::DcapError::Invalid(_))
    ));

    // A missing issuer-chain header.
    let mut r = routes(&published);
    r.get_mut("/tdx/certification/v4/qe/identity")
        .unwrap()
        .0
        .clear();
    let e = fetch_error(r, &quote).await;
    assert!(
        matches!(
            e,
            PccsError::MissingHeader {
                header: "SGX-Enclave-Identity-Issuer-Chain",
                ..
            }
        ),
        "{e}"
    );

    // A PCCS without the root CA CRL: HTTP 404 on that URL.
    let mut r = routes(&published);
    r.remove("/sgx/certification/v4/rootcacrl");
    let e = fetch_error(r, &quote).await;
    assert!(
        matches!(e, PccsError::Status { status: 404, ref url } if url.ends_with("/rootcacrl")),
        "{e}"
    );

    // Nobody listening.
    let e = PccsClient::new("http://127.0.0.1:1")
        .unwrap()
        .fetch(&quote)
        .await
        .unwrap_err();
    assert!(matches!(e, PccsError::Http { .. }), "{e}");

    // A devtee quote has no PCK chain to fetch for.
    let (sim, _) = attestmesh_tee::devtee::simulated_attestation(
        alloy_primitives::Address::ZERO,
        Default::default(),
        [0; 64],
    );
    assert!(matches!(
        PccsClient::new(&url).unwrap().fetch(&sim).await,
        Err(PccsError::Quote(_))
    ));
}
