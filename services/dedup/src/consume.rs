//! One partition's loop: pull from `talon.alerts.accepted.<p>` in stream
//! order, decide every alert against its key's window, write the batch to
//! sled and flush it, publish what opened a window to `talon.alerts.unique`,
//! and only then ack the inputs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::PullConsumer, message::PublishMessage};
use chrono::{DateTime, TimeZone, Utc};

use futures::StreamExt;
use talon_kit::streams::{self, ConsumerSpec, Stream};
use talon_proto::key::derived_msg_id;
use talon_proto::names::{Stage, STREAM_ACCEPTED, SUBJECT_UNIQUE};
use talon_proto::{dedup_key, Alert, DeadLetter, DedupInfo, DedupKeyField};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{Commit, Output, PartitionStore, StoreError, KEEP_APPLIED_MS};
use crate::window::{apply, Lengths, Verdict, Window};

/// Inputs handled together: one sled flush covers them all.
pub const BATCH: usize = 1024;
/// Windows looked at per sweep step.
const SWEEP_STEP: usize = 10_000;
/// How often the sweep takes a step.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// A window is swept only once it ended this long before the newest
/// `received_at` the partition has seen: alerts reach a partition roughly,
/// not strictly, in `received_at` order (several ingest replicas). The clock
/// never decides: a partition fed late by a lagging ingest still finds its
/// windows.
const SWEEP_MARGIN_MS: i64 = 5 * 60 * 1000;
/// Wait before a failed batch is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// What every partition shares.
pub struct Shared {
    pub js: jetstream::Context,
    pub key: Vec<DedupKeyField>,
    pub lengths: Lengths,
    pub metrics: Metrics,
    pub topology: talon_kit::streams::Topology,
}

/// Requests the HTTP API hands to a partition's loop, so they never race a
/// batch.
pub enum Command {
    Forget {
        key: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("JetStream: {0}")]
    Nats(String),
}

/// How far ahead of this machine's clock an alert's `received_at` may move
/// the sweep's watermark (room for clocks that disagree a little).
const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

/// The sweep's watermark after an alert received at `at_ms`: the newest
/// `received_at` seen — but never more than 5 minutes ahead of the clock
/// (a backlog, received in the past, is not held back by it), so one
/// message from the year 9999 on an internal subject cannot make the sweep
/// drop every live window and every record of applied alerts. Windows are
/// still decided on `received_at` alone.
pub fn advance_watermark(watermark_ms: i64, at_ms: i64, now_ms: i64) -> i64 {
    watermark_ms.max(at_ms.min(now_ms.saturating_add(MAX_AHEAD_MS)))
}

