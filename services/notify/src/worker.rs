//! One channel's delivery loop: pull from `Server.Monitor.Alerts.<id>`
//! (a durable consumer shared by every replica), at most `max_in_flight`
//! deliveries at once, paced by the channel's token bucket, each looked up
//! in the ledger before it is sent and marked there after (`ledger.rs` says
//! why no claim is needed). Channels run in their own tasks: one slow or
//! failing channel never delays another.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use talon_kit::streams::{self, ConsumerSpec, Stream};
use talon_proto::key::derived_msg_id;
use talon_proto::names::{Stage, STREAM_NOTIFY, SUBJECT_DELIVERIES_PREFIX};
use talon_proto::{Alert, DeadLetter, Delivery, DeliveryOutcome, GroupMessage};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::channels::{chat::Chat, email::Email, inbox::Inbox, webhook::Webhook, DeliveryError};
use crate::groups::Groups;
use crate::ledger::{self, Ledger, Look};
use crate::metrics::Metrics;

/// Longest one delivery attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// First retry delay; doubled each attempt, with ±20 % jitter.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long one pull waits for messages before it is asked again.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long a pull waits for more slots to free when most are busy.
const GATHER: Duration = Duration::from_millis(1);
/// While a message waits its turn, JetStream is told it is in progress this
/// often, so waiting never turns into a redelivery.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How a channel delivers.
pub enum Sender {
    Webhook(Webhook),
    Email(Box<Email>),
    Inbox(Inbox),
    /// Slack, Mattermost, Teams, Google Chat, Discord, PagerDuty.
    Chat(Box<Chat>),
}

impl Sender {
    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        match self {
            Sender::Webhook(w) => w.deliver(alert).await,
            Sender::Email(e) => e.deliver(alert).await,
            Sender::Inbox(i) => i.deliver(alert).await,
            Sender::Chat(c) => c.deliver(alert).await,
        }
    }

    /// Delivers a group message (a channel with `group_by` or `digest`).
    pub async fn deliver_group(&self, group: &GroupMessage) -> Result<(), DeliveryError> {
        match self {
            Sender::Webhook(w) => w.deliver_group(group).await,
            Sender::Email(e) => e.deliver_group(group).await,
            Sender::Inbox(i) => i.deliver_group(group).await,
            Sender::Chat(c) => c.deliver_group(group).await,
        }
    }
}

/// One configured channel, ready to deliver.
pub struct Channel {
    pub id: String,
    pub sender: Sender,
    pub max_in_flight: usize,
    /// `None` when `rate_per_minute` is 0.
    pub limiter: Option<DefaultDirectRateLimiter>,
    pub retry_deadline: Duration,
    /// Set by a 429 or a `Retry-After`: no attempt on this channel before it.
    pub paused_until: Mutex<Option<Instant>>,
}

impl Channel {
    pub fn new(
        id: String,
        sender: Sender,
        max_in_flight: u32,
        rate_per_minute: u32,
        retry_deadline: Duration,
    ) -> Channel {
        let limiter = std::num::NonZeroU32::new(rate_per_minute)
            .map(|rate| RateLimiter::direct(Quota::per_minute(rate)));
        Channel {
            id,
            sender,
            max_in_flight: max_in_flight.max(1) as usize,
            limiter,
            retry_deadline,
            paused_until: Mutex::new(None),
        }
    }

    /// No attempt before `wait` from now (a `Retry-After`); at most the
    /// channel's retry deadline, however long the remote side asked for.
    pub fn pause_for(&self, wait: Duration) {
        let Some(until) = pause_end(Instant::now(), wait, self.retry_deadline) else {
            return;
        };
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    fn paused_for(&self) -> Option<Duration> {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        paused.and_then(|p| p.checked_duration_since(Instant::now()))
    }

    /// Waits until the channel is not paused and its token bucket allows
    /// one more delivery.
    pub async fn turn(&self) {
        while let Some(wait) = self.paused_for() {
            tokio::time::sleep(wait).await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

/// The ledger keys this replica's tasks are sending: a pair is sent by one
/// task at a time (the alert published twice lands in two messages).
#[derive(Default)]
pub struct Held(Mutex<std::collections::HashSet<String>>);

/// One held key, given back when dropped.
pub struct HeldKey<'a> {
    held: &'a Held,
    key: String,
}

impl Held {
    /// Holds `key`, or `None` when another task holds it.
    pub fn hold(&self, key: &str) -> Option<HeldKey<'_>> {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(key.to_owned()).then(|| HeldKey {
            held: self,
            key: key.to_owned(),
        })
    }
}

