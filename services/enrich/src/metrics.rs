//! enrich's metrics, registered in the service's own registry.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use talon_kit::pipeline::{LoopMetricNames, LoopMetrics};
use talon_proto::names::metrics::*;

#[derive(Clone)]
pub struct Metrics {
    /// Inputs by outcome (routed, unrouted, rejected), batch time and size.
    pub consume: LoopMetrics,
    /// Messages published per channel.
    pub routed: IntCounterVec,
    /// Alerts hidden per silence.
    pub silenced: IntCounterVec,
    /// Silences active now.
    pub silences_active: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let consume = LoopMetrics::register(
            registry,
            LoopMetricNames {
                inputs: (
                    ENRICH_ALERTS_TOTAL,
                    "Alerts by outcome: routed, unrouted, silenced, rejected",
                ),
                batch_seconds: ENRICH_BATCH_SECONDS,
                batch_size: ENRICH_BATCH_SIZE,
            },
        )?;
        let routed = IntCounterVec::new(
            Opts::new(
                ENRICH_ROUTED_TOTAL,
                "Alerts published to each channel subject",
            ),
            &["channel"],
        )?;
        registry.register(Box::new(routed.clone()))?;
        let silenced = IntCounterVec::new(
            Opts::new(ENRICH_SILENCED_TOTAL, "Alerts each silence hid"),
            &["silence"],
        )?;
        registry.register(Box::new(silenced.clone()))?;
        let silences_active = IntGauge::new(
            ENRICH_SILENCES_ACTIVE,
            "Silences active now on this replica",
        )?;
        registry.register(Box::new(silences_active.clone()))?;
        Ok(Metrics {
            consume,
            routed,
            silenced,
            silences_active,
        })
    }
}
