//! The NATS side of rules with state: each (rule, key) is one entry of the
//! KV bucket `talon_rules`, changed only by compare-and-set, so any ingest
//! replica may count any row and two replicas counting one key at once
//! serialize on the entry's revision.
//!
//! An alert decided by a count is written into the entry (`pending`) in
//! the same compare-and-set as the count, then published to
//! `Server.Internal.Alerts` (its `Nats-Msg-Id` fixed in the entry), then
//! cleared. A replica that dies between the write and the publish leaves
//! the alert in the entry: whoever touches the entry next — the row's
//! redelivery, another row of the key, the absent clock — publishes it
//! first. Rows are acked only after all of that, and a row applied twice
//! changes nothing the second time (`counting`), so a count is exact
//! across SIGKILL and across replicas.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, message::PublishMessage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use talon_proto::key::derived_msg_id;
use talon_proto::names::{MsgIdDomain, BUCKET_RULES, HEADER_SOURCE, SUBJECT_ALERTS};
use talon_proto::ClientInfo;

use crate::counting::{self, KeyState, Kind, Raise};
use crate::monitor::source_header;
use crate::rules::{Count, Rule, RuleError};

/// How long an entry lives after its last change: longer than any
/// `within`, `lookback` or `after` (at most a year).
pub const KEEP: Duration = Duration::from_secs(talon_kit::config::MAX_RULE_SECONDS + 86_400);

/// Characters of a key's values kept in its entry for people to read.
pub const SHOWN_KEY_CHARS: usize = 1024;

/// An entry: the key's state and an alert decided but not yet known stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The rule and the key's values, for people reading the bucket.
    #[serde(default)]
    pub rule: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub state: KeyState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// An alert to publish, with its `Nats-Msg-Id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub msg_id: String,
    pub alert: Value,
}

/// Why a row's count failed this time (the row is retried, and
/// dead-lettered after `pipeline::DEAD_AFTER` failures).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("rule state: {0}")]
    Store(String),
    #[error("rule state: the raised alert was not stored: {0}")]
    Publish(String),
    #[error(transparent)]
    Render(#[from] RuleError),
    /// The key's entry with the alert it raised would be larger than a NATS
    /// message may be: retrying cannot help.
    #[error("rule state: the entry with its alert is {bytes} bytes, over the {max} a NATS message may hold")]
    TooLarge { bytes: usize, max: usize },
}

fn store_err(e: impl std::fmt::Display) -> StateError {
    StateError::Store(e.to_string())
}

/// The KV key of (`rule`, `key`): both hashed, so any rule name and any
/// column values make a valid key, and a rule's entries share a prefix.
pub fn entry_key(rule: &str, key: &str) -> String {
    format!(
        "{}.{}",
        rule_prefix(rule),
        derived_msg_id(MsgIdDomain::Rule, key)
    )
}

/// The prefix of every entry of `rule`.
pub fn rule_prefix(rule: &str) -> String {
    derived_msg_id(MsgIdDomain::Rule, &format!("rule\u{0}{rule}"))
}

/// The bucket of rule state.
#[derive(Clone)]
pub struct States {
    js: jetstream::Context,
    store: kv::Store,
    /// The largest value the server takes (its `max_payload`, less room
    /// for the headers).
    max_value: usize,
}

/// What happened to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted; nothing raised.
    Counted,
    /// Counted and raised an alert (stored in `ALERTS`).
    Raised,
    /// Applied before (a redelivery): nothing changed.
    Again,
}

impl States {
    /// Opens (creating when missing) the bucket.
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<States, StateError> {
        let store = talon_kit::streams::ensure_bucket(
            js,
            BUCKET_RULES,
            "talon ingest: the state of rules that count (threshold, first_seen, absent)",
            KEEP,
            replicas,
        )
        .await
        .map_err(store_err)?;
        Ok(States {
            js: js.clone(),
            store,
            max_value: crate::monitor::max_alert_bytes(js),
        })
    }

    /// The entry under `key` and its revision (0: none yet).
    async fn read(&self, key: &str) -> Result<(Entry, u64), StateError> {
        match self.store.entry(key).await.map_err(store_err)? {
            Some(e) if e.operation == kv::Operation::Put => {
                // An entry that does not read starts over rather than
                // stopping the rule.
                let entry = serde_json::from_slice(&e.value).unwrap_or_default();
                Ok((entry, e.revision))
            }
            Some(e) => Ok((Entry::default(), e.revision)),
            None => Ok((Entry::default(), 0)),
        }
    }

