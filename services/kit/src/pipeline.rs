//! The consume loop of a stateless stage (ingest, enrich): pull a batch,
//! start every input's publishes, await all their JetStream acks, then ack
//! each input whose outputs are all acked and nak (with a delay) the others.
//! On shutdown it finishes the batch in hand and naks what was pulled but
//! not started.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, context::PublishAckFuture, AckKind};
use futures::StreamExt;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

/// How long a failed input waits before it comes back.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

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

/// Pulls from `consumer` in batches of `batch` and hands each input to
/// `handle` until `shutdown` fires. `handle` starts the input's publishes and
/// returns them; an `Err` (a transient failure) naks the input.
pub async fn run<F, Fut>(
    consumer: PullConsumer,
    batch: usize,
    metrics: LoopMetrics,
    shutdown: CancellationToken,
    mut handle: F,
) where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = (jetstream::Message, Result<Outcome, String>)>,
{
    let name = consumer.cached_info().name.clone();
    while !shutdown.is_cancelled() {
        let messages = match consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
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
                    Ok(msg) => pending.push(handle(msg).await),
                    Err(e) => tracing::warn!(consumer = %name, error = %e, "pull error"),
                }
            }
            for (msg, outcome) in pending {
                let done = match outcome {
                    Ok(outcome) => {
                        let mut result = Ok(outcome.label);
                        for ack in outcome.acks {
                            if let Err(e) = ack.await {
                                result = Err(e.to_string());
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
                        tracing::warn!(consumer = %name, error = %e, "input failed; it will be retried");
                        let _ = msg.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await;
                    }
                }
            }
            metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
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
    use futures::FutureExt;
    while let Some(Some(items)) = batches.next().now_or_never() {
        for msg in items.into_iter().flatten() {
            let _ = msg.ack_with(AckKind::Nak(None)).await;
        }
    }
}