impl Drop for HeldKey<'_> {
    fn drop(&mut self) {
        let mut keys = self.held.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.remove(&self.key);
    }
}

/// What every channel shares.
pub struct Shared {
    pub js: jetstream::Context,
    pub ledger: Ledger,
    /// The (alert, channel) pairs this replica is sending now.
    pub held: Held,
    pub metrics: Metrics,
    pub topology: talon_kit::streams::Topology,
}

impl Shared {
    /// Tells the console how an attempt ended, on
    /// `talon.deliveries.<alert-id>`: in the background, never waited for
    /// and never failing a delivery (the outcome is for people; the ledger
    /// and the ack are what count).
    fn tell(
        &self,
        alert_id: &str,
        channel: &str,
        outcome: DeliveryOutcome,
        attempt: u64,
        reason: Option<&str>,
    ) {
        if talon_proto::check_id(alert_id).is_err() {
            return;
        }
        let delivery = Delivery {
            alert_id: alert_id.to_owned(),
            channel: channel.to_owned(),
            outcome,
            attempt,
            at: chrono::Utc::now(),
            reason: reason.map(str::to_owned),
        };
        let Ok(body) = serde_json::to_vec(&delivery) else {
            return;
        };
        let js = self.js.clone();
        let subject = format!("{SUBJECT_DELIVERIES_PREFIX}.{alert_id}");
        tokio::spawn(async move {
            let stored = match js.publish(subject, body.into()).await {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = stored {
                tracing::debug!(error = %e, "delivery outcome not recorded");
            }
        });
    }
}

/// The end of a pause of `wait` from `now`, cut to `deadline`; `None` only
/// where the clock itself cannot say that far ahead.
pub fn pause_end(now: Instant, wait: Duration, deadline: Duration) -> Option<Instant> {
    now.checked_add(wait.min(deadline))
}

/// Deliveries after which notify gives up on a message whatever its channel's
/// deadline says (a delivery that never got an answer: the process died on
/// it). Below the consumer's `max_deliver`, so the dead letter is written.
pub const DEAD_AFTER: u64 = (streams::MAX_DELIVER_NOTIFY / 2) as u64;

/// The wait before the next try of a delivery that failed `age` after it
/// was published, when it `wanted` to wait that long (the remote side's
/// `Retry-After`, or the backoff): at least a second; `None` when that try
/// would come at or after the channel's `deadline` — the delivery is given
/// up now, with the failure that ended it, rather than tried too late.
pub fn next_try(wanted: Duration, age: Duration, deadline: Duration) -> Option<Duration> {
    let delay = wanted.max(Duration::from_secs(1));
    (age.saturating_add(delay) < deadline).then_some(delay)
}

/// Why a message is dead-lettered before it is tried again, if it is: it
/// has failed before and its channel's retry deadline has passed, or it was
/// delivered more than [`DEAD_AFTER`] times.
pub fn give_up_before_trying(delivered: u64, age: Duration, deadline: Duration) -> Option<String> {
    if delivered > DEAD_AFTER {
        return Some(format!(
            "delivered {delivered} times without success: notify may have stopped while sending it"
        ));
    }
    if delivered > 1 && age >= deadline {
        return Some(format!(
            "still failing after {} s, past the channel's retry deadline of {} s ({} tries)",
            age.as_secs(),
            deadline.as_secs(),
            delivered - 1
        ));
    }
    None
}

/// What to do after a delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delivered: mark it sent in the ledger, then ack.
    Sent,
    /// Retrying cannot help, or the next try would come too late:
    /// dead-letter with this reason.
    Park(String),
    /// Try again after `delay`.
    Retry(Duration),
}

/// How long the whole channel holds off after `result`: what the remote
/// side asked for with `Retry-After`, whatever becomes of this message.
pub fn pause_of(result: &Result<(), DeliveryError>) -> Option<Duration> {
    match result {
        Err(DeliveryError::Transient { retry_after, .. }) => *retry_after,
        _ => None,
    }
}

