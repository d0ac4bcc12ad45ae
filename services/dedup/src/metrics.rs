//! dedup's metrics, registered in the service's own registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};
use talon_proto::names::metrics::*;

#[derive(Clone)]
pub struct Metrics {
    pub alerts: IntCounterVec,
    /// By partition.
    pub live_windows: IntGaugeVec,
    /// By partition.
    pub store_bytes: IntGaugeVec,
    pub flush_seconds: Histogram,
    pub batch_size: Histogram,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let alerts = IntCounterVec::new(
            Opts::new(
                DEDUP_ALERTS_TOTAL,
                "Alerts by outcome: fresh, suppressed, unsuppressed",
            ),
            &["outcome"],
        )?;
        let live_windows = IntGaugeVec::new(
            Opts::new(
                DEDUP_LIVE_WINDOWS,
                "Windows not yet ended, as of the last sweep",
            ),
            &["partition"],
        )?;
        let store_bytes = IntGaugeVec::new(
            Opts::new(
                DEDUP_STORE_BYTES,
                "Size of the partition's sled store on disk",
            ),
            &["partition"],
        )?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new(
                DEDUP_FLUSH_SECONDS,
                "Group commit: write and flush of one batch",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16)?),
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(DEDUP_BATCH_SIZE, "Inputs per batch")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 11)?),
        )?;
        registry.register(Box::new(alerts.clone()))?;
        registry.register(Box::new(live_windows.clone()))?;
        registry.register(Box::new(store_bytes.clone()))?;
        registry.register(Box::new(flush_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(Metrics {
            alerts,
            live_windows,
            store_bytes,
            flush_seconds,
            batch_size,
        })
    }
}
