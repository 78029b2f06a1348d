//! `/healthz` and `/metrics` over plain HTTP/1.1 for the operator's probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

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

fn metrics(s: &Shared) -> String {
    let head = s.head.load(Ordering::Relaxed);
    let indexed = s.hub.height().unwrap_or(0);
    let c = &s.hub.counters;
    format!(
        "# TYPE attestmesh_indexer_head_block gauge\nattestmesh_indexer_head_block {head}\n\
         # TYPE attestmesh_indexer_indexed_block gauge\nattestmesh_indexer_indexed_block {indexed}\n\
         # TYPE attestmesh_indexer_lag_blocks gauge\nattestmesh_indexer_lag_blocks {}\n\
         # TYPE attestmesh_indexer_clusters gauge\nattestmesh_indexer_clusters {}\n\
         # TYPE attestmesh_indexer_subscribers gauge\nattestmesh_indexer_subscribers {}\n\
         # TYPE attestmesh_indexer_sessions_total counter\nattestmesh_indexer_sessions_total {}\n\
         # TYPE attestmesh_indexer_pushes_sent_total counter\nattestmesh_indexer_pushes_sent_total {}\n\
         # TYPE attestmesh_indexer_slow_disconnects_total counter\nattestmesh_indexer_slow_disconnects_total {}\n\
         # TYPE attestmesh_indexer_logs_indexed_total counter\nattestmesh_indexer_logs_indexed_total {}\n\
         # TYPE attestmesh_indexer_rpc_errors_total counter\nattestmesh_indexer_rpc_errors_total {}\n\
         # TYPE attestmesh_indexer_replay_pages_total counter\nattestmesh_indexer_replay_pages_total {}\n\
         # TYPE attestmesh_indexer_subscriptions_refused_total counter\nattestmesh_indexer_subscriptions_refused_total {}\n",
        head.saturating_sub(indexed),
        s.cluster_count.load(Ordering::Relaxed),
        s.hub.subscriber_count(),
        c.sessions.load(Ordering::Relaxed),
        c.pushes_sent.load(Ordering::Relaxed),
        c.slow_disconnects.load(Ordering::Relaxed),
        s.logs_indexed.load(Ordering::Relaxed),
        s.rpc_errors.load(Ordering::Relaxed),
        c.replay_pages.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
    )
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
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics(s)),
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
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