/// Time of `ms` since the epoch, kept within what RFC 3339 can say.
pub fn time_of(ms: i64) -> DateTime<Utc> {
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    const MIN_MS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    Utc.timestamp_millis_opt(ms.clamp(MIN_MS, MAX_MS))
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

impl BatchError {
    /// sled failed (an I/O error such as a full disk): its handle may
    /// be unusable from now on, so trying again on it would fail for ever.
    fn fatal(self) -> Result<BatchError, StoreError> {
        match self {
            BatchError::Store(e) => Err(e),
            other => Ok(other),
        }
    }
}

/// Runs partition `partition` until `shutdown` fires. A sled error ends it
/// with that error, after cancelling `shutdown` so the whole service stops
/// and exits non-zero: its supervisor starts it again with a fresh handle,
/// and what was not acked comes back from JetStream.
pub async fn run_partition(
    shared: Arc<Shared>,
    partition: u32,
    store: Arc<PartitionStore>,
    mut commands: mpsc::Receiver<Command>,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let fatal = |e: StoreError| {
        tracing::error!(partition, error = %e, "the partition's store failed; stopping dedup");
        shutdown.cancel();
        e
    };
    let label = partition.to_string();
    let mut watermark_ms = i64::MIN;
    let mut cursor: Option<Vec<u8>> = None;
    let mut live_in_pass = 0u64;
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    while !shutdown.is_cancelled() {
        let consumer = match start(&shared, partition, &store).await {
            Ok(c) => c,
            Err(e) => {
                let e = e.fatal().map_err(fatal)?;
                tracing::warn!(partition, error = %e, "partition not ready; retrying");
                let _ = ready.send(false);
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RETRY_DELAY) => continue,
                }
            }
        };
        let messages = match talon_kit::pipeline::pull(&consumer, BATCH).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot pull; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        let _ = ready.send(true);
        let mut batches = messages.ready_chunks(BATCH);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(command) = commands.recv() => match command {
                    Command::Forget { key, reply } => {
                        let _ = reply.send(store.forget(&key).await);
                    }
                },
                _ = sweep.tick() => {
                    let horizon = watermark_ms.saturating_sub(SWEEP_MARGIN_MS);
                    match store.sweep(cursor.as_deref(), horizon, SWEEP_STEP) {
                        Ok(step) => {
                            live_in_pass += step.live;
                            cursor = step.next;
                            if cursor.is_none() {
                                shared.metrics.live_windows.with_label_values(&[&label]).set(live_in_pass as i64);
                                live_in_pass = 0;
                            }
                        }
                        Err(e) => return Err(fatal(e)),
                    }
                    match store.forget_applied_before(watermark_ms.saturating_sub(KEEP_APPLIED_MS), SWEEP_STEP) {
                        Ok(_) => {}
                        Err(e) => return Err(fatal(e)),
                    }
                    shared.metrics.store_bytes.with_label_values(&[&label]).set(store.size_on_disk() as i64);
                }
                batch = batches.next() => {
                    let Some(batch) = batch else { break };
                    let msgs: Vec<_> = batch
                        .into_iter()
                        .filter_map(|m| m.map_err(|e| tracing::warn!(partition, error = %e, "pull error")).ok())
                        .collect();
                    if let Err(e) = process_batch(&shared, &store, msgs, &mut watermark_ms).await {
                        let e = e.fatal().map_err(fatal)?;
                        // Nothing of the batch was acked: start over from the
                        // consumer's ack floor, in order.
                        tracing::warn!(partition, error = %e, "batch failed; resuming from the last ack");
                        let _ = ready.send(false);
                        tokio::time::sleep(RETRY_DELAY).await;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Publishes what the outbox still holds, then recreates the partition's
/// consumer. Inputs pulled by an earlier run and never acked therefore come
/// back at once and before anything newer (rather than after the ack wait,
/// out of order), so windows see alerts in the order they arrived.
async fn start(
    shared: &Shared,
    partition: u32,
    store: &PartitionStore,
) -> Result<PullConsumer, BatchError> {
    let outbox = store.outbox()?;
    if !outbox.is_empty() {
        tracing::info!(
            partition,
            count = outbox.len(),
            "publishing outputs left by an earlier run"
        );
        publish_outputs(&shared.js, store, outbox.iter().map(|(s, o)| (*s, o))).await?;
    }
    let spec = ConsumerSpec::dedup(partition);
    let nats = |e: &dyn std::fmt::Display| BatchError::Nats(e.to_string());
    let stream = streams::ensure_stream(&shared.js, Stream::Accepted, shared.topology)
        .await
        .map_err(|e| nats(&e))?;
    streams::ensure_stream(&shared.js, Stream::Unique, shared.topology)
        .await
        .map_err(|e| nats(&e))?;
    streams::ensure_stream(&shared.js, Stream::Dlq, shared.topology)
        .await
        .map_err(|e| nats(&e))?;
    // A work-queue stream holds only what no one acked: a new consumer
    // (deliver all) gets exactly the inputs an earlier run left unacked, in
    // stream order, before anything newer.
    match stream.delete_consumer(&spec.durable).await {
        Ok(_) => {}
        Err(e) => match e.kind() {
            jetstream::stream::ConsumerErrorKind::JetStream(js_err)
                if js_err.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND => {}
            _ => return Err(nats(&e)),
        },
    }
    stream
        .create_consumer(spec.config(None))
        .await
        .map_err(|e| nats(&e))
}

/// `None` when `out` can be published as it is; else the dead letter that
/// takes its place: an outbox entry whose `Nats-Msg-Id` is not header-safe
/// (written by an earlier release that did not check ids) would make the
/// publish panic at every start.
fn publishable(seq: u64, out: &Output) -> Option<Output> {
    let error = talon_proto::check_id(&out.msg_id).err()?;
    tracing::error!(seq, %error, "an outbox entry cannot be published; dead-lettered");
    let letter = DeadLetter::new(
        Stage::Dedup,
        format!("left in the outbox with a Nats-Msg-Id that cannot be published: {error}"),
        out.subject.as_str(),
        Some(seq),
        out.body.as_bytes(),
    );
    Some(Output {
        subject: Stage::Dedup.dlq_subject(),
        msg_id: derived_msg_id(
            talon_proto::names::MsgIdDomain::DedupOutbox,
            &format!("{STREAM_ACCEPTED}:{seq}"),
        ),
        body: letter_body(&letter),
    })
}

/// Publishes `outputs`, waits for every ack, then drops them from the outbox.
async fn publish_outputs<'a>(
    js: &jetstream::Context,
    store: &PartitionStore,
    outputs: impl Iterator<Item = (u64, &'a Output)>,
) -> Result<(), BatchError> {
    let mut pending = Vec::new();
    for (seq, out) in outputs {
        let guarded;
        let out = match publishable(seq, out) {
            Some(replacement) => {
                guarded = replacement;
                &guarded
            }
            None => out,
        };
        let ack = js
            .send_publish(
                out.subject.clone(),
                PublishMessage::build()
                    .payload(out.body.clone().into())
                    .message_id(&out.msg_id),
            )
            .await
            .map_err(|e| BatchError::Nats(e.to_string()))?;
        pending.push((seq, ack));
    }
    let mut done = Vec::with_capacity(pending.len());
    for (seq, ack) in pending {
        ack.await.map_err(|e| BatchError::Nats(e.to_string()))?;
        done.push(seq);
    }
    store.remove_outputs(&done)?;
    Ok(())
}

/// One input of a batch, as the planner sees it.
pub struct Input<'a> {
    /// Its sequence in `ACCEPTED`.
    pub seq: u64,
    pub subject: &'a str,
    pub payload: &'a [u8],
}

/// What the partition's store already knows, as [`plan_batch`] reads it.
pub trait Known {
    /// The key's window, if it has one.
    fn window(&self, key: &str) -> Result<Option<Window>, StoreError>;
    /// Was the alert received at `at_ms` with this id applied already?
    fn was_applied(&self, at_ms: i64, id: &str) -> Result<bool, StoreError>;
    /// The output of the input at `seq`, if it is still in the outbox.
    fn output(&self, seq: u64) -> Result<Option<Output>, StoreError>;
}

impl Known for PartitionStore {
    fn window(&self, key: &str) -> Result<Option<Window>, StoreError> {
        PartitionStore::window(self, key)
    }
    fn was_applied(&self, at_ms: i64, id: &str) -> Result<bool, StoreError> {
        PartitionStore::was_applied(self, at_ms, id)
    }
    fn output(&self, seq: u64) -> Result<Option<Output>, StoreError> {
        PartitionStore::output(self, seq)
    }
}

/// How alerts are keyed and how long their windows are.
pub struct Policy<'a> {
    pub key: &'a [DedupKeyField],
    pub lengths: &'a Lengths,
}

/// A batch decided: what to write (one atomic, flushed sled batch), what
/// the outbox holds from earlier runs that must go out again, and counts.
#[derive(Debug, Default)]
pub struct Plan {
    pub commit: Commit,
    /// Outputs of inputs applied before (redelivered), to publish again.
    pub replays: Vec<(u64, Output)>,
    pub fresh: u64,
    pub suppressed: u64,
    pub unsuppressed: u64,
}

/// Decides a batch: every input above `applied` (the store's last applied
/// sequence) against its key's window — the windows this batch changed
/// first, then the store's — into one [`Commit`]; inputs at or below it are
/// replays. `watermark_ms` follows the batch's `received_at`s (bounded by
/// `now_ms`). Pure but for reads of `known`: no NATS, no writes, no clock.
/// An input that cannot be decided, or whose decision panics, becomes a
/// dead letter in the commit's outputs.
pub fn plan_batch(
    inputs: &[Input<'_>],
    known: &impl Known,
    policy: &Policy<'_>,
    applied: u64,
    watermark_ms: &mut i64,
    now_ms: i64,
) -> Result<Plan, StoreError> {
    let mut plan = Plan {
        commit: Commit {
            last_seq: applied,
            ..Commit::default()
        },
        ..Plan::default()
    };
    let mut windows: HashMap<String, Window> = HashMap::new();
    let mut in_batch: HashSet<(i64, String)> = HashSet::new();
    for input in inputs {
        if input.seq <= plan.commit.last_seq {
            // Applied already (redelivered after a crash or a lost ack): its
            // output, if JetStream never acked it, goes out again.
            if let Some(out) = known.output(input.seq)? {
                plan.replays.push((input.seq, out));
            }
            continue;
        }
        plan.commit.last_seq = input.seq;
        let mut decide = Decide {
            known,
            policy,
            plan: &mut plan,
            windows: &mut windows,
            in_batch: &mut in_batch,
            watermark_ms: &mut *watermark_ms,
            now_ms,
        };
        let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decide.one(input)));
        match decided {
            Ok(result) => result?,
            Err(panic) => {
                let text = talon_kit::pipeline::panic_text(panic.as_ref());
                tracing::error!(subject = %input.subject, seq = input.seq, panic = ?text, "deciding an alert panicked; dead-lettered");
                let out = dead_letter_output(input, format!("dedup panicked on it: {text}"));
                plan.commit.outputs.push((input.seq, out));
            }
        }
    }
    plan.commit.windows = windows.into_iter().collect();
    Ok(plan)
}

