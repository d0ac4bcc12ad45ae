//! Ingest's metrics, registered in the service's own registry.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use talon_kit::pipeline::{LoopMetricNames, LoopMetrics};
use talon_proto::names::metrics::*;

#[derive(Clone)]
pub struct Metrics {
    /// NATS input by outcome (accepted, rejected, condition_false), batch
    /// time and size.
    pub consume: LoopMetrics,
    /// HTTP requests by status.
    pub http_requests: IntCounterVec,
    /// HTTP items rejected (answered, and summed up in one dead letter per
    /// request), by kind (`alert`, `row`).
    pub http_rejected_items: IntCounterVec,
    /// Monitoring rows by outcome (raised, unmatched, dead), batch time and
    /// size.
    pub rules: LoopMetrics,
    /// Rule evaluations by rule and outcome (an absent rule's raises too).
    pub rule_evaluations: IntCounterVec,
    /// When the absent clock last judged the silences, Unix seconds.
    pub absent_last_look: IntGauge,
    /// Keys followed by each absent rule.
    pub absent_keys: IntGaugeVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let consume = LoopMetrics::register(
            registry,
            LoopMetricNames {
                inputs: (
                    INGEST_ALERTS_TOTAL,
                    "Inputs from Server.Internal.Alerts by outcome",
                ),
                batch_seconds: INGEST_BATCH_SECONDS,
                batch_size: INGEST_BATCH_SIZE,
            },
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(INGEST_HTTP_REQUESTS_TOTAL, "HTTP edge requests by status"),
            &["status"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        let http_rejected_items = IntCounterVec::new(
            Opts::new(
                INGEST_HTTP_REJECTED_ITEMS_TOTAL,
                "HTTP items rejected, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(http_rejected_items.clone()))?;
        let rules = LoopMetrics::register(
            registry,
            LoopMetricNames {
                inputs: (
                    INGEST_RULE_ROWS_TOTAL,
                    "Monitoring rows read by the rules, by outcome",
                ),
                batch_seconds: INGEST_RULES_BATCH_SECONDS,
                batch_size: INGEST_RULES_BATCH_SIZE,
            },
        )?;
        let rule_evaluations = IntCounterVec::new(
            Opts::new(INGEST_RULES_TOTAL, "Rule evaluations by rule and outcome"),
            &["rule", "outcome"],
        )?;
        registry.register(Box::new(rule_evaluations.clone()))?;
        let absent_last_look = IntGauge::new(
            INGEST_ABSENT_LAST_LOOK,
            "When the absent clock last judged the silences (Unix seconds)",
        )?;
        registry.register(Box::new(absent_last_look.clone()))?;
        let absent_keys = IntGaugeVec::new(
            Opts::new(INGEST_ABSENT_KEYS, "Keys an absent rule follows"),
            &["rule"],
        )?;
        registry.register(Box::new(absent_keys.clone()))?;
        Ok(Metrics {
            consume,
            http_requests,
            http_rejected_items,
            rules,
            rule_evaluations,
            absent_last_look,
            absent_keys,
        })
    }
}
