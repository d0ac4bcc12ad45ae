//! The NATS side of the rules: pull monitoring rows from `MONITORING`
//! (durable consumer `rules`), evaluate every rule watching the row's
//! artifact, publish each raised alert to `Server.Internal.Alerts` (with
//! `Talon-Source: rule:<name>`), dead-letter what a rule cannot render to
//! `talon.dlq.rules`, and ack the row only once all of that is acked
//! (`talon_kit::pipeline`).

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage};
use talon_kit::inventory::Inventory;
use talon_kit::pipeline::{self, Outcome, StageError};
use talon_proto::key::derived_msg_id;
use talon_proto::names::{Stage, HEADER_MSG_ID, HEADER_SOURCE, STREAM_MONITORING, SUBJECT_ALERTS};
use talon_proto::DeadLetter;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::rules::{Count, Evaluated, Rule, Rules};
use crate::stateful::{Counted, StateError, States};

/// Rows handled together.
pub const BATCH: usize = 256;

/// The identity of a row, from which everything it causes derives its
/// `Nats-Msg-Id`: the producer's `Nats-Msg-Id` when it sent one (so a row
/// published twice raises one alert), else its place in `MONITORING`.
pub fn row_identity(msg_id: Option<&str>, stream_seq: u64) -> String {
    match msg_id {
        Some(id) if !id.is_empty() => format!("msg-id:{id}"),
        _ => format!("{STREAM_MONITORING}:{stream_seq}"),
    }
}

/// The `Nats-Msg-Id` of the alert `rule` raises for the row `row`.
pub fn alert_msg_id(rule: &str, row: &str) -> String {
    derived_msg_id(
        talon_proto::names::MsgIdDomain::Rule,
        &format!("{rule}\u{0}{row}"),
    )
}

/// The `Nats-Msg-Id` of the dead letter of the row `row` (for `rule`, or
/// for the row itself when it is not a row at all).
pub fn dead_letter_msg_id(rule: Option<&str>, row: &str) -> String {
    derived_msg_id(
        talon_proto::names::MsgIdDomain::DeadLetter(Stage::Rules),
        &format!("{}\u{0}{row}", rule.unwrap_or("")),
    )
}

/// `Talon-Source` of an alert raised by `rule`.
pub fn source_header(rule: &str) -> String {
    format!("rule:{rule}")
}

/// Pulls and evaluates rows until `shutdown` fires; `states` keeps the
/// counts of the rules with state (there are none when it is `None`).
pub async fn run(
    js: jetstream::Context,
    consumer: PullConsumer,
    rules: Rules,
    states: Option<States>,
    inventory: Inventory,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let loop_metrics = metrics.rules.clone();
    let dead = pipeline::DeadLetters::new(js.clone(), talon_proto::names::Stage::Rules);
    let max_alert = max_alert_bytes(&js);
    pipeline::run(consumer, BATCH, loop_metrics, dead, shutdown, |msg| {
        let (js, rules, states, inventory, metrics) = (&js, &rules, &states, &inventory, &metrics);
        async move {
            start_row(
                js,
                &msg,
                rules,
                states.as_ref(),
                inventory,
                metrics,
                max_alert,
            )
            .await
        }
    })
    .await
}