/// Decides what follows an attempt's `result`: the message's `delivered`
/// count (1 = the first try), its `age` (since JetStream stored it), the
/// channel's retry `deadline`, and `jitter` (-0.2..=0.2) for the backoff.
/// Pure: no clock, no randomness, no I/O.
pub fn decide(
    result: &Result<(), DeliveryError>,
    delivered: u64,
    age: Duration,
    deadline: Duration,
    jitter: f64,
) -> Action {
    match result {
        Ok(()) => Action::Sent,
        Err(DeliveryError::Permanent(reason)) => Action::Park(reason.clone()),
        Err(DeliveryError::Transient {
            reason,
            retry_after,
        }) => {
            let attempt = u32::try_from(delivered).unwrap_or(u32::MAX);
            let wanted = retry_after.unwrap_or_else(|| backoff(attempt, jitter));
            match next_try(wanted, age, deadline) {
                Some(delay) => Action::Retry(delay),
                None => Action::Park(format!(
                    "{reason} (still failing after {} s; its next try would come after the \
                     channel's retry deadline of {} s)",
                    age.as_secs(),
                    deadline.as_secs()
                )),
            }
        }
    }
}

/// The delay before retry number `attempt` (1 = the first retry).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
    let capped = exp.min(BACKOFF_MAX.as_secs_f64());
    Duration::from_secs_f64((capped * (1.0 + jitter.clamp(-0.2, 0.2))).max(0.0))
}

/// Runs `channel` until `shutdown` fires, then lets the deliveries in
/// progress finish.
///
/// Each pull asks for exactly as many messages as this process has free
/// slots (`max_in_flight` per process): nothing is pulled that cannot start
/// at once, so replicas share the channel's consumer fairly and a message
/// never waits in a process that is busy.
///
/// With `groups` (the channel has `group_by` or `digest`), each message is
/// taken into its group instead of delivered; the groups send.
pub async fn run_channel(
    shared: Arc<Shared>,
    channel: Arc<Channel>,
    groups: Option<Arc<Groups>>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(channel.max_in_flight));
    'consumer: while !shutdown.is_cancelled() {
        let consumer = match consumer(&shared, &channel).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(channel = %channel.id, error = %e, "channel not ready; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'consumer,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break 'consumer,
                },
            };
            // A pull for one free slot at a time costs NATS as much as one
            // for many: while most slots are busy, give the deliveries in
            // progress a moment to finish and pull for all of them at once.
            if slots.available_permits() + 1 < channel.max_in_flight.div_ceil(2) {
                tokio::time::sleep(GATHER).await;
            }
            let free = slots.available_permits() + 1;
            let batch = consumer
                .batch()
                .max_messages(free)
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(channel = %channel.id, error = %e, "cannot pull; retrying");
                    drop(first);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'consumer;
                }
            };
            let mut permit = Some(first);
            while let Some(item) = batch.next().await {
                match item {
                    Ok(msg) if shutdown.is_cancelled() => {
                        // Pulled as the shutdown came: back to the stream
                        // for another replica, at once.
                        let _ = msg.ack_with(AckKind::Nak(None)).await;
                    }
                    Ok(msg) => {
                        let permit = match permit.take() {
                            Some(p) => p,
                            // At most `free` arrive, and only this loop takes
                            // slots: one is free.
                            None => match slots.clone().acquire_owned().await {
                                Ok(p) => p,
                                Err(_) => break 'consumer,
                            },
                        };
                        let (shared, channel) = (shared.clone(), channel.clone());
                        let groups = groups.clone();
                        tokio::spawn(async move {
                            match groups {
                                Some(groups) => group_one(&shared, &channel, &groups, msg).await,
                                None => deliver_one(&shared, &channel, msg).await,
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(channel = %channel.id, error = %e, "pull error");
                        break;
                    }
                }
            }
        }
    }
    // Let what is in progress finish (each attempt is bounded).
    let all = channel.max_in_flight as u32;
    let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, slots.acquire_many(all)).await;
}