    /// Writes `entry` over `revision`; `Ok(None)` when someone else wrote
    /// first.
    async fn write(
        &self,
        key: &str,
        entry: &Entry,
        revision: u64,
    ) -> Result<Option<u64>, StateError> {
        let value: bytes::Bytes = serde_json::to_vec(entry).map_err(store_err)?.into();
        if value.len() > self.max_value {
            return Err(StateError::TooLarge {
                bytes: value.len(),
                max: self.max_value,
            });
        }
        let written = if revision == 0 {
            self.store
                .create(key, value)
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => None,
                    _ => Some(store_err(e)),
                })
        } else {
            self.store
                .update(key, value, revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => None,
                    _ => Some(store_err(e)),
                })
        };
        match written {
            Ok(r) => Ok(Some(r)),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    /// Publishes `pending` and waits for JetStream to store it.
    async fn publish(&self, rule: &str, pending: &Pending) -> Result<(), StateError> {
        let body = serde_json::to_vec(&pending.alert).map_err(store_err)?;
        let ack = self
            .js
            .send_publish(
                SUBJECT_ALERTS,
                PublishMessage::build()
                    .payload(body.into())
                    .message_id(pending.msg_id.as_str())
                    .header(HEADER_SOURCE, source_header(rule).as_str()),
            )
            .await
            .map_err(|e| StateError::Publish(e.to_string()))?;
        ack.await.map_err(|e| StateError::Publish(e.to_string()))?;
        Ok(())
    }

    /// Publishes the entry `key`'s `pending` alert, then clears it there.
    async fn deliver(&self, rule: &str, key: &str, pending: &Pending) -> Result<(), StateError> {
        self.publish(rule, pending).await?;
        self.clear(key, &pending.msg_id).await
    }

    /// Clears `msg_id`'s alert from the entry once it is stored; a later
    /// writer's entry is left as it is unless it still holds that alert.
    async fn clear(&self, key: &str, msg_id: &str) -> Result<(), StateError> {
        loop {
            let (mut entry, revision) = self.read(key).await?;
            if entry.pending.as_ref().is_none_or(|p| p.msg_id != msg_id) {
                return Ok(());
            }
            entry.pending = None;
            if self.write(key, &entry, revision).await?.is_some() {
                return Ok(());
            }
        }
    }

    /// Counts the row `row_id` (as `count` says) for `rule`; when the count
    /// raises, `build` makes the alert, which is stored before this returns.
    pub async fn count_row(
        &self,
        rule: &Rule,
        kind: Kind,
        row_id: &str,
        count: &Count,
        build: &(dyn Fn(&Raise) -> Result<Value, RuleError> + Sync),
    ) -> Result<Counted, StateError> {
        let key = entry_key(&rule.name, &count.key);
        loop {
            let (mut entry, revision) = self.read(&key).await?;
            let before = entry.clone();
            if let Some(earlier) = entry.pending.take() {
                self.publish(&rule.name, &earlier).await?;
            }
            entry.rule.clone_from(&rule.name);
            // Shown cut; keyed whole (hashed into the entry's key).
            entry.key = count.key.chars().take(SHOWN_KEY_CHARS).collect();
            let sample = count.sample.clone();
            let raise = counting::apply(kind, &mut entry.state, row_id, count.at_ms, sample);
            if let Some(raise) = &raise {
                entry.pending = Some(Pending {
                    msg_id: crate::monitor::alert_msg_id(&rule.name, row_id),
                    alert: build(raise)?,
                });
            }
            if entry == before {
                return Ok(Counted::Again);
            }
            if self.write(&key, &entry, revision).await?.is_none() {
                continue; // another replica wrote first: count on its entry
            }
            let Some(pending) = entry.pending else {
                return Ok(Counted::Counted);
            };
            self.deliver(&rule.name, &key, &pending).await?;
            return Ok(Counted::Raised);
        }
    }
}

/// The entries of the absent rules, followed from the bucket into memory
/// (`kit::kv::follow`), with their revisions.
#[derive(Clone, Default)]
pub struct Followed(Arc<Mutex<HashMap<String, (u64, Entry)>>>);

impl Followed {
    /// Keeps `entry` when its key is one of `prefixes`' (the absent rules').
    pub fn apply(&self, prefixes: &[String], entry: &kv::Entry) {
        let Some((prefix, _)) = entry.key.split_once('.') else {
            return;
        };
        if !prefixes.iter().any(|p| p == prefix) {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if entry.operation == kv::Operation::Put {
            if let Ok(e) = serde_json::from_slice::<Entry>(&entry.value) {
                map.insert(entry.key.clone(), (entry.revision, e));
                return;
            }
        }
        map.remove(&entry.key);
    }

    fn snapshot(&self) -> Vec<(String, u64, Entry)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(k, (r, e))| (k.clone(), *r, e.clone()))
            .collect()
    }
}

