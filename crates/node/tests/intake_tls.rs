//! The intake reaches an Indexer over TLS, as in production, where the Indexer's CVM is reachable
//! only through the dstack gateway on 443 with TLS terminated there: a real Indexer behind a
//! TLS-terminating front, real anvil and contracts, the registry naming an `https://` endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intake_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use attestmesh_testkit::tls::tls_front;
use intake_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_arrive_over_https_and_an_untrusted_certificate_is_refused() {
    let w = world().await;
    let ix = w.indexer(0x1d, "ix", None).await;
    let front = tls_front(ix.grpc_addr).await.unwrap();
    let endpoint = format!("https://localhost:{}", front.addr.port());
    w.set_registry(&endpoint, ix.pubkey).await;

    // Without the front's CA the handshake fails: no session, ever, and nothing verified.
    let untrusting = start_intake(w.intake_config());
    assert!(
        eventually(Duration::from_secs(10), || untrusting
            .get(|s| &s.transport_teardowns)
            >= 2)
        .await,
        "the intake keeps retrying the untrusted endpoint"
    );
    assert_eq!(untrusting.get(|s| &s.sessions), 0);
    assert!(!untrusting.stats.subscribed.load(Ordering::Relaxed));
    untrusting.stop().await;

    // Trusting the front's CA (INDEXER_CA_FILE on a dev gateway): subscribed, wake-ups arrive.
    let mut cfg = w.intake_config();
    cfg.extra_ca_pem = front.ca_pem.clone().into_bytes();
    let mut it = start_intake(cfg);
    assert!(eventually(Duration::from_secs(10), || it.get(|s| &s.sessions) >= 1).await);
    assert!(it.stats.subscribed.load(Ordering::Relaxed));
    let block = w.send_a_to_b(0x51).await;
    let wake = it
        .next_wake(Duration::from_secs(10))
        .await
        .expect("a wake-up over TLS");
    assert_eq!(wake.block_number, block);
    assert!(it.get(|s| &s.pushes_verified) >= 1);

    // The Indexer goes away: the subscription is reported down.
    let _tee = ix.shutdown().await;
    assert!(
        eventually(Duration::from_secs(10), || !it
            .stats
            .subscribed
            .load(Ordering::Relaxed))
        .await
    );
    it.stop().await;
}

/// The devnet's and production's path: the Indexer's name `<app id>-<port>.<domain>` on the
/// dev gateway, which terminates TLS under its dev CA; the agent dials GATEWAY_CONNECT (no DNS
/// here) and verifies the gateway's certificate for that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_ups_arrive_through_the_gateways_terminating_form() {
    use attestmesh_net::gateway::{Gateway, GatewayConfig, Routes};
    let w = world().await;
    let ix = w.indexer(0x1d, "ix", None).await;
    let ca = attestmesh_net::tls::dev_ca("mesh.test").unwrap();
    let mut routes = Routes::new();
    routes.insert("0x1d1d", std::net::Ipv4Addr::LOCALHOST.into());
    let gw = Gateway::bind(GatewayConfig {
        listen: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
        domain: "mesh.test".into(),
        routes: attestmesh_net::gateway::RouteTable::new(routes),
        tls: Some(
            attestmesh_net::tls::terminating_server_config(
                ca.leaf_pem.as_bytes(),
                ca.leaf_key_pem.as_bytes(),
            )
            .unwrap(),
        ),
    })
    .await
    .unwrap();
    let gw_addr = gw.local_addr().unwrap();
    let serving = tokio::spawn(gw.serve(std::future::pending()));
    let endpoint = format!("https://1d1d-{}.mesh.test", ix.grpc_addr.port());
    w.set_registry(&endpoint, ix.pubkey).await;

    let mut cfg = w.intake_config();
    cfg.extra_ca_pem = ca.ca_pem.into_bytes();
    cfg.gateway_connect = Some(("mesh.test".into(), gw_addr));
    let mut it = start_intake(cfg);
    assert!(eventually(Duration::from_secs(10), || it.get(|s| &s.sessions) >= 1).await);
    let block = w.send_a_to_b(0x52).await;
    let wake = it
        .next_wake(Duration::from_secs(10))
        .await
        .expect("a wake-up through the gateway");
    assert_eq!(wake.block_number, block);
    it.stop().await;
    serving.abort();
}
