//! The consume loop of a stateless stage (ingest, its rules, enrich): pull
//! a batch, start every input's publishes, await all their JetStream acks,
//! then ack each input whose outputs are all acked and nak (with a growing
//! delay) the others. On shutdown it finishes the batch in hand and naks
//! what was pulled but not started.
//!
//! No input stops the stage: a handler that panics on an input is caught
//! at the input's boundary and the input dead-lettered with the panic's
//! text; an input that failed [`DEAD_AFTER`] times is dead-lettered with
//! its last error; one delivered more often than that without ever being
//! answered (the stage died on it, e.g. out of memory) is dead-lettered
//! before it is handled again. Each is acked once its dead letter is
//! stored, and the stage goes on with the next.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, context::PublishAckFuture, AckKind};
use futures::{FutureExt, StreamExt};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use talon_proto::key::derived_msg_id;
use talon_proto::DeadLetter;
use tokio_util::sync::CancellationToken;

/// How long a failed input waits before it comes back the first time; each
/// later failure doubles it, up to [`RETRY_DELAY_MAX`].
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between two tries of a failing input.
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(60);
/// Deliveries after which a failing input goes to the stage's dead-letter
/// subject (about ten minutes of failures with the delays above). The
/// consumers' `max_deliver` is twice this, so a dead letter that cannot be
/// stored at once is tried again.
pub const DEAD_AFTER: u64 = 20;

/// Where the loop's own dead letters go, and when: after `dead_after`
/// failed tries, the waits between them doubling from [`RETRY_DELAY`] to
/// `retry_delay_max`.
#[derive(Clone)]
pub struct DeadLetters {
    pub js: jetstream::Context,
    /// The stage whose letters these are.
    pub stage: talon_proto::names::Stage,
    pub dead_after: u64,
    pub retry_delay_max: Duration,
}

impl DeadLetters {
    /// The stage's dead letters, with the production limits
    /// ([`DEAD_AFTER`], [`RETRY_DELAY_MAX`]).
    pub fn new(js: jetstream::Context, stage: talon_proto::names::Stage) -> DeadLetters {
        DeadLetters {
            js,
            stage,
            dead_after: DEAD_AFTER,
            retry_delay_max: RETRY_DELAY_MAX,
        }
    }

    /// The wait before try `delivered + 1` of a failing input.
    pub fn retry_delay(&self, delivered: u64) -> Duration {
        retry_delay(delivered).min(self.retry_delay_max)
    }

    /// Starts publishing a dead letter for `msg` with `reason` (one per
    /// input: its `Nats-Msg-Id` derives from the input's stream sequence).
    pub async fn publish(
        &self,
        msg: &jetstream::Message,
        reason: String,
    ) -> Result<PublishAckFuture, StageError> {
        let (stream, seq) = msg
            .info()
            .map(|i| (i.stream.to_owned(), Some(i.stream_sequence)))
            .unwrap_or_default();
        let letter = DeadLetter::new(self.stage, reason, msg.subject.as_str(), seq, &msg.payload);
        let msg_id = derived_msg_id(
            talon_proto::names::MsgIdDomain::DeadLetter(self.stage),
            &format!("{stream}:{}", seq.unwrap_or(0)),
        );
        Ok(crate::dlq::publish(&self.js, &letter, &msg_id).await?)
    }
}

/// The wait before try `delivered + 1` of a failing input.
pub fn retry_delay(delivered: u64) -> Duration {
    let doublings = delivered.saturating_sub(1).min(16) as u32;
    RETRY_DELAY
        .saturating_mul(1u32 << doublings)
        .min(RETRY_DELAY_MAX)
}

