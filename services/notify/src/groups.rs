//! Grouping: a channel with `group_by` (or a `digest`) sends one message
//! per group of alerts instead of one per alert (DESIGN §13).
//!
//! Where the state lives, and why it is exact with any number of replicas
//! and any SIGKILL:
//! - **Membership** is a JetStream subject per group,
//!   `talon.groups.<channel>.<group-key>` in stream `GROUPS`. A replica
//!   takes an alert off `Server.Monitor.Alerts.<channel>` by publishing it
//!   there (its `Nats-Msg-Id` derived from channel and alert id, so a
//!   redelivery is stored once) and acks the input only after the
//!   JetStream ack. Stream sequences order every group's alerts once and
//!   for all: a message is "the alerts of this subject after sequence A up
//!   to sequence B".
//! - **Progress** is one KV entry per group in `talon_groups`, changed only
//!   by compare-and-set: messages sent, the sequence sent through, when,
//!   and the message in progress (its number, its last sequence, which
//!   replica holds it and until when). Every replica looks at every group
//!   once a second; the one whose compare-and-set wins sends, the others
//!   see the lease and wait. A message's content is fixed before it is
//!   sent (its sequence range is in the entry), so a replica that takes
//!   over an expired lease sends exactly the same alerts under the same
//!   number.
//! - **Exactly once** comes from the delivery ledger, as for single alerts:
//!   the message's ledger key is `g-<group-key>-<number>`; a replica that
//!   died after the remote side accepted it and before the ledger said so
//!   is the one window for a duplicate (DESIGN §5). After the send the
//!   entry moves past the range and the subject is purged up to it; a
//!   crash between the two only leaves alerts the next look skips.
//!
//! Timing (Alertmanager's words): a group's first message goes
//! `group_wait` after its first alert; while alerts keep coming, at most
//! one message per `group_interval`; a group quiet for longer than
//! `group_interval` starts again with `group_wait`. With `digest`, a
//! group's message goes at the first scheduled time after its first
//! waiting alert; no alert, no message. A message counts at most
//! [`MAX_MESSAGE_ALERTS`] alerts; the rest of a larger backlog follows at
//! once in further messages. Times come from a [`Clock`], so tests can
//! move them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv, message::PublishMessage};
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use talon_kit::config::Grouping;
use talon_kit::streams::{self, Stream};
use talon_proto::group::{Builder, GroupValue, MAX_MESSAGE_ALERTS};
use talon_proto::key::derived_msg_id;
use talon_proto::names::{
    MsgIdDomain, Stage, BUCKET_GROUPS, HEADER_GROUPED_AT, MAX_AGE_GROUPS, STREAM_GROUPS,
    SUBJECT_GROUPS_PREFIX, SUBJECT_NOTIFY_PREFIX,
};
use talon_proto::{Alert, DeadLetter, GroupMessage};
use tokio_util::sync::CancellationToken;

use crate::channels::DeliveryError;
use crate::ledger::{self, Claim};
use crate::worker::{decide, Action, Channel, Shared, ATTEMPT_TIMEOUT};

/// How long a replica holds a group's message before another may take it
/// over: as long as a ledger claim stays fresh.
pub const LEASE: Duration = ledger::STALE_CLAIM;

/// How often every replica looks for groups that are due.
pub const TICK: Duration = Duration::from_secs(1);

/// A group value is shown with at most this many characters (the key is
/// computed from the whole value).
pub const VALUE_CHARS: usize = 1024;

/// Where the time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A group's progress, stored under `<channel>.<group-key>` in
/// `talon_groups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupState {
    /// Messages finished (sent, or dead-lettered): the last one's number.
    pub sent: u64,
    /// The `GROUPS` sequence the finished messages reach.
    pub sent_through: u64,
    /// When the last message was finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent_at: Option<DateTime<Utc>>,
    /// The last message was cut at [`MAX_MESSAGE_ALERTS`]: the rest is due
    /// at once.
    #[serde(default)]
    pub cut: bool,
    /// The message in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushing: Option<Flushing>,
}

