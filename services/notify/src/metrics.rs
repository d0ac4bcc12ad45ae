//! notify's metrics, registered in the service's own registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use talon_proto::names::metrics::*;

#[derive(Clone)]
pub struct Metrics {
    /// Attempts by channel and outcome: sent, skipped (already sent),
    /// retry, dead.
    pub deliveries: IntCounterVec,
    /// Time one successful delivery took, by channel.
    pub delivery_seconds: HistogramVec,
    /// Retries scheduled, by channel.
    pub retries: IntCounterVec,
    /// Dead letters, by channel.
    pub dead_letters: IntCounterVec,
    /// Deliveries in progress, by channel.
    pub in_flight: IntGaugeVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let deliveries = IntCounterVec::new(
            Opts::new(
                NOTIFY_DELIVERIES_TOTAL,
                "Delivery attempts by channel and outcome",
            ),
            &["channel", "outcome"],
        )?;
        let delivery_seconds = HistogramVec::new(
            HistogramOpts::new(NOTIFY_DELIVERY_SECONDS, "Time a successful delivery took")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
            &["channel"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(NOTIFY_RETRIES_TOTAL, "Retries scheduled by channel"),
            &["channel"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                NOTIFY_DEAD_LETTERS_TOTAL,
                "Deliveries dead-lettered by channel",
            ),
            &["channel"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new(NOTIFY_IN_FLIGHT, "Deliveries in progress by channel"),
            &["channel"],
        )?;
        registry.register(Box::new(deliveries.clone()))?;
        registry.register(Box::new(delivery_seconds.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(dead_letters.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Metrics {
            deliveries,
            delivery_seconds,
            retries,
            dead_letters,
            in_flight,
        })
    }
}