/// What a panic carried, as text.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Why an input could not be handled this time: the loop naks it to try
/// again, and dead-letters it once it has failed [`DEAD_AFTER`] times.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A publish (of the stage's output or a dead letter) was not sent or
    /// not acknowledged.
    #[error("JetStream publish: {0}")]
    Publish(#[from] async_nats::jetstream::context::PublishError),
    /// The input came without its JetStream metadata (sequence, time).
    #[error("message without JetStream info: {0}")]
    NoInfo(String),
    /// The output could not be serialized.
    #[error("cannot serialize the output: {0}")]
    Serialize(#[from] serde_json::Error),
    /// State the stage keeps in NATS (a KV bucket) could not be read or
    /// written now.
    #[error("{0}")]
    State(String),
}

/// What handling one input started: the publishes to await, and the label
/// it is counted under once they are acked.
pub struct Outcome {
    pub label: &'static str,
    pub acks: Vec<PublishAckFuture>,
}

impl Outcome {
    pub fn new(label: &'static str) -> Outcome {
        Outcome {
            label,
            acks: Vec::new(),
        }
    }

    pub fn with(mut self, ack: PublishAckFuture) -> Outcome {
        self.acks.push(ack);
        self
    }
}

/// The metrics the loop keeps.
#[derive(Clone)]
pub struct LoopMetrics {
    /// Inputs by outcome label.
    pub inputs: IntCounterVec,
    pub batch_seconds: Histogram,
    pub batch_size: Histogram,
}

/// The names of a stage's loop metrics.
pub struct LoopMetricNames {
    /// Counter of inputs by `outcome`, and its help text.
    pub inputs: (&'static str, &'static str),
    pub batch_seconds: &'static str,
    pub batch_size: &'static str,
}

impl LoopMetrics {
    /// Creates the loop's metrics under `names` in `registry`.
    pub fn register(
        registry: &Registry,
        names: LoopMetricNames,
    ) -> prometheus::Result<LoopMetrics> {
        let inputs = IntCounterVec::new(Opts::new(names.inputs.0, names.inputs.1), &["outcome"])?;
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new(
                names.batch_seconds,
                "Time from pulling a batch to acking it",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(names.batch_size, "Inputs per batch")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 11)?),
        )?;
        registry.register(Box::new(inputs.clone()))?;
        registry.register(Box::new(batch_seconds.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        Ok(LoopMetrics {
            inputs,
            batch_seconds,
            batch_size,
        })
    }
}

/// A pull stream on `consumer` of up to `batch` messages a request, with
/// the heartbeat and expiry every talon consumer uses.
pub async fn pull(
    consumer: &PullConsumer,
    batch: usize,
) -> Result<jetstream::consumer::pull::Stream, jetstream::consumer::StreamError> {
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
}

/// Pulls from `consumer` in batches of `batch` and hands each input to
/// `handle` until `shutdown` fires. `handle` starts the input's publishes and
/// returns them; an `Err` (a transient failure) naks the input, or
/// dead-letters it once it has failed [`DEAD_AFTER`] times.
pub async fn run<F, Fut>(
    consumer: PullConsumer,
    batch: usize,
    metrics: LoopMetrics,
    dead: DeadLetters,
    shutdown: CancellationToken,
    mut handle: F,
) where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = Result<Outcome, StageError>>,
{
    let name = consumer.cached_info().name.clone();
    while !shutdown.is_cancelled() {
        let messages = match pull(&consumer, batch).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(consumer = %name, error = %e, "cannot pull; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_DELAY) => continue,
                }
            }
        };
        let mut batches = messages.ready_chunks(batch);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    nak_pending(&mut batches).await;
                    return;
                }
                next = batches.next() => next,
            };
            let Some(items) = next else {
                break; // the pull stream ended: open a new one
            };
            let started = Instant::now();
            metrics.batch_size.observe(items.len() as f64);
            let mut pending = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Ok(msg) => {
                        let outcome = start_one(&dead, &name, &msg, &mut handle).await;
                        pending.push((msg, outcome));
                    }
                    Err(e) => tracing::warn!(consumer = %name, error = %e, "pull error"),
                }
            }
            for (msg, outcome) in pending {
                let done = match outcome {
                    Ok(outcome) => {
                        let mut result = Ok(outcome.label);
                        for ack in outcome.acks {
                            if let Err(e) = ack.await {
                                result = Err(StageError::Publish(e));
                            }
                        }
                        result
                    }
                    Err(e) => Err(e),
                };
                match done {
                    Ok(label) => {
                        metrics.inputs.with_label_values(&[label]).inc();
                        if let Err(e) = msg.ack().await {
                            // It comes back after the ack wait; its outputs
                            // carry the same Nats-Msg-Id: no second copy.
                            tracing::warn!(consumer = %name, error = %e, "cannot ack input");
                        }
                    }
                    Err(e) => {
                        let delivered = msg.info().map_or(1, |i| i.delivered.max(1) as u64);
                        if delivered >= dead.dead_after {
                            let reason = format!("failed {delivered} times; the last error: {e}");
                            park(&dead, &name, &msg, reason, &metrics).await;
                        } else {
                            tracing::warn!(consumer = %name, error = %e, delivered, "input failed; it will be retried");
                            let _ = msg
                                .ack_with(AckKind::Nak(Some(dead.retry_delay(delivered))))
                                .await;
                        }
                    }
                }
            }
            metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }
}