/// The dead letter of `input`, as an outbox entry.
fn dead_letter_output(input: &Input<'_>, reason: String) -> Output {
    let letter = DeadLetter::new(
        Stage::Dedup,
        reason,
        input.subject,
        Some(input.seq),
        input.payload,
    );
    Output {
        subject: Stage::Dedup.dlq_subject(),
        msg_id: derived_msg_id(
            talon_proto::names::MsgIdDomain::DeadLetter(Stage::Dedup),
            &format!("{STREAM_ACCEPTED}:{}", input.seq),
        ),
        body: letter_body(&letter),
    }
}

/// A dead letter as JSON. A DeadLetter holds only strings, numbers and maps
/// of strings, so serializing it cannot fail; should it ever, the reason
/// alone is kept.
fn letter_body(letter: &DeadLetter) -> String {
    serde_json::to_string(letter).unwrap_or_else(|e| {
        serde_json::json!({
            "stage": Stage::Dedup.as_str(),
            "reason": format!("{}; the letter did not serialize: {e}", letter.reason),
        })
        .to_string()
    })
}

/// What deciding one input needs: the batch so far and what is known.
struct Decide<'p, 'b, K> {
    known: &'b K,
    policy: &'b Policy<'p>,
    plan: &'b mut Plan,
    windows: &'b mut HashMap<String, Window>,
    in_batch: &'b mut HashSet<(i64, String)>,
    watermark_ms: &'b mut i64,
    now_ms: i64,
}