async fn consumer(
    shared: &Shared,
    channel: &Channel,
) -> Result<jetstream::consumer::PullConsumer, String> {
    let stream = streams::ensure_stream(&shared.js, Stream::Notify, shared.topology)
        .await
        .map_err(|e| e.to_string())?;
    streams::ensure_stream(&shared.js, Stream::Dlq, shared.topology)
        .await
        .map_err(|e| e.to_string())?;
    // Created or updated: the consumer is shared by every replica; each
    // replica limits itself to `max_in_flight` by what it pulls.
    stream
        .create_consumer(ConsumerSpec::notify(&channel.id).config(None))
        .await
        .map_err(|e| e.to_string())
}

/// Runs `work`, telling JetStream the message is in progress every
/// [`PROGRESS_EVERY`] meanwhile: while its channel's turn is waited for and
/// while it is sent, so that neither turns into a redelivery to another
/// replica.
async fn in_progress<T>(msg: &jetstream::Message, work: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(PROGRESS_EVERY) => {
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }
    }
}

async fn deliver_one(shared: &Shared, channel: &Channel, msg: jetstream::Message) {
    use futures::FutureExt;
    let id = channel.id.as_str();
    let m = &shared.metrics;
    m.in_flight.with_label_values(&[id]).inc();
    // A panic is caught here, at the message's boundary: the message is
    // dead-lettered with its text and the channel goes on.
    let outcome = match std::panic::AssertUnwindSafe(attempt(shared, channel, &msg))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let text = talon_kit::pipeline::panic_text(panic.as_ref());
            tracing::error!(channel = %id, panic = ?text, "delivery panicked; dead-lettered");
            park(
                shared,
                channel,
                &msg,
                format!("notify panicked on it: {text}"),
                None,
            )
            .await
        }
    };
    m.in_flight.with_label_values(&[id]).dec();
    m.deliveries.with_label_values(&[id, outcome]).inc();
}

/// Takes one message of a grouped channel into its group: acked once
/// JetStream stored it there; dead-lettered when it is not an alert.
async fn group_one(shared: &Shared, channel: &Channel, groups: &Groups, msg: jetstream::Message) {
    let delivered = msg.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
    let outcome = if delivered > DEAD_AFTER {
        let reason = format!("delivered {delivered} times without being taken into its group");
        let alert_id = talon_proto::decode_alert(&msg.payload).ok().map(|a| a.id);
        park(shared, channel, &msg, reason, alert_id).await
    } else {
        match talon_proto::decode_alert(&msg.payload) {
            Err(e) => park(shared, channel, &msg, e.to_string(), None).await,
            Ok(alert) => match groups.add(&alert, msg.payload.clone()).await {
                Ok(()) => {
                    let _ = msg.double_ack().await;
                    "grouped"
                }
                Err(e) => {
                    tracing::warn!(channel = %channel.id, error = %e, "cannot group; retrying");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    "retry"
                }
            },
        }
    };
    shared
        .metrics
        .deliveries
        .with_label_values(&[&channel.id, outcome])
        .inc();
}

