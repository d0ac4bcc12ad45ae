//! The NATS side of ingest: pull from `ALERTS`, decide, publish to
//! `talon.alerts.accepted.<p>` (or `talon.dlq.ingest`), and ack each input
//! only once its output has its JetStream ack.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage, AckKind};
use futures::StreamExt;
use talon_proto::key::derived_msg_id;
use talon_proto::names::{HEADER_MSG_ID, HEADER_SOURCE};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::process::{decide, Decision, Input, Settings};

/// Inputs handled together: their outputs are published back to back and
/// their acks awaited together.
pub const BATCH: usize = 512;
/// How long a failed input waits before it comes back.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Pulls and processes until `shutdown` fires, then finishes the batch in
/// hand, naks what was pulled but not started, and returns.
pub async fn run(
    js: jetstream::Context,
    consumer: PullConsumer,
    settings: Settings,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let messages = match consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot pull from ALERTS; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_DELAY) => continue,
                }
            }
        };
        let mut batches = messages.ready_chunks(BATCH);
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => {
                    nak_pending(&mut batches).await;
                    return;
                }
                batch = batches.next() => batch,
            };
            let Some(batch) = batch else {
                break; // the pull stream ended: open a new one
            };
            let mut msgs = Vec::with_capacity(batch.len());
            for item in batch {
                match item {
                    Ok(m) => msgs.push(m),
                    Err(e) => tracing::warn!(error = %e, "pull error"),
                }
            }
            process_batch(&js, msgs, &settings, &metrics).await;
        }
    }
}

/// Naks what the client already holds, so another replica (or this one after
/// a restart) gets it at once rather than after the ack wait.
async fn nak_pending<S>(batches: &mut S)
where
    S: futures::Stream<
            Item = Vec<Result<jetstream::Message, jetstream::consumer::pull::MessagesError>>,
        > + Unpin,
{
    use futures::FutureExt;
    while let Some(Some(batch)) = batches.next().now_or_never() {
        for msg in batch.into_iter().flatten() {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
        }
    }
}

enum Pending {
    Publish(jetstream::context::PublishAckFuture, Outcome),
    Ack(Outcome),
}

#[derive(Clone, Copy)]
enum Outcome {
    Accepted,
    Rejected,
    ConditionFalse,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Rejected => "rejected",
            Outcome::ConditionFalse => "condition_false",
        }
    }
}

async fn process_batch(
    js: &jetstream::Context,
    msgs: Vec<jetstream::Message>,
    settings: &Settings,
    metrics: &Metrics,
) {
    if msgs.is_empty() {
        return;
    }
    let started = Instant::now();
    metrics.batch_size.observe(msgs.len() as f64);
    let mut pending = Vec::with_capacity(msgs.len());
    for msg in &msgs {
        pending.push(start_one(js, msg, settings).await);
    }
    for (msg, pending) in msgs.iter().zip(pending) {
        let outcome = match pending {
            Ok(Pending::Ack(outcome)) => Ok(outcome),
            Ok(Pending::Publish(ack, outcome)) => {
                ack.await.map(|_| outcome).map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(outcome) => {
                metrics.alerts.with_label_values(&[outcome.label()]).inc();
                if let Err(e) = msg.ack().await {
                    // The input comes back after the ack wait; its output
                    // carries the same Nats-Msg-Id, so no second copy.
                    tracing::warn!(error = %e, "cannot ack input");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "publish failed; input will be retried");
                let _ = msg.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
            }
        }
    }
    metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
}

/// Decides one input and starts its publish.
async fn start_one(
    js: &jetstream::Context,
    msg: &jetstream::Message,
    settings: &Settings,
) -> Result<Pending, String> {
    let info = msg
        .info()
        .map_err(|e| format!("message without JetStream info: {e}"))?;
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
            let body = serde_json::to_vec(&alert).map_err(|e| e.to_string())?;
            let ack = js
                .send_publish(
                    subject,
                    PublishMessage::build()
                        .payload(body.into())
                        .message_id(&alert.id),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(Pending::Publish(ack, Outcome::Accepted))
        }
        Decision::ConditionFalse { id } => {
            tracing::debug!(alert = %id, "condition false: not forwarded");
            Ok(Pending::Ack(Outcome::ConditionFalse))
        }
        Decision::Reject(letter) => {
            tracing::info!(seq = input.stream_seq, reason = %letter.reason, "alert dead-lettered");
            let msg_id = derived_msg_id(
                "dlq-ingest",
                &format!("{}:{}", info.stream, info.stream_sequence),
            );
            let ack = talon_kit::dlq::publish(js, &letter, &msg_id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Pending::Publish(ack, Outcome::Rejected))
        }
    }
}
