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
    /// Groups with alerts waiting for their next message, by channel (as
    /// this replica last counted them).
    pub groups_open: IntGaugeVec,
    /// Group messages by channel and outcome: sent, skipped (sent before),
    /// retry, dead.
    pub group_messages: IntCounterVec,
    /// Alerts counted in one group message, by channel.
    pub group_alerts: HistogramVec,
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
        let groups_open = IntGaugeVec::new(
            Opts::new(
                NOTIFY_GROUPS_OPEN,
                "Groups with alerts waiting for their next message, by channel",
            ),
            &["channel"],
        )?;
        let group_messages = IntCounterVec::new(
            Opts::new(
                NOTIFY_GROUP_MESSAGES_TOTAL,
                "Group messages by channel and outcome",
            ),
            &["channel", "outcome"],
        )?;
        let group_alerts = HistogramVec::new(
            HistogramOpts::new(NOTIFY_GROUP_ALERTS, "Alerts counted in one group message")
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 8)?),
            &["channel"],
        )?;
        registry.register(Box::new(groups_open.clone()))?;
        registry.register(Box::new(group_messages.clone()))?;
        registry.register(Box::new(group_alerts.clone()))?;
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
            groups_open,
            group_messages,
            group_alerts,
        })
    }
}