impl States {
    /// One look of the absent clock at `now`: every followed entry of
    /// `rule` silent for its `after` raises once (compare-and-set: one
    /// replica wins), and alerts left pending are published.
    pub async fn absent_tick(
        &self,
        rule: &Rule,
        followed: &Followed,
        now: DateTime<Utc>,
        clients: &(dyn Fn(&str) -> Option<ClientInfo> + Sync),
    ) -> Result<Look, StateError> {
        let mut look = Look::default();
        let Some(Kind::Absent { after_ms }) = rule.kind else {
            return Ok(look);
        };
        let prefix = rule_prefix(&rule.name);
        for (key, revision, mut entry) in followed.snapshot() {
            if !key.starts_with(&prefix) {
                continue;
            }
            look.keys += 1;
            if let Some(pending) = &entry.pending {
                self.deliver(&rule.name, &key, pending).await?;
                continue;
            }
            let Some(raise) =
                counting::absent_tick(&mut entry.state, now.timestamp_millis(), after_ms)
            else {
                continue;
            };
            let row = match &entry.state.last_row {
                Some(Value::Object(row)) => row.clone(),
                _ => Map::new(),
            };
            let alert = rule.alert(&row, now, clients, Some((&raise, now)))?;
            let msg_id = crate::monitor::alert_msg_id(
                &rule.name,
                &format!("absent\u{0}{key}\u{0}{}", raise.last_ms),
            );
            entry.pending = Some(Pending { msg_id, alert });
            if self.write(&key, &entry, revision).await?.is_none() {
                continue; // changed meanwhile (a row, or another replica): next tick
            }
            if let Some(pending) = &entry.pending {
                self.deliver(&rule.name, &key, pending).await?;
                look.raised += 1;
            }
        }
        Ok(look)
    }

    /// The bucket, to follow.
    pub fn store(&self) -> kv::Store {
        self.store.clone()
    }
}

/// What one look of the absent clock saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// The rule's keys followed (clients that sent rows).
    pub keys: usize,
    /// Alerts raised by this look.
    pub raised: usize,
}

/// How often the absent clock looks.
pub const TICK: Duration = Duration::from_secs(5);

/// The absent clock: every [`TICK`], once the bucket's entries are in and
/// the rules' consumer has no row waiting (so a backlog — an ingest that
/// was stopped — is counted before any silence is judged), each absent
/// rule's silent keys raise. Runs until `shutdown` fires.
pub async fn absent_clock(
    states: States,
    rules: crate::rules::Rules,
    consumer: jetstream::consumer::PullConsumer,
    inventory: talon_kit::inventory::Inventory,
    metrics: crate::metrics::Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let prefixes: Vec<String> = rules.absent().map(|r| rule_prefix(&r.name)).collect();
    let followed = Followed::default();
    let (loaded_tx, mut loaded) = tokio::sync::watch::channel(false);
    {
        let (store, followed, shutdown) = (states.store(), followed.clone(), shutdown.clone());
        tokio::spawn(talon_kit::kv::follow(
            "rule state",
            move || {
                let store = store.clone();
                async move { Ok(store) }
            },
            move |entry| followed.apply(&prefixes, entry),
            loaded_tx,
            shutdown,
        ));
    }
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = async { loaded.wait_for(|l| *l).await.map(|_| ()) } => {}
    }
    let clients = |id: &str| inventory.get(id);
    let mut consumer = consumer;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        match consumer.info().await {
            Ok(info) if info.num_pending == 0 => {}
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "absent clock: cannot read the rules' consumer");
                continue;
            }
        }
        let now = Utc::now();
        metrics.absent_last_look.set(now.timestamp());
        for rule in rules.absent() {
            match states.absent_tick(rule, &followed, now, &clients).await {
                Ok(look) => {
                    metrics
                        .absent_keys
                        .with_label_values(&[rule.name.as_str()])
                        .set(i64::try_from(look.keys).unwrap_or(i64::MAX));
                    if look.raised > 0 {
                        tracing::info!(rule = %rule.name, raised = look.raised, "absent rule raised");
                        metrics
                            .rule_evaluations
                            .with_label_values(&[rule.name.as_str(), "raised"])
                            .inc_by(look.raised as u64);
                    }
                }
                Err(e) => tracing::warn!(rule = %rule.name, error = %e, "absent clock"),
            }
        }
    }
}