/// Starts one input: dead-letters it unhandled when it was delivered more
/// than [`DEAD_AFTER`] times already (it never got an answer: the stage
/// died on it), else hands it to `handle`, catching a panic.
async fn start_one<F, Fut>(
    dead: &DeadLetters,
    consumer: &str,
    msg: &jetstream::Message,
    handle: &mut F,
) -> Result<Outcome, StageError>
where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = Result<Outcome, StageError>>,
{
    let delivered = msg.info().map_or(1, |i| i.delivered.max(1) as u64);
    if delivered > dead.dead_after {
        let reason = format!(
            "delivered {delivered} times without an answer: the stage may have stopped while handling it"
        );
        tracing::error!(consumer, delivered, "input never answered; dead-lettered");
        let ack = dead.publish(msg, reason).await?;
        return Ok(Outcome::new("dead").with(ack));
    }
    match AssertUnwindSafe(handle(msg.clone())).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let text = panic_text(panic.as_ref());
            tracing::error!(consumer, panic = ?text, "handling an input panicked; dead-lettered");
            let ack = dead
                .publish(msg, format!("the stage panicked on it: {text}"))
                .await?;
            Ok(Outcome::new("dead").with(ack))
        }
    }
}

/// Stores a dead letter for `msg` and acks it; naks it when the letter
/// cannot be stored now (it comes back, up to the consumer's
/// `max_deliver`).
async fn park(
    dead: &DeadLetters,
    consumer: &str,
    msg: &jetstream::Message,
    reason: String,
    metrics: &LoopMetrics,
) {
    tracing::error!(consumer, ?reason, "input dead-lettered");
    let stored = match dead.publish(msg, reason).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(StageError::Publish),
        Err(e) => Err(e),
    };
    match stored {
        Ok(()) => {
            metrics.inputs.with_label_values(&["dead"]).inc();
            if let Err(e) = msg.ack().await {
                tracing::warn!(consumer, error = %e, "cannot ack input");
            }
        }
        Err(e) => {
            tracing::warn!(consumer, error = %e, "cannot store the dead letter; retrying");
            let _ = msg.ack_with(AckKind::Nak(Some(dead.retry_delay_max))).await;
        }
    }
}

/// Naks what the client already holds, so another replica (or this one
/// after a restart) gets it at once rather than after the ack wait.
async fn nak_pending<S>(batches: &mut S)
where
    S: futures::Stream<
            Item = Vec<Result<jetstream::Message, jetstream::consumer::pull::MessagesError>>,
        > + Unpin,
{
    while let Some(Some(items)) = batches.next().now_or_never() {
        for msg in items.into_iter().flatten() {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_a_minute() {
        let secs = |d: u64| retry_delay(d).as_secs();
        assert_eq!(
            (1..=9).map(secs).collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 60, 60, 60]
        );
        assert_eq!(secs(0), 1);
        assert_eq!(secs(u64::MAX), 60);
        // The first DEAD_AFTER tries take minutes, not seconds.
        let total: u64 = (1..DEAD_AFTER).map(secs).sum();
        assert!((300..=1200).contains(&total), "{total} s");
    }

    #[test]
    fn panic_payloads_become_text() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_text(caught.as_ref()), "boom 7");
        let caught = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_text(caught.as_ref()), "static");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(panic_text(caught.as_ref()), "a panic without a message");
    }
}
