//! `/healthz` and `/metrics` over plain HTTP/1.1 for the operator's probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use attestmesh_metrics::Scrape;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Shared;

/// Health as seen by a probe: the head, what is indexed, and the lag between them.
pub fn health_json(s: &Shared) -> (bool, String) {
    let head = s.head.load(Ordering::Relaxed);
    let indexed = s.hub.height();
    let lag = indexed.map_or(head, |h| head.saturating_sub(h));
    let ok = s.head_known.load(Ordering::Relaxed) && lag <= s.healthy_lag_blocks;
    let body = serde_json::json!({
        "ok": ok,
        "head": head,
        "indexed": indexed,
        "lag_blocks": lag,
        "clusters": s.cluster_count.load(Ordering::Relaxed),
        "subscribers": s.hub.subscriber_count(),
        "pubkey": s.pubkey.to_string(),
    });
    (ok, body.to_string())
}

/// `/metrics`: what the follower has seen and indexed, and what the push service did. OpenMetrics
/// text by prometheus-client.
fn metrics(s: &Shared) -> String {
    let head = s.head.load(Ordering::Relaxed);
    let indexed = s.hub.height().unwrap_or(0);
    let c = &s.hub.counters;
    let mut out = Scrape::new();
    out.gauge(
        "attestmesh_indexer_head_block",
        "Chain head seen by the follower.",
        head,
    );
    out.gauge(
        "attestmesh_indexer_indexed_block",
        "Last block whose logs are indexed.",
        indexed,
    );
    out.gauge(
        "attestmesh_indexer_lag_blocks",
        "Blocks between the head and the indexed height.",
        head.saturating_sub(indexed),
    );
    out.gauge(
        "attestmesh_indexer_clusters",
        "Clusters followed (deployed by the factory).",
        s.cluster_count.load(Ordering::Relaxed),
    );
    out.gauge(
        "attestmesh_indexer_subscribers",
        "Open Subscribe streams.",
        s.hub.subscriber_count() as u64,
    );
    for (name, help, v) in [
        (
            "attestmesh_indexer_sessions_total",
            "Subscribe streams opened.",
            c.sessions.load(Ordering::Relaxed),
        ),
        (
            "attestmesh_indexer_pushes_sent_total",
            "Signed pushes sent.",
            c.pushes_sent.load(Ordering::Relaxed),
        ),
        (
            "attestmesh_indexer_slow_disconnects_total",
            "Subscribers dropped for not keeping up.",
            c.slow_disconnects.load(Ordering::Relaxed),
        ),
        (
            "attestmesh_indexer_logs_indexed_total",
            "Cluster logs indexed.",
            s.logs_indexed.load(Ordering::Relaxed),
        ),
        (
            "attestmesh_indexer_rpc_errors_total",
            "Chain RPC calls that failed.",
            s.rpc_errors.load(Ordering::Relaxed),
        ),
        (
            "attestmesh_indexer_replay_pages_total",
            "eth_getLogs pages read for replays.",
            c.replay_pages.load(Ordering::Relaxed),
        ),
        (
            "attestmesh_indexer_subscriptions_refused_total",
            "Subscribe requests refused over a cap (RESOURCE_EXHAUSTED).",
            c.refused.load(Ordering::Relaxed),
        ),
    ] {
        out.counter(name, help, v);
    }
    out.render()
}

fn route(s: &Shared, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/healthz" => {
            let (ok, body) = health_json(s);
            let st = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (st, "application/json", body)
        }
        "/metrics" => (StatusCode::OK, attestmesh_metrics::CONTENT_TYPE, metrics(s)),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = route(&s, req.uri().path());
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
        });
    }
}