impl<K: Known> Decide<'_, '_, K> {
    /// Decides one input (not applied before) into the plan.
    fn one(&mut self, input: &Input<'_>) -> Result<(), StoreError> {
        let seq = input.seq;
        let mut alert: Alert = match talon_proto::decode_alert(input.payload) {
            Ok(a) => a,
            Err(e) => {
                let out = dead_letter_output(input, e.to_string());
                self.plan.commit.outputs.push((seq, out));
                return Ok(());
            }
        };
        let at_ms = alert.received_at.timestamp_millis();
        *self.watermark_ms = advance_watermark(*self.watermark_ms, at_ms, self.now_ms);
        // The same alert under a new sequence: ingest published it again (its
        // input redelivered) after JetStream forgot the first copy's
        // Nats-Msg-Id (the work queue had deleted it, and nats-server
        // restarted). Applying it again would count it twice.
        if !self.in_batch.insert((at_ms, alert.id.clone()))
            || self.known.was_applied(at_ms, &alert.id)?
        {
            tracing::info!(alert = %alert.id, seq, "a copy of an applied alert; skipped");
            return Ok(());
        }
        self.plan.commit.applied.push((at_ms, alert.id.clone()));
        let key = dedup_key(&alert, self.policy.key);
        let seconds = self
            .policy
            .lengths
            .seconds(&alert.name, alert.dedup_window());
        let current = match self.windows.get(&key) {
            Some(w) => Some(*w),
            None => self.known.window(&key)?,
        };
        let info = match apply(current, at_ms, seconds, seq) {
            Verdict::Suppressed(w) => {
                self.windows.insert(key, w);
                self.plan.suppressed += 1;
                return Ok(());
            }
            Verdict::Fresh(w) => {
                self.windows.insert(key.clone(), w);
                self.plan.fresh += 1;
                DedupInfo {
                    key,
                    window_start: time_of(w.start_ms),
                    window_end: time_of(w.end_ms),
                    suppressed_before: w.suppressed_before,
                }
            }
            Verdict::Unsuppressed => {
                self.plan.unsuppressed += 1;
                DedupInfo {
                    key,
                    window_start: alert.received_at,
                    window_end: alert.received_at,
                    suppressed_before: 0,
                }
            }
        };
        alert.dedup = Some(info);
        let out = match serde_json::to_string(&alert) {
            Ok(body) => Output {
                subject: SUBJECT_UNIQUE.to_owned(),
                // decode_alert checked it: header-safe.
                msg_id: alert.id.clone(),
                body,
            },
            Err(e) => dead_letter_output(input, format!("the alert does not serialize: {e}")),
        };
        self.plan.commit.outputs.push((seq, out));
        Ok(())
    }
}

