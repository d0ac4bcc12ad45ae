//! Ingest's metrics, registered in the service's own registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use talon_proto::names::metrics::*;

#[derive(Clone)]
pub struct Metrics {
    /// NATS input by outcome.
    pub alerts: IntCounterVec,
    /// HTTP requests by status.
    pub http_requests: IntCounterVec,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let alerts = IntCounterVec::new(
            Opts::new(
                INGEST_ALERTS_TOTAL,
                "Inputs from Server.Internal.Alerts by outcome",
            ),
            &["outcome"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(INGEST_HTTP_REQUESTS_TOTAL, "HTTP edge requests by status"),
            &["status"],
        )?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                INGEST_BATCH_SECONDS,
                "Time from pulling a batch to acking it",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(INGEST_BATCH_SIZE, "Inputs per batch")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 11)?),
        )?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(Metrics {
            alerts,
            http_requests,
            batch_seconds,
            batch_size,
        })
    }
}