/// A message being sent: its content is fixed (sequences after
/// `sent_through` up to `cutoff`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flushing {
    /// Its number within the group.
    pub sequence: u64,
    /// The last `GROUPS` sequence it holds.
    pub cutoff: u64,
    /// The replica holding it.
    pub by: String,
    /// Nobody else touches it before this (the lease, or a retry's wait).
    pub until: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u64,
    /// When it was first claimed: the retry deadline counts from here.
    pub started: DateTime<Utc>,
}

/// The group of `alert` on `channel`: its key (32 hex characters) and its
/// values. A field with several values (labels, a repeated context key)
/// takes them sorted and joined; a missing one is "".
pub fn group_of(grouping: &Grouping, channel: &str, alert: &Alert) -> (String, Vec<GroupValue>) {
    let mut hasher = Sha256::new();
    hasher.update(channel.as_bytes());
    let mut values = Vec::with_capacity(grouping.fields.len());
    for (name, field) in grouping.by.iter().zip(&grouping.fields) {
        let mut found = Vec::new();
        field.values(alert, channel, &mut found);
        found.sort_unstable();
        found.dedup();
        let value = found.join(", ");
        // Length-prefixed: no two lists of values hash alike by accident.
        for part in [name.as_str(), value.as_str()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        values.push(GroupValue {
            field: name.clone(),
            value: value.chars().take(VALUE_CHARS).collect(),
        });
    }
    let digest = hasher.finalize();
    let key = hex::encode(digest.get(..16).unwrap_or_default());
    (key, values)
}

fn after(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When a group whose first waiting alert was taken in at `first` is due.
pub fn due_at(grouping: &Grouping, state: &GroupState, first: DateTime<Utc>) -> DateTime<Utc> {
    if state.cut {
        return first;
    }
    if let Some(schedule) = &grouping.digest {
        return schedule.next_after(first);
    }
    match state.last_sent_at {
        Some(last) if first < after(last, grouping.interval) => after(last, grouping.interval),
        _ => after(first, grouping.wait),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("groups of channel {channel}: {reason}")]
pub struct GroupError {
    channel: String,
    reason: String,
}

/// What looking at one group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Looked {
    /// Nothing to do before the given time.
    NotBefore(DateTime<Utc>),
    /// A message went out (or was found sent, or dead-lettered).
    Finished { more: bool },
    /// Tried and failed; retried later.
    Failed,
}

/// One grouped channel: takes alerts into their groups and sends each
/// group's messages when due.
pub struct Groups {
    shared: Arc<Shared>,
    channel: Arc<Channel>,
    grouping: Grouping,
    clock: Arc<dyn Clock>,
    replica: String,
    stream: jetstream::stream::Stream,
    state: kv::Store,
    /// Groups known not to be due before a time (never later than they
    /// are due: another replica's send only makes a group due later).
    not_before: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Groups {
    /// Opens (creating when missing) the `GROUPS` stream and the
    /// `talon_groups` bucket.
    pub async fn open(
        shared: Arc<Shared>,
        channel: Arc<Channel>,
        grouping: Grouping,
        clock: Arc<dyn Clock>,
        replica: String,
    ) -> Result<Groups, GroupError> {
        let fail = |reason: String| GroupError {
            channel: channel.id.clone(),
            reason,
        };
        let stream = streams::ensure_stream(&shared.js, Stream::Groups, shared.topology)
            .await
            .map_err(|e| fail(e.to_string()))?;
        streams::ensure_stream(&shared.js, Stream::Dlq, shared.topology)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let state = streams::ensure_bucket(
            &shared.js,
            BUCKET_GROUPS,
            "talon notify: each group's messages sent, sequence sent through, message in progress",
            MAX_AGE_GROUPS,
            shared.topology.replicas,
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        Ok(Groups {
            shared,
            channel,
            grouping,
            clock,
            replica,
            stream,
            state,
            not_before: Mutex::new(HashMap::new()),
        })
    }

    fn fail(&self, reason: impl std::fmt::Display) -> GroupError {
        GroupError {
            channel: self.channel.id.clone(),
            reason: reason.to_string(),
        }
    }

    fn subject(&self, key: &str) -> String {
        format!("{SUBJECT_GROUPS_PREFIX}.{}.{key}", self.channel.id)
    }

    /// Takes `alert` (whose encoding is `payload`) into its group: returns
    /// once JetStream stored it. Taking the same alert in twice stores it
    /// once.
    pub async fn add(&self, alert: &Alert, payload: Bytes) -> Result<(), GroupError> {
        let (key, _) = group_of(&self.grouping, &self.channel.id, alert);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_GROUPED_AT, self.clock.now().to_rfc3339().as_str());
        let id = derived_msg_id(
            MsgIdDomain::Group,
            &format!("{}:{}", self.channel.id, alert.id),
        );
        let message = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(id);
        let ack = self
            .shared
            .js
            .send_publish(self.subject(&key), message)
            .await
            .map_err(|e| self.fail(e))?;
        match ack.await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                Err(self.fail("the GROUPS stream is missing"))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Looks every second for groups that are due until `shutdown`; a
    /// message being sent is finished first.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "looking at groups; again in a second");
            }
        }
    }

    /// Sends every group message that is due now; returns how many were
    /// finished.
    pub async fn tick(&self) -> Result<usize, GroupError> {
        let filter = format!("{SUBJECT_GROUPS_PREFIX}.{}.*", self.channel.id);
        let stream = self.stream.clone();
        let mut subjects = stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| self.fail(e))?;
        let mut open = Vec::new();
        while let Some(item) = subjects.next().await {
            let (subject, count) = item.map_err(|e| self.fail(e))?;
            if count > 0 {
                open.push(subject);
            }
        }
        self.shared
            .metrics
            .groups_open
            .with_label_values(&[&self.channel.id])
            .set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        let mut finished = 0;
        for subject in open {
            let Some(key) = subject.rsplit('.').next().map(str::to_owned) else {
                continue;
            };
            let now = self.clock.now();
            let wait = self.lock_not_before().get(&key).copied();
            if wait.is_some_and(|t| t > now) {
                continue;
            }
            // A backlog larger than one message goes out message after
            // message.
            for _ in 0..1000 {
                match self.look(&subject, &key).await? {
                    Looked::NotBefore(t) => {
                        self.lock_not_before().insert(key.clone(), t);
                        break;
                    }
                    Looked::Finished { more } => {
                        finished += 1;
                        self.lock_not_before().remove(&key);
                        if !more {
                            break;
                        }
                    }
                    Looked::Failed => break,
                }
            }
        }
        let mut known = self.lock_not_before();
        if known.len() > 100_000 {
            known.clear();
        }
        Ok(finished)
    }

    fn lock_not_before(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.not_before.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The group's progress and its revision (none: never written).
    async fn load(&self, kv_key: &str) -> Result<(GroupState, Option<u64>), GroupError> {
        let entry = self.state.entry(kv_key).await.map_err(|e| self.fail(e))?;
        let Some(entry) = entry else {
            return Ok((GroupState::default(), None));
        };
        if entry.operation != kv::Operation::Put {
            return Ok((GroupState::default(), Some(entry.revision)));
        }
        match serde_json::from_slice(&entry.value) {
            Ok(state) => Ok((state, Some(entry.revision))),
            Err(e) => {
                // Not ours to trust: start the group over (what it sent is
                // purged from its subject already).
                tracing::warn!(key = kv_key, error = %e, "group state unreadable; starting over");
                Ok((GroupState::default(), Some(entry.revision)))
            }
        }
    }

    /// Writes `state` over `revision` (none: create); `None` when another
    /// replica wrote first (or NATS did not answer: tried again later).
    async fn save(&self, kv_key: &str, state: &GroupState, revision: Option<u64>) -> Option<u64> {
        let body: Bytes = serde_json::to_vec(state).ok()?.into();
        let written = match revision {
            None => self
                .state
                .create(kv_key, body)
                .await
                .map_err(|e| e.to_string()),
            Some(r) => self
                .state
                .update(kv_key, body, r)
                .await
                .map_err(|e| e.to_string()),
        };
        match written {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(key = kv_key, error = %e, "group state not written (another replica was first?)");
                None
            }
        }
    }

    /// The first message of `subject` at or after `seq`.
    async fn next_message(
        &self,
        subject: &str,
        seq: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, GroupError> {
        use jetstream::stream::DirectGetErrorKind;
        match self
            .stream
            .direct_get_next_for_subject(subject, Some(seq.max(1)))
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// When the stored message was taken into its group.
    fn grouped_at(message: &jetstream::message::StreamMessage) -> DateTime<Utc> {
        message
            .headers
            .get(HEADER_GROUPED_AT)
            .and_then(|v| DateTime::parse_from_rfc3339(v.as_str()).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| message.time.with_timezone(&Utc))
    }

    /// Looks at one group: claims its message when due, sends it, records
    /// it.
    async fn look(&self, subject: &str, key: &str) -> Result<Looked, GroupError> {
        let kv_key = format!("{}.{key}", self.channel.id);
        let now = self.clock.now();
        let (state, revision) = self.load(&kv_key).await?;
        let resume = match &state.flushing {
            Some(f) if f.until > now => return Ok(Looked::NotBefore(f.until)),
            // Expired: the same message, taken over.
            Some(f) => Some(f.clone()),
            None => {
                let from = state.sent_through.saturating_add(1);
                let Some(first) = self.next_message(subject, from).await? else {
                    self.purge(subject, from).await;
                    return Ok(Looked::NotBefore(after(now, Duration::from_secs(60))));
                };
                let due = due_at(&self.grouping, &state, Self::grouped_at(&first));
                if now < due {
                    return Ok(Looked::NotBefore(due));
                }
                None
            }
        };
        // The channel's turn (its rate, a Retry-After pause) comes before
        // the group is held: a lease never runs out while it waits. Should
        // another replica move the group meanwhile, the claim below fails.
        self.channel.turn().await;
        let now = self.clock.now();
        let claim = match resume {
            Some(f) => Flushing {
                by: self.replica.clone(),
                until: after(now, LEASE),
                ..f
            },
            None => {
                let last = self
                    .stream
                    .direct_get_last_for_subject(subject)
                    .await
                    .map_err(|e| self.fail(e))?;
                Flushing {
                    sequence: state.sent.saturating_add(1),
                    cutoff: last.sequence,
                    by: self.replica.clone(),
                    until: after(now, LEASE),
                    attempts: 0,
                    started: now,
                }
            }
        };
        let mut next = GroupState {
            flushing: Some(claim.clone()),
            ..state.clone()
        };
        let Some(mut revision) = self.save(&kv_key, &next, revision).await else {
            return Ok(Looked::NotBefore(after(now, TICK)));
        };
        let Some((message, cutoff)) = self.read(subject, key, &state, &claim).await? else {
            // Nothing readable in the range (aged out, or not alerts).
            return self.finish(&kv_key, revision, &claim, false).await;
        };
        let cut = cutoff < claim.cutoff;
        let claim = Flushing { cutoff, ..claim };
        if cut {
            next.flushing = Some(claim.clone());
            match self.save(&kv_key, &next, Some(revision)).await {
                Some(r) => revision = r,
                None => return Ok(Looked::NotBefore(after(now, TICK))),
            }
        }
        self.send(&kv_key, revision, &state, claim, message, cut)
            .await
    }

    /// The message of `claim`: the alerts after `state.sent_through` up to
    /// its cutoff, at most [`MAX_MESSAGE_ALERTS`]; and the sequence it
    /// really reaches. `None` when no alert in the range could be read.
    async fn read(
        &self,
        subject: &str,
        key: &str,
        state: &GroupState,
        claim: &Flushing,
    ) -> Result<Option<(GroupMessage, u64)>, GroupError> {
        let mut builder: Option<Builder> = None;
        let mut seq = state.sent_through.saturating_add(1);
        let mut cutoff = claim.cutoff;
        while seq <= claim.cutoff {
            let Some(m) = self.next_message(subject, seq).await? else {
                break;
            };
            if m.sequence > claim.cutoff {
                break;
            }
            match talon_proto::decode_alert(&m.payload) {
                Ok(alert) => {
                    let b = builder.get_or_insert_with(|| {
                        let (_, values) = group_of(&self.grouping, &self.channel.id, &alert);
                        Builder::new(
                            &self.channel.id,
                            key,
                            values,
                            claim.sequence,
                            self.grouping.digest.as_ref().map(|d| d.to_string()),
                            self.grouping.max_listed,
                        )
                    });
                    b.push(alert);
                    if b.count() >= MAX_MESSAGE_ALERTS {
                        cutoff = m.sequence;
                        break;
                    }
                }
                Err(e) => {
                    // Only notify publishes here; still, never trusted.
                    tracing::warn!(subject, seq = m.sequence, error = %e, "not an alert in a group; skipped");
                }
            }
            seq = m.sequence.saturating_add(1);
        }
        Ok(builder.map(|b| (b.finish(), cutoff)))
    }

    /// Sends the claimed message once (the ledger), then records it.
    async fn send(
        &self,
        kv_key: &str,
        revision: u64,
        state: &GroupState,
        claim: Flushing,
        message: GroupMessage,
        cut: bool,
    ) -> Result<Looked, GroupError> {
        let id = self.channel.id.as_str();
        let m = &self.shared.metrics;
        let ledger_key = ledger::key(&format!("g-{}-{}", message.group_key, claim.sequence), id);
        let ledger_revision = match self.shared.ledger.claim(&ledger_key).await {
            Ok(Claim::Mine(r)) => r,
            Ok(Claim::AlreadySent) => {
                m.group_messages.with_label_values(&[id, "skipped"]).inc();
                return self.finish(kv_key, revision, &claim, cut).await;
            }
            Ok(Claim::Busy) => return Ok(Looked::NotBefore(after(self.clock.now(), TICK))),
            Err(e) => return Err(self.fail(e)),
        };
        let result = match tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            self.channel.sender.deliver_group(&message),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::transient(format!(
                "no answer within {ATTEMPT_TIMEOUT:?}"
            ))),
        };
        if let Err(DeliveryError::Transient {
            retry_after: Some(wait),
            ..
        }) = &result
        {
            self.channel.pause_for(*wait);
        }
        if result.is_err() {
            let _ = self.shared.ledger.release(&ledger_key).await;
        }
        let now = self.clock.now();
        let age = now
            .signed_duration_since(claim.started)
            .to_std()
            .unwrap_or_default();
        let jitter = rand::rng().random_range(-0.2..=0.2);
        match decide(
            &result,
            claim.attempts.saturating_add(1),
            age,
            self.channel.retry_deadline,
            jitter,
        ) {
            Action::Sent => {
                if let Err(e) = self
                    .shared
                    .ledger
                    .record_sent(&ledger_key, Some(ledger_revision))
                    .await
                {
                    tracing::warn!(channel = id, group = %message.group_key, error = %e, "group message sent, but not recorded");
                }
                m.group_messages.with_label_values(&[id, "sent"]).inc();
                m.group_alerts
                    .with_label_values(&[id])
                    .observe(message.count as f64);
                tracing::info!(channel = id, group = %message.group_key, sequence = claim.sequence, alerts = message.count, "group message sent");
                self.finish(kv_key, revision, &claim, cut).await
            }
            Action::Retry(delay) => {
                let reason = match &result {
                    Err(e) => e.to_string(),
                    Ok(()) => String::new(),
                };
                tracing::info!(channel = id, group = %message.group_key, attempt = claim.attempts + 1, ?delay, reason, "group message failed; will retry");
                m.group_messages.with_label_values(&[id, "retry"]).inc();
                m.retries.with_label_values(&[id]).inc();
                let next = GroupState {
                    flushing: Some(Flushing {
                        attempts: claim.attempts.saturating_add(1),
                        until: after(now, delay),
                        ..claim
                    }),
                    ..state.clone()
                };
                self.save(kv_key, &next, Some(revision)).await;
                Ok(Looked::Failed)
            }
            Action::Park(reason) => {
                tracing::warn!(channel = id, group = %message.group_key, ?reason, "group message given up; its alerts dead-lettered");
                m.group_messages.with_label_values(&[id, "dead"]).inc();
                let subject = self.subject(&message.group_key);
                if !self.park(&subject, state, &claim, &reason).await {
                    return Ok(Looked::Failed);
                }
                self.finish(kv_key, revision, &claim, cut).await
            }
        }
    }

    /// Dead-letters every alert of the claimed message, each as the input
    /// it was (`Server.Monitor.Alerts.<channel>`), so `talonctl dlq replay`
    /// groups them again. False when a letter could not be stored.
    async fn park(
        &self,
        subject: &str,
        state: &GroupState,
        claim: &Flushing,
        reason: &str,
    ) -> bool {
        let origin = format!("{SUBJECT_NOTIFY_PREFIX}.{}", self.channel.id);
        let reason = format!("group message {} not sent: {reason}", claim.sequence);
        let mut seq = state.sent_through.saturating_add(1);
        while seq <= claim.cutoff {
            let m = match self.next_message(subject, seq).await {
                Ok(Some(m)) if m.sequence <= claim.cutoff => m,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a group's alert to dead-letter it");
                    return false;
                }
            };
            let mut letter = DeadLetter::new(
                Stage::Notify,
                reason.clone(),
                &origin,
                Some(m.sequence),
                &m.payload,
            );
            letter.alert_id = talon_proto::decode_alert(&m.payload).ok().map(|a| a.id);
            letter.channel = Some(self.channel.id.clone());
            let msg_id = derived_msg_id(
                MsgIdDomain::GroupDeadLetter,
                &format!("{STREAM_GROUPS}:{}", m.sequence),
            );
            let stored = match talon_kit::dlq::publish(&self.shared.js, &letter, &msg_id).await {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = stored {
                tracing::warn!(error = %e, "cannot store a dead letter; the group message is tried again");
                return false;
            }
            self.shared
                .metrics
                .dead_letters
                .with_label_values(&[&self.channel.id])
                .inc();
            seq = m.sequence.saturating_add(1);
        }
        true
    }

    /// Records the claimed message as finished (through `cutoff`) and
    /// purges what it held from the group's subject.
    async fn finish(
        &self,
        kv_key: &str,
        revision: u64,
        claim: &Flushing,
        cut: bool,
    ) -> Result<Looked, GroupError> {
        let cutoff = claim.cutoff;
        let now = self.clock.now();
        let done = GroupState {
            sent: claim.sequence,
            sent_through: cutoff,
            last_sent_at: Some(now),
            cut,
            flushing: None,
        };
        if self.save(kv_key, &done, Some(revision)).await.is_none() {
            // Our lease ran out and another replica took the message over:
            // it finds it sent in the ledger and records it.
            return Ok(Looked::NotBefore(after(now, TICK)));
        }
        let subject = format!("{SUBJECT_GROUPS_PREFIX}.{kv_key}");
        self.purge(&subject, cutoff.saturating_add(1)).await;
        Ok(Looked::Finished { more: cut })
    }

    /// Removes `subject`'s messages before `below` (a failure only leaves
    /// alerts that the group's progress already skips).
    async fn purge(&self, subject: &str, below: u64) {
        if let Err(e) = self.stream.purge().filter(subject).sequence(below).await {
            tracing::debug!(subject, error = %e, "group purge failed; skipped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talon_kit::config::ChannelConfig;

    fn grouping(edit: impl FnOnce(&mut ChannelConfig)) -> Grouping {
        let mut c = ChannelConfig::new("c", talon_kit::config::ChannelKind::Webhook);
        c.group_by = Some(vec!["name".into()]);
        edit(&mut c);
        c.grouping().expect("a grouping")
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_new_group_waits_then_one_message_per_interval() {
        let g = grouping(|_| {});
        let fresh = GroupState::default();
        assert_eq!(
            due_at(&g, &fresh, t("2026-01-01T00:00:00Z")),
            t("2026-01-01T00:00:30Z")
        );
        let sent = GroupState {
            sent: 1,
            last_sent_at: Some(t("2026-01-01T00:00:30Z")),
            ..GroupState::default()
        };
        // Still hot: the interval after the last message.
        assert_eq!(
            due_at(&g, &sent, t("2026-01-01T00:01:00Z")),
            t("2026-01-01T00:05:30Z")
        );
        // Quiet for longer than the interval: a new wait.
        assert_eq!(
            due_at(&g, &sent, t("2026-01-01T00:06:00Z")),
            t("2026-01-01T00:06:30Z")
        );
        // The rest of a backlog one message could not hold: at once.
        let cut = GroupState { cut: true, ..sent };
        assert_eq!(
            due_at(&g, &cut, t("2026-01-01T00:01:00Z")),
            t("2026-01-01T00:01:00Z")
        );
    }

    #[test]
    fn a_digest_is_due_at_its_next_time() {
        let g = grouping(|c| {
            c.group_by = None;
            c.digest = Some("daily 08:00 Europe/Berlin".into());
        });
        let state = GroupState {
            last_sent_at: Some(t("2026-12-04T07:00:00Z")),
            ..GroupState::default()
        };
        assert_eq!(
            due_at(&g, &state, t("2026-12-04T09:00:00Z")),
            t("2026-12-05T07:00:00Z")
        );
        assert_eq!(
            due_at(&g, &state, t("2026-12-05T06:59:59Z")),
            t("2026-12-05T07:00:00Z")
        );
    }

    #[test]
    fn groups_are_keyed_by_their_values() {
        let g = grouping(|c| c.group_by = Some(vec!["name".into(), "labels".into()]));
        let mut a = Alert::sample();
        a.client = Some(talon_proto::ClientInfo {
            labels: vec!["b".into(), "a".into(), "a".into()],
            ..Default::default()
        });
        let (key, values) = group_of(&g, "c", &a);
        assert_eq!(key.len(), 32);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(values[1].value, "a, b");
        let mut b = a.clone();
        b.id = "another".into();
        b.client_id = Some("C.9".into());
        assert_eq!(group_of(&g, "c", &b).0, key, "other fields do not matter");
        b.name = "Other".into();
        assert_ne!(group_of(&g, "c", &b).0, key);
        assert_ne!(group_of(&g, "d", &a).0, key, "each channel its own groups");
        // No value is split into two that hash alike.
        let g2 = grouping(|c| c.group_by = Some(vec!["name".into(), "severity".into()]));
        let mut x = Alert::sample();
        x.name = "ab".into();
        x.severity = Some("c".into());
        let mut y = Alert::sample();
        y.name = "a".into();
        y.severity = Some("bc".into());
        assert_ne!(group_of(&g2, "c", &x).0, group_of(&g2, "c", &y).0);
        // A huge value is shown cut, keyed whole.
        let mut big = Alert::sample();
        big.name = "n".repeat(5000);
        let (k1, v1) = group_of(&g, "c", &big);
        big.name.push('m');
        assert_eq!(v1[0].value.chars().count(), VALUE_CHARS);
        assert_ne!(group_of(&g, "c", &big).0, k1);
    }
}
