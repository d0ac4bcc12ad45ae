//! The small HTTP server every service runs (DESIGN §7): `/healthz` (the
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
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `/readyz` and `/metrics` look at.
#[derive(Clone)]
pub struct Health {
    client: async_nats::Client,
    streams_ready: Arc<AtomicBool>,
    registry: Registry,
}

impl Health {
    pub fn new(client: async_nats::Client, registry: Registry) -> Health {
        Health {
            client,
            streams_ready: Arc::new(AtomicBool::new(false)),
            registry,
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

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
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

/// Binds `addr` (`127.0.0.1:0` picks a free port).
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `router` on `listener` until `shutdown` fires, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
