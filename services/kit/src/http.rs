//! The small HTTP server every service runs: `/healthz` (the
//! process is alive), `/readyz` (NATS connected and the service's streams
//! exist), `/metrics` (Prometheus text). Services merge their own routes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use talon_proto::names::{metrics as names, STREAM_DLQ};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `/readyz` and `/metrics` look at.
#[derive(Clone)]
pub struct Health {
    client: async_nats::Client,
    streams_ready: Arc<AtomicBool>,
    registry: Registry,
    /// The size of the `DLQ` stream (bytes, messages), read at each scrape.
    dlq: Option<(IntGauge, IntGauge)>,
}

/// How long a scrape waits for the `DLQ` stream's size.
const DLQ_INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

impl Health {
    pub fn new(client: async_nats::Client, registry: Registry) -> Health {
        let dlq = dlq_gauges(&registry)
            .map_err(|e| tracing::warn!(error = %e, "no DLQ size metrics"))
            .ok();
        Health {
            client,
            streams_ready: Arc::new(AtomicBool::new(false)),
            registry,
            dlq,
        }
    }

    /// Called once the service's streams and consumers exist.
    pub fn set_streams_ready(&self, ready: bool) {
        self.streams_ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.streams_ready.load(Ordering::SeqCst) && crate::nats::is_connected(&self.client)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn health_routes(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if !crate::nats::is_connected(&health.client) {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "streams not ready\n")
    }
}

/// `talon_dlq_bytes` and `talon_dlq_messages`, registered in `registry`.
fn dlq_gauges(registry: &Registry) -> prometheus::Result<(IntGauge, IntGauge)> {
    let bytes = IntGauge::new(
        names::DLQ_BYTES,
        "Bytes in the DLQ stream (capped at [nats].dlq_max_bytes, oldest dropped first)",
    )?;
    let messages = IntGauge::new(names::DLQ_MESSAGES, "Dead letters in the DLQ stream")?;
    registry.register(Box::new(bytes.clone()))?;
    registry.register(Box::new(messages.clone()))?;
    Ok((bytes, messages))
}

/// Sets the DLQ gauges from the stream's info; leaves them as they were
/// when NATS does not answer in time.
async fn refresh_dlq(health: &Health) {
    let Some((bytes, messages)) = &health.dlq else {
        return;
    };
    let js = async_nats::jetstream::new(health.client.clone());
    let info = tokio::time::timeout(DLQ_INFO_TIMEOUT, async {
        let mut stream = js.get_stream(STREAM_DLQ).await.ok()?;
        stream.info().await.ok().map(|i| i.state.clone())
    })
    .await;
    if let Ok(Some(state)) = info {
        bytes.set(i64::try_from(state.bytes).unwrap_or(i64::MAX));
        messages.set(i64::try_from(state.messages).unwrap_or(i64::MAX));
    }
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    refresh_dlq(&health).await;
    let mut out = Vec::new();
    match TextEncoder::new().encode(&health.registry.gather(), &mut out) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The token of the request's `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Is `given` one of `tokens`? Each is compared in constant time, so a
/// wrong token's timing says nothing of the right one.
pub fn token_matches(tokens: &[String], given: &str) -> bool {
    tokens
        .iter()
        .fold(false, |ok, t| ok | same(t.as_bytes(), given.as_bytes()))
}

/// Is the request's bearer token one of `tokens`? No tokens: nothing is
/// authorized.
pub fn bearer_ok(headers: &axum::http::HeaderMap, tokens: &[String]) -> bool {
    bearer(headers).is_some_and(|given| token_matches(tokens, given))
}

/// Constant-time equality (for equal lengths).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds `addr` (`127.0.0.1:0` picks a free port).
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// What every listener of the suite enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A client must have sent a request's headers within this, or its
    /// connection is closed: a slow client cannot hold a socket.
    pub header_read_timeout: std::time::Duration,
    /// A request must be answered within this (408 otherwise); a stream
    /// (server-sent events) only needs to start within it.
    pub request_timeout: std::time::Duration,
    /// Connections open at once; one more is closed as soon as it is
    /// accepted.
    pub max_connections: usize,
    /// How long a shutdown waits for open connections to finish.
    pub drain: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(30),
            max_connections: 1024,
            drain: std::time::Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` with the default [`Limits`] until
/// `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, Limits::default()).await
}

/// Serves `router` on `listener` under `limits` until `shutdown` fires;
/// then stops accepting and gives open connections `limits.drain` to end.
/// Each connection is its own task: a slow one delays no other.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: Limits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait, not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached; a connection closed");
            continue;
        };
        // The client's address, for handlers that limit by it.
        let service = hyper_util::service::TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(limits.drain, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn bearer_tokens_are_compared_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        let tokens = vec!["tok-one".to_owned(), "tok-two".to_owned()];
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        assert!(!bearer_ok(&headers, &tokens));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok-two "),
        );
        assert_eq!(bearer(&headers), Some("tok-two"));
        assert!(bearer_ok(&headers, &tokens));
        assert!(!bearer_ok(&headers, &[]), "no tokens: nothing passes");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok-tw"),
        );
        assert!(!bearer_ok(&headers, &tokens));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic tok-two"),
        );
        assert!(!bearer_ok(&headers, &tokens));
    }
}