/// One delivery attempt; returns the outcome label.
async fn attempt(shared: &Shared, channel: &Channel, msg: &jetstream::Message) -> &'static str {
    let (delivered, published) = match msg.info() {
        Ok(i) => (i.delivered.max(1) as u64, i.published),
        Err(e) => {
            tracing::warn!(channel = %channel.id, error = %e, "message without JetStream info");
            return "retry";
        }
    };
    let age = || {
        chrono::Utc::now()
            .signed_duration_since(published)
            .to_std()
            .unwrap_or_default()
    };
    // Before any wait: a message past its deadline is not tried again.
    if let Some(reason) = give_up_before_trying(delivered, age(), channel.retry_deadline) {
        let alert_id = talon_proto::decode_alert(&msg.payload).ok().map(|a| a.id);
        return park(shared, channel, msg, reason, alert_id).await;
    }
    let alert: Alert = match talon_proto::decode_alert(&msg.payload) {
        Ok(a) => a,
        Err(e) => {
            return park(shared, channel, msg, e.to_string(), None).await;
        }
    };
    let key = ledger::key(&alert.id, &channel.id);
    // Another task of this replica with the same pair (the alert published
    // twice): one at a time.
    let Some(_held) = shared.held.hold(&key) else {
        let _ = msg
            .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
            .await;
        return "retry";
    };
    match shared.ledger.look(&key).await {
        Ok(Look::Free) => {}
        Ok(Look::Sent) => {
            let _ = msg.ack().await;
            return "skipped";
        }
        Ok(Look::Busy) => {
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
            return "retry";
        }
        Err(e) => {
            tracing::warn!(channel = %channel.id, error = %e, "ledger unavailable; retrying");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return "retry";
        }
    }
    let sending = async {
        channel.turn().await;
        let started = Instant::now();
        let result =
            match tokio::time::timeout(ATTEMPT_TIMEOUT, channel.sender.deliver(&alert)).await {
                Ok(r) => r,
                Err(_) => Err(DeliveryError::transient(format!(
                    "no answer within {ATTEMPT_TIMEOUT:?}"
                ))),
            };
        (started, result)
    };
    let (started, result) = in_progress(msg, sending).await;
    let jitter = rand::rng().random_range(-0.2..=0.2);
    let failed = match &result {
        Err(DeliveryError::Transient { reason, .. } | DeliveryError::Permanent(reason)) => {
            Some(reason.clone())
        }
        Ok(()) => None,
    };
    if let Some(wait) = pause_of(&result) {
        channel.pause_for(wait);
    }
    match decide(&result, delivered, age(), channel.retry_deadline, jitter) {
        Action::Sent => {
            shared.tell(
                &alert.id,
                &channel.id,
                DeliveryOutcome::Sent,
                delivered,
                None,
            );
            shared
                .metrics
                .delivery_seconds
                .with_label_values(&[&channel.id])
                .observe(started.elapsed().as_secs_f64());
            if let Err(e) = shared.ledger.record_sent(&key, None).await {
                // Not even after STALE_CLAIM: the message comes back after
                // the ack wait and the alert is sent again (the documented
                // duplicate window).
                tracing::warn!(channel = %channel.id, alert = %alert.id, error = %e, "delivered, but not recorded");
            }
            // A lost ack brings the message back after the ack wait, and
            // the ledger says it is sent: no round trip is waited for here.
            let _ = msg.ack().await;
            "sent"
        }
        Action::Park(reason) => {
            tracing::warn!(channel = %channel.id, alert = %alert.id, ?reason, "delivery given up");
            shared.tell(
                &alert.id,
                &channel.id,
                DeliveryOutcome::DeadLettered,
                delivered,
                Some(&reason),
            );
            park(shared, channel, msg, reason, Some(alert.id.clone())).await
        }
        Action::Retry(delay) => {
            tracing::info!(channel = %channel.id, alert = %alert.id, attempt = delivered, ?delay, reason = ?failed, "delivery failed; will retry");
            shared.tell(
                &alert.id,
                &channel.id,
                DeliveryOutcome::Retrying,
                delivered,
                failed.as_deref(),
            );
            shared
                .metrics
                .retries
                .with_label_values(&[&channel.id])
                .inc();
            let _ = msg.ack_with(AckKind::Nak(Some(delay))).await;
            "retry"
        }
    }
}

/// Dead-letters `msg` with `reason` (and its alert's id, when known).
async fn park(
    shared: &Shared,
    channel: &Channel,
    msg: &jetstream::Message,
    reason: String,
    alert_id: Option<String>,
) -> &'static str {
    let seq = msg.info().map(|i| i.stream_sequence).ok();
    let mut letter = DeadLetter::new(
        Stage::Notify,
        reason,
        msg.subject.as_str(),
        seq,
        &msg.payload,
    );
    letter.alert_id = alert_id;
    dead_letter(shared, channel, msg, letter).await
}

