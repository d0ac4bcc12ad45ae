//! enrich's metrics, registered in the service's own registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use talon_proto::names::metrics::*;

#[derive(Clone)]
pub struct Metrics {
    /// Inputs by outcome: routed, unrouted, rejected.
    pub alerts: IntCounterVec,
    /// Messages published per channel.
    pub routed: IntCounterVec,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let alerts = IntCounterVec::new(
            Opts::new(
                ENRICH_ALERTS_TOTAL,
                "Alerts by outcome: routed, unrouted, rejected",
            ),
            &["outcome"],
        )?;
        let routed = IntCounterVec::new(
            Opts::new(
                ENRICH_ROUTED_TOTAL,
                "Alerts published to each channel subject",
            ),
            &["channel"],
        )?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                ENRICH_BATCH_SECONDS,
                "Time from pulling a batch to acking it",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(ENRICH_BATCH_SIZE, "Inputs per batch")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 11)?),
        )?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(routed.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(Metrics {
            alerts,
            routed,
            batch_seconds,
            batch_size,
        })
    }
}
