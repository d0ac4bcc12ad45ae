//! The NATS side of ingest: pull from `ALERTS`, decide, publish to
//! `talon.alerts.accepted.<p>` (or `talon.dlq.ingest`), and ack each input
//! only once its output has its JetStream ack (`talon_kit::pipeline`).

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage};
use talon_kit::pipeline::{self, Outcome, StageError};
use talon_proto::key::derived_msg_id;
use talon_proto::names::{HEADER_MSG_ID, HEADER_SOURCE};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::process::{decide, Decision, Input, Settings};

/// Inputs handled together: their outputs are published back to back and
/// their acks awaited together.
pub const BATCH: usize = 512;

/// Pulls and processes until `shutdown` fires.
pub async fn run(
    js: jetstream::Context,
    consumer: PullConsumer,
    settings: Settings,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let dead = pipeline::DeadLetters::new(js.clone(), talon_proto::names::Stage::Ingest);
    pipeline::run(consumer, BATCH, metrics.consume, dead, shutdown, |msg| {
        let (js, settings) = (&js, &settings);
        async move { start_one(js, &msg, settings).await }
    })
    .await
}

/// Decides one input and starts its publish.
async fn start_one(
    js: &jetstream::Context,
    msg: &jetstream::Message,
    settings: &Settings,
) -> Result<Outcome, StageError> {
    let info = msg.info().map_err(|e| StageError::NoInfo(e.to_string()))?;
    let header = |name: &str| {
        msg.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    };
    let input = Input {
        subject: msg.subject.as_str(),
        payload: &msg.payload,
        msg_id: header(HEADER_MSG_ID),
        source: header(HEADER_SOURCE),
        stream_seq: info.stream_sequence,
        published: info.published,
    };
    match decide(&input, settings) {
        Decision::Forward { subject, alert } => {
            let body = serde_json::to_vec(&alert)?;
            let ack = js
                .send_publish(
                    subject,
                    PublishMessage::build()
                        .payload(body.into())
                        .message_id(&alert.id),
                )
                .await?;
            Ok(Outcome::new("accepted").with(ack))
        }
        Decision::ConditionFalse { id } => {
            tracing::debug!(alert = %id, "condition false: not forwarded");
            Ok(Outcome::new("condition_false"))
        }
        Decision::Reject(letter) => {
            tracing::info!(seq = input.stream_seq, reason = ?letter.reason, "alert dead-lettered");
            let msg_id = derived_msg_id(
                talon_proto::names::MsgIdDomain::DeadLetter(talon_proto::names::Stage::Ingest),
                &format!("{}:{}", info.stream, info.stream_sequence),
            );
            let ack = talon_kit::dlq::publish(js, &letter, &msg_id).await?;
            Ok(Outcome::new("rejected").with(ack))
        }
    }
}