/// One batch: plan it, write and flush the plan's commit, publish its
/// outputs and the replays, then ack every input.
async fn process_batch(
    shared: &Shared,
    store: &PartitionStore,
    msgs: Vec<jetstream::Message>,
    watermark_ms: &mut i64,
) -> Result<(), BatchError> {
    if msgs.is_empty() {
        return Ok(());
    }
    shared.metrics.batch_size.observe(msgs.len() as f64);
    let mut inputs = Vec::with_capacity(msgs.len());
    for msg in &msgs {
        let seq = msg
            .info()
            .map_err(|e| BatchError::Nats(format!("message without JetStream info: {e}")))?
            .stream_sequence;
        inputs.push(Input {
            seq,
            subject: msg.subject.as_str(),
            payload: &msg.payload,
        });
    }
    let applied = store.last_seq()?;
    let policy = Policy {
        key: &shared.key,
        lengths: &shared.lengths,
    };
    let now_ms = Utc::now().timestamp_millis();
    let plan = plan_batch(&inputs, store, &policy, applied, watermark_ms, now_ms)?;
    if plan.commit.last_seq > applied {
        let started = Instant::now();
        store.commit(&plan.commit).await?;
        shared
            .metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    publish_outputs(
        &shared.js,
        store,
        plan.commit
            .outputs
            .iter()
            .chain(plan.replays.iter())
            .map(|(s, o)| (*s, o)),
    )
    .await?;
    for msg in &msgs {
        if let Err(e) = msg.ack().await {
            // Comes back after the ack wait; recognised as applied then.
            tracing::warn!(error = %e, "cannot ack input");
        }
    }
    let m = &shared.metrics.alerts;
    m.with_label_values(&["fresh"]).inc_by(plan.fresh);
    m.with_label_values(&["suppressed"]).inc_by(plan.suppressed);
    m.with_label_values(&["unsuppressed"])
        .inc_by(plan.unsuppressed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in memory.
    #[derive(Default)]
    struct Memory {
        windows: HashMap<String, Window>,
        applied: HashSet<(i64, String)>,
        outbox: HashMap<u64, Output>,
    }

    impl Known for Memory {
        fn window(&self, key: &str) -> Result<Option<Window>, StoreError> {
            Ok(self.windows.get(key).copied())
        }
        fn was_applied(&self, at_ms: i64, id: &str) -> Result<bool, StoreError> {
            Ok(self.applied.contains(&(at_ms, id.to_owned())))
        }
        fn output(&self, seq: u64) -> Result<Option<Output>, StoreError> {
            Ok(self.outbox.get(&seq).map(|o| Output {
                subject: o.subject.clone(),
                msg_id: o.msg_id.clone(),
                body: o.body.clone(),
            }))
        }
    }

    const T0: i64 = 1_790_000_000_000;

    fn accepted(id: &str, name: &str, at_ms: i64, dedup: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "received_at": time_of(at_ms), "source": "nats", "name": name,
            "timestamp": time_of(at_ms), "client_id": "C.1", "event_data": {},
            "dedup_seconds": dedup,
        }))
        .unwrap()
    }

    fn plan(known: &Memory, payloads: &[(u64, Vec<u8>)], applied: u64) -> Plan {
        let config = talon_kit::config::DedupConfig::default();
        let lengths = Lengths::new(&config).unwrap();
        let policy = Policy {
            key: &config.key,
            lengths: &lengths,
        };
        let inputs: Vec<Input<'_>> = payloads
            .iter()
            .map(|(seq, p)| Input {
                seq: *seq,
                subject: "talon.alerts.accepted.0",
                payload: p,
            })
            .collect();
        let mut watermark = i64::MIN;
        plan_batch(&inputs, known, &policy, applied, &mut watermark, T0).unwrap()
    }

    fn unique(out: &Output) -> Alert {
        assert_eq!(out.subject, SUBJECT_UNIQUE);
        serde_json::from_str(&out.body).unwrap()
    }

    #[test]
    fn a_batch_opens_one_window_per_key_and_counts_the_rest() {
        let known = Memory::default();
        let p = plan(
            &known,
            &[
                (1, accepted("a1", "Honey", T0, 60)),
                (2, accepted("a2", "Honey", T0 + 1_000, 60)),
                (3, accepted("a3", "Honey", T0 + 2_000, 60)),
                (4, accepted("b1", "Other", T0 + 3_000, 60)),
                (5, accepted("c1", "Always", T0 + 4_000, -1)),
                (6, accepted("c2", "Always", T0 + 5_000, -1)),
            ],
            0,
        );
        assert_eq!((p.fresh, p.suppressed, p.unsuppressed), (2, 2, 2));
        assert_eq!(p.commit.last_seq, 6);
        assert_eq!(p.commit.applied.len(), 6);
        let ids: Vec<String> = p.commit.outputs.iter().map(|(_, o)| unique(o).id).collect();
        assert_eq!(ids, ["a1", "b1", "c1", "c2"]);
        let honey = p
            .commit
            .windows
            .iter()
            .find(|(k, _)| k.contains("Honey"))
            .unwrap()
            .1;
        assert_eq!(
            honey.suppressed, 2,
            "the window counts the two it held back"
        );
        assert_eq!(honey.end_ms - honey.start_ms, 60_000);
    }

    #[test]
    fn a_known_window_suppresses_and_a_known_alert_is_skipped() {
        let mut known = Memory::default();
        let first = plan(&known, &[(1, accepted("a1", "Honey", T0, 60))], 0);
        known.windows.extend(first.commit.windows.iter().cloned());
        known.applied.extend(first.commit.applied.iter().cloned());

        // The same alert again under a new sequence, then a new one.
        let p = plan(
            &known,
            &[
                (2, accepted("a1", "Honey", T0, 60)),
                (3, accepted("a2", "Honey", T0 + 10_000, 60)),
            ],
            1,
        );
        assert_eq!((p.fresh, p.suppressed), (0, 1));
        assert!(p.commit.outputs.is_empty());
        assert_eq!(p.commit.applied, [(T0 + 10_000, "a2".to_owned())]);

        // Past the window: fresh, carrying the count.
        let mut known2 = Memory::default();
        known2.windows.extend(p.commit.windows.iter().cloned());
        let later = plan(&known2, &[(4, accepted("a3", "Honey", T0 + 61_000, 60))], 3);
        assert_eq!(later.fresh, 1);
        let alert = unique(&later.commit.outputs[0].1);
        assert_eq!(alert.dedup.unwrap().suppressed_before, 1);
    }

    #[test]
    fn replays_and_garbage() {
        let mut known = Memory::default();
        known.outbox.insert(
            7,
            Output {
                subject: SUBJECT_UNIQUE.into(),
                msg_id: "a7".into(),
                body: "{}".into(),
            },
        );
        let p = plan(
            &known,
            &[
                (7, accepted("a7", "X", T0, 60)),
                (8, accepted("a8", "X", T0, 60)),
                (9, b"not json".to_vec()),
            ],
            8,
        );
        let replayed: Vec<u64> = p.replays.iter().map(|(s, _)| *s).collect();
        assert_eq!(replayed, [7], "8 was applied and acked: nothing to send");
        assert_eq!(p.commit.last_seq, 9);
        let (seq, letter) = &p.commit.outputs[0];
        assert_eq!(*seq, 9);
        assert_eq!(letter.subject, Stage::Dedup.dlq_subject());
        let parsed: DeadLetter = serde_json::from_str(&letter.body).unwrap();
        assert_eq!(parsed.raw.as_deref(), Some("not json"));
    }

    #[test]
    fn an_outbox_entry_with_a_bad_id_becomes_a_dead_letter() {
        let good = Output {
            subject: SUBJECT_UNIQUE.into(),
            msg_id: "0123abc".into(),
            body: "{}".into(),
        };
        assert!(publishable(5, &good).is_none());
        let bad = Output {
            msg_id: "p\nq".into(),
            ..good
        };
        let letter = publishable(5, &bad).expect("replaced");
        assert_eq!(letter.subject, Stage::Dedup.dlq_subject());
        assert!(talon_proto::check_id(&letter.msg_id).is_ok());
        let parsed: DeadLetter = serde_json::from_str(&letter.body).unwrap();
        assert_eq!(parsed.stream_seq, Some(5));
        assert_eq!(parsed.raw.as_deref(), Some("{}"));
        assert!(
            parsed.reason.contains("cannot be published"),
            "{}",
            parsed.reason
        );
    }

    #[test]
    fn the_watermark_follows_received_at_but_not_past_tomorrow() {
        let now = 1_790_000_000_000;
        assert_eq!(advance_watermark(i64::MIN, now - 5, now), now - 5);
        assert_eq!(advance_watermark(now, now - 5, now), now, "never back");
        assert_eq!(advance_watermark(now, now + 1000, now), now + 1000);
        assert_eq!(
            advance_watermark(now, 253_402_300_799_000, now),
            now + MAX_AHEAD_MS,
            "9999-12-31 moves it 5 minutes past the clock at most"
        );
        assert_eq!(advance_watermark(now, i64::MAX, i64::MAX), i64::MAX);
    }

    #[test]
    fn times_stay_within_rfc3339() {
        assert_eq!(time_of(0).to_rfc3339(), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            time_of(i64::MAX).to_rfc3339(),
            "9999-12-31T23:59:59.999+00:00"
        );
        assert_eq!(time_of(i64::MIN).to_rfc3339(), "0000-01-01T00:00:00+00:00");
    }
}