/// Evaluates one row and starts its publishes.
async fn start_row(
    js: &jetstream::Context,
    msg: &jetstream::Message,
    rules: &Rules,
    states: Option<&States>,
    inventory: &Inventory,
    metrics: &Metrics,
    max_alert: usize,
) -> Result<Outcome, StageError> {
    let info = msg.info().map_err(|e| StageError::NoInfo(e.to_string()))?;
    let msg_id = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_MSG_ID))
        .map(|v| v.as_str());
    let row = row_identity(msg_id, info.stream_sequence);
    let dead_letter = |reason: String, rule: Option<&str>| {
        let mut letter = DeadLetter::new(
            Stage::Rules,
            reason,
            msg.subject.as_str(),
            Some(info.stream_sequence),
            &msg.payload,
        );
        if let Some(id) = msg_id {
            letter
                .headers
                .insert(HEADER_MSG_ID.to_owned(), id.to_owned());
        }
        let id = dead_letter_msg_id(rule, &row);
        async move { talon_kit::dlq::publish(js, &letter, &id).await }
    };
    let Evaluated {
        row: columns,
        verdicts,
    } = match rules.evaluate(msg.subject.as_str(), &msg.payload, info.published, &|id| {
        inventory.get(id)
    }) {
        Ok(v) => v,
        Err(reason) => {
            tracing::info!(seq = info.stream_sequence, reason = ?reason, "monitoring row dead-lettered");
            let ack = dead_letter(reason, None).await?;
            return Ok(Outcome::new("dead").with(ack));
        }
    };
    let (mut raised, mut dead) = (false, false);
    let mut acks = Vec::new();
    for verdict in verdicts {
        if let Some((rule, count)) = &verdict.count {
            let label = match count_row(
                states,
                rule,
                count,
                &row,
                &columns,
                info.published,
                inventory,
            )
            .await
            {
                Ok(Counted::Raised) => {
                    raised = true;
                    "raised"
                }
                Ok(Counted::Counted | Counted::Again) => "counted",
                Err(e @ (StateError::Render(_) | StateError::TooLarge { .. })) => {
                    let reason = match e {
                        StateError::TooLarge { .. } => format!("rule {:?}: {e}", verdict.rule),
                        _ => e.to_string(),
                    };
                    tracing::info!(seq = info.stream_sequence, rule = %verdict.rule, reason = ?reason, "monitoring row dead-lettered");
                    let ack = dead_letter(reason, Some(verdict.rule)).await?;
                    acks.push(ack);
                    dead = true;
                    "dead"
                }
                Err(e) => return Err(StageError::State(e.to_string())),
            };
            metrics
                .rule_evaluations
                .with_label_values(&[verdict.rule, label])
                .inc();
            continue;
        }
        let label = match verdict.outcome {
            Ok(Some(alert)) => {
                // A Value always serializes: this error is never returned.
                let body = serde_json::to_vec(&alert)?;
                if body.len() > max_alert {
                    // Retrying cannot make it fit.
                    let reason = format!(
                        "rule {:?}: the alert is {} bytes, over the {max_alert} a NATS message may hold",
                        verdict.rule,
                        body.len()
                    );
                    tracing::info!(seq = info.stream_sequence, rule = %verdict.rule, reason = ?reason, "monitoring row dead-lettered");
                    acks.push(dead_letter(reason, Some(verdict.rule)).await?);
                    dead = true;
                    metrics
                        .rule_evaluations
                        .with_label_values(&[verdict.rule, "dead"])
                        .inc();
                    continue;
                }
                let ack = js
                    .send_publish(
                        SUBJECT_ALERTS,
                        PublishMessage::build()
                            .payload(body.into())
                            .message_id(alert_msg_id(verdict.rule, &row))
                            .header(HEADER_SOURCE, source_header(verdict.rule).as_str()),
                    )
                    .await?;
                acks.push(ack);
                raised = true;
                "raised"
            }
            Ok(None) => "unmatched",
            Err(e) => {
                tracing::info!(seq = info.stream_sequence, rule = %verdict.rule, reason = ?e.to_string(), "monitoring row dead-lettered");
                let ack = dead_letter(e.to_string(), Some(verdict.rule)).await?;
                acks.push(ack);
                dead = true;
                "dead"
            }
        };
        metrics
            .rule_evaluations
            .with_label_values(&[verdict.rule, label])
            .inc();
    }
    let label = match (dead, raised) {
        (true, _) => "dead",
        (false, true) => "raised",
        (false, false) => "unmatched",
    };
    Ok(Outcome { label, acks })
}

/// The largest alert (or rule state entry) the server takes: its
/// `max_payload`, less room for the headers.
pub fn max_alert_bytes(js: &jetstream::Context) -> usize {
    js.client()
        .server_info()
        .max_payload
        .saturating_sub(HEADER_ROOM)
}

/// Bytes kept free in a message for its headers.
const HEADER_ROOM: usize = 4096;

/// Counts `row` (the row identity) for a rule with state; the alert a
/// count raises is made from the row as the rule's template says.
async fn count_row(
    states: Option<&States>,
    rule: &Rule,
    count: &Count,
    row: &str,
    columns: &serde_json::Map<String, serde_json::Value>,
    published: chrono::DateTime<chrono::Utc>,
    inventory: &Inventory,
) -> Result<Counted, StateError> {
    let (Some(states), Some(kind)) = (states, rule.kind) else {
        return Err(StateError::Store("rule state is not open".into()));
    };
    let clients = |id: &str| inventory.get(id);
    let build = |raise: &crate::counting::Raise| {
        rule.alert(
            columns,
            published,
            &clients,
            Some((raise, chrono::Utc::now())),
        )
    };
    states.count_row(rule, kind, row, count, &build).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_derive_from_the_row_and_the_rule() {
        let by_seq = row_identity(None, 7);
        assert_eq!(by_seq, "MONITORING:7");
        assert_eq!(row_identity(Some(""), 7), by_seq);
        assert_eq!(row_identity(Some("m-1"), 7), "msg-id:m-1");
        assert_eq!(alert_msg_id("a", &by_seq), alert_msg_id("a", &by_seq));
        assert_ne!(alert_msg_id("a", &by_seq), alert_msg_id("b", &by_seq));
        assert_ne!(
            alert_msg_id("a", "MONITORING:7"),
            alert_msg_id("a", "MONITORING:8")
        );
        assert_ne!(
            alert_msg_id("a", &by_seq),
            dead_letter_msg_id(Some("a"), &by_seq)
        );
        assert_ne!(
            dead_letter_msg_id(Some("a"), &by_seq),
            dead_letter_msg_id(None, &by_seq)
        );
        assert_eq!(
            source_header("Server.Monitor.Honey"),
            "rule:Server.Monitor.Honey"
        );
    }
}