/// Parks the message on `talon.dlq.notify` and acks it; naks it when the
/// dead letter itself cannot be stored.
async fn dead_letter(
    shared: &Shared,
    channel: &Channel,
    msg: &jetstream::Message,
    mut letter: DeadLetter,
) -> &'static str {
    letter.channel = Some(channel.id.clone());
    let seq = letter.stream_seq.unwrap_or(0);
    let msg_id = derived_msg_id(
        talon_proto::names::MsgIdDomain::DeadLetter(Stage::Notify),
        &format!("{STREAM_NOTIFY}:{seq}"),
    );
    let stored = match talon_kit::dlq::publish(&shared.js, &letter, &msg_id).await {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match stored {
        Ok(()) => {
            shared
                .metrics
                .dead_letters
                .with_label_values(&[&channel.id])
                .inc();
            let _ = msg.double_ack().await;
            "dead"
        }
        Err(e) => {
            tracing::warn!(channel = %channel.id, error = %e, "cannot store dead letter; retrying");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            "retry"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_try_is_planned_past_the_deadline() {
        let s = Duration::from_secs;
        let check = |wanted: Duration, age: Duration, expected: Option<Duration>| {
            assert_eq!(
                next_try(wanted, age, s(60)),
                expected,
                "{wanted:?} at {age:?}"
            );
        };
        check(s(8), s(0), Some(s(8)));
        check(s(8), s(51), Some(s(8)));
        check(s(8), s(52), None);
        check(Duration::ZERO, s(10), Some(s(1)));
        check(Duration::MAX, s(0), None);
        check(s(u64::MAX), s(0), None);
        check(s(1), s(3600), None);
    }

    #[test]
    fn a_message_past_its_deadline_is_given_up_before_any_wait() {
        let s = Duration::from_secs;
        assert_eq!(
            give_up_before_trying(1, s(999_999), s(60)),
            None,
            "never tried yet"
        );
        assert_eq!(give_up_before_trying(2, s(59), s(60)), None);
        let reason = give_up_before_trying(3, s(61), s(60)).unwrap();
        assert!(
            reason.contains("past the channel's retry deadline of 60 s (2 tries)"),
            "{reason}"
        );
        assert!(give_up_before_trying(DEAD_AFTER + 1, s(0), s(60)).is_some());
        assert!(give_up_before_trying(DEAD_AFTER, s(0), s(60)).is_none());
    }

    #[test]
    fn a_huge_pause_is_cut_to_the_deadline() {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(pause_end(now, Duration::MAX, minute), Some(now + minute));
        assert_eq!(
            pause_end(now, Duration::from_secs(5), minute),
            Some(now + Duration::from_secs(5))
        );
        // Not even a clamped wait can overflow the clock into a panic.
        assert_eq!(pause_end(now, Duration::MAX, Duration::MAX), None);
    }

    #[test]
    fn decide_sends_parks_and_retries() {
        let hour = Duration::from_secs(3600);
        let fresh = Duration::from_secs(10);
        assert_eq!(decide(&Ok(()), 1, fresh, hour, 0.0), Action::Sent);
        let permanent = Err(DeliveryError::Permanent("404 Not Found".into()));
        assert_eq!(
            decide(&permanent, 1, fresh, hour, 0.0),
            Action::Park("404 Not Found".into())
        );
        // A transient failure: the backoff of the attempt, with jitter.
        let transient = Err(DeliveryError::transient("503"));
        assert_eq!(
            decide(&transient, 3, fresh, hour, 0.2),
            Action::Retry(Duration::from_secs_f64(4.8))
        );
        // Retry-After wins over the backoff and pauses the channel.
        let later = Err(DeliveryError::Transient {
            reason: "429".into(),
            retry_after: Some(Duration::from_secs(30)),
        });
        assert_eq!(
            decide(&later, 1, fresh, hour, 0.0),
            Action::Retry(Duration::from_secs(30))
        );
        assert_eq!(pause_of(&later), Some(Duration::from_secs(30)));
        assert_eq!(pause_of(&transient), None);
        // A next try past the deadline: parked now, saying why.
        match decide(&later, 1, hour - Duration::from_secs(20), hour, 0.0) {
            Action::Park(reason) => {
                assert!(
                    reason.starts_with("429 (still failing after 3580 s"),
                    "{reason}"
                );
                assert!(reason.contains("retry deadline of 3600 s"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let check = |attempt: u32, jitter: f64, secs: f64| {
            let got = backoff(attempt, jitter).as_secs_f64();
            assert!(
                (got - secs).abs() < 1e-9,
                "attempt {attempt}: {got} != {secs}"
            );
        };
        check(1, 0.0, 1.0);
        check(2, 0.0, 2.0);
        check(4, 0.0, 8.0);
        check(4, 0.2, 9.6);
        check(4, -0.2, 6.4);
        check(4, 5.0, 9.6); // jitter is clamped
        check(30, 0.0, 300.0);
        check(0, 0.0, 1.0);
    }
}
