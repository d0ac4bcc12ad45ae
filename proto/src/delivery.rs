//! A delivery outcome, published by notify on `talon.deliveries.<alert-id>`
//! (stream `DELIVERIES`) for every attempt's end: where an alert went, so
//! the console can show it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The channel took it.
    Sent,
    /// This attempt failed; another follows.
    Retrying,
    /// Given up: on `talon.dlq.notify`, to be replayed.
    DeadLettered,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub alert_id: String,
    pub channel: String,
    pub outcome: Outcome,
    /// Which attempt this was (1 for the first).
    pub attempt: u64,
    pub at: DateTime<Utc>,
    /// Why it failed (retrying, dead-lettered); secrets never appear in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
