//! The inbox as the console sees it: the `INBOX` stream (one subject per
//! user) followed into an [`Index`], the `talon_inbox_state` bucket (each
//! user's read and cleared marks) watched into the same index. Nothing is
//! kept only in the replica: a restart rebuilds the index from NATS, and
//! every change is written to NATS before it is answered.
//!
//! A group message is read from the stream when it is shown or its alerts
//! are listed, checked ([`view::decode_group`]) and kept decoded in a small
//! cache (a message never changes); one that fails the checks is skipped,
//! logged and dropped from the index.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures::StreamExt;
use talon_proto::names::{HEADER_ALERT_ID, HEADER_GROUP, SUBJECT_INBOX_PREFIX};
use talon_proto::Alert;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::index::{Entry, GroupRef, Index, Marks};
use super::view::{self, Group, MessageView};

/// How often messages aged out of the stream are dropped from the index.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// How long a request waits for the index to catch up after a start.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Attempts of one compare-and-set on a user's marks.
const CAS_ATTEMPTS: usize = 20;
/// Decoded group messages kept, at most, and alert ids in them.
const GROUP_CACHE: usize = 256;
const GROUP_CACHE_IDS: usize = 200_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the inbox is still loading; try again")]
    NotReady,
    #[error("no group message {0} in your inbox")]
    NoSuchGroup(String),
    #[error("inbox: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> StoreError {
    StoreError::Nats(e.to_string())
}

/// One page of a user's messages.
#[derive(Debug, serde::Serialize)]
pub struct Page {
    pub unread: usize,
    pub messages: Vec<MessageView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

pub struct Inbox {
    stream: stream::Stream,
    marks: kv::Store,
    index: Mutex<Index>,
    /// The user whose inbox changed.
    changed: broadcast::Sender<String>,
    /// (stream caught up, marks loaded).
    ready: watch::Sender<(bool, bool)>,
    groups: Mutex<GroupCache>,
}

/// Decoded group messages by `INBOX` sequence, at most [`GROUP_CACHE`] of
/// them and [`GROUP_CACHE_IDS`] alert ids; the oldest go first.
#[derive(Debug, Default)]
struct GroupCache {
    by_seq: BTreeMap<u64, Arc<Group>>,
    ids: usize,
}

impl GroupCache {
    fn get(&self, seq: u64) -> Option<Arc<Group>> {
        self.by_seq.get(&seq).cloned()
    }

    fn put(&mut self, seq: u64, group: Arc<Group>) {
        self.ids += group.alert_ids.len();
        if let Some(old) = self.by_seq.insert(seq, group) {
            self.ids -= old.alert_ids.len();
        }
        while self.by_seq.len() > GROUP_CACHE || self.ids > GROUP_CACHE_IDS {
            match self.by_seq.pop_first() {
                Some((_, old)) => self.ids -= old.alert_ids.len(),
                None => break,
            }
        }
    }
}

/// The user of an `INBOX` subject.
fn user_of(subject: &str) -> Option<&str> {
    subject
        .strip_prefix(SUBJECT_INBOX_PREFIX)
        .and_then(|s| s.strip_prefix('.'))
        .filter(|u| !u.is_empty() && !u.contains('.'))
}

impl Inbox {
    /// Starts following the stream and the marks; the inbox answers once
    /// both have caught up.
    pub fn start(
        stream: stream::Stream,
        marks: kv::Store,
        shutdown: CancellationToken,
    ) -> Arc<Inbox> {
        let (changed, _) = broadcast::channel(1024);
        let (ready, _) = watch::channel((false, false));
        let inbox = Arc::new(Inbox {
            stream,
            marks,
            index: Mutex::new(Index::default()),
            changed,
            ready,
            groups: Mutex::new(GroupCache::default()),
        });
        tokio::spawn(follow_messages(inbox.clone(), shutdown.clone()));
        tokio::spawn(follow_marks(inbox.clone(), shutdown.clone()));
        tokio::spawn(expire(inbox.clone(), shutdown));
        inbox
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, GroupCache> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells who waits on `user`'s inbox that it changed.
    fn touch(&self, user: &str) {
        let _ = self.changed.send(user.to_owned());
    }

    /// Names of users whose inbox changed, as they change.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }

    async fn wait_ready(&self) -> Result<(), StoreError> {
        let mut ready = self.ready.subscribe();
        let waited = tokio::time::timeout(READY_WAIT, ready.wait_for(|&(s, m)| s && m)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::NotReady),
        }
    }

    pub fn is_ready(&self) -> bool {
        let (s, m) = *self.ready.borrow();
        s && m
    }

    /// `user`'s unread count and newest sequence.
    pub async fn unread(&self, user: &str) -> Result<(usize, Option<u64>), StoreError> {
        self.wait_ready().await?;
        let index = self.index();
        Ok((index.unread(user), index.latest(user)))
    }

    /// Up to `limit` of `user`'s messages below `before`, newest first.
    pub async fn page(
        &self,
        user: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.wait_ready().await?;
        // One more than asked, to know whether an older page exists.
        let seqs = self.index().page(user, before, limit + 1);
        let more = seqs.len() > limit;
        let mut messages = Vec::with_capacity(limit);
        for &seq in seqs.iter().take(limit) {
            let entry = self.index().entry(user, seq).cloned();
            let shown = match entry {
                Some(Entry::Group(group)) => self
                    .group_at(user, seq, &group)
                    .await?
                    .map(|g| (g.summary.clone(), self.index().is_read(user, seq)))
                    .map(|(summary, read)| view::group_message(seq, read, &summary)),
                Some(Entry::Alert(_)) => self.alert_at(user, seq).await?,
                None => None,
            };
            messages.extend(shown);
        }
        let next_before = if more {
            seqs.get(limit - 1).copied().or(before)
        } else {
            None
        };
        Ok(Page {
            unread: self.index().unread(user),
            messages,
            next_before,
        })
    }

    /// The alert message `seq` of `user`'s inbox; `None` (and dropped from
    /// the index) when it is gone or is not an Alert.
    async fn alert_at(&self, user: &str, seq: u64) -> Result<Option<MessageView>, StoreError> {
        let Some(payload) = self.payload(user, seq).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Alert>(&payload) {
            Ok(alert) => {
                let read = self.index().is_read(user, seq);
                Ok(Some(view::message(seq, read, &alert)))
            }
            Err(e) => {
                tracing::warn!(seq, error = %e, "inbox message is not an Alert; skipped");
                self.index().remove(user, seq);
                Ok(None)
            }
        }
    }

    /// The group message `group` at `seq` of `user`'s inbox, from the
    /// cache or the stream; `None` (and dropped from the index) when it is
    /// gone or is not that group message.
    async fn group_at(
        &self,
        user: &str,
        seq: u64,
        group: &GroupRef,
    ) -> Result<Option<Arc<Group>>, StoreError> {
        if let Some(g) = self.groups().get(seq) {
            if g.summary.group_key == group.key && g.summary.sequence == group.sequence {
                return Ok(Some(g));
            }
        }
        let Some(payload) = self.payload(user, seq).await? else {
            return Ok(None);
        };
        match view::decode_group(group, &payload) {
            Ok(g) => {
                let g = Arc::new(g);
                self.groups().put(seq, g.clone());
                Ok(Some(g))
            }
            Err(e) => {
                tracing::warn!(seq, group = %group, error = %e, "inbox message is not a group message; skipped");
                self.index().remove(user, seq);
                Ok(None)
            }
        }
    }

    /// The stored bytes of message `seq`; `None` (and dropped from `user`'s
    /// index) when the stream no longer has it.
    async fn payload(&self, user: &str, seq: u64) -> Result<Option<bytes::Bytes>, StoreError> {
        match self.stream.get_raw_message(seq).await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                // Aged out, or cleared on another replica just now.
                self.index().remove(user, seq);
                Ok(None)
            }
            Err(e) => Err(nats(e)),
        }
    }

    /// The group message `group` of `user`'s inbox (its alert ids), while
    /// it is there: not cleared, not aged out.
    pub async fn group(&self, user: &str, group: &GroupRef) -> Result<Arc<Group>, StoreError> {
        self.wait_ready().await?;
        let missing = || StoreError::NoSuchGroup(group.to_string());
        let seq = self.index().find_group(user, group).ok_or_else(missing)?;
        self.group_at(user, seq, group).await?.ok_or_else(missing)
    }

    /// Waits for the index, then resolves `up_to`: as given, or the
    /// stream's last sequence ("everything there is now").
    /// `up_to` once the store is ready, cut to the stream's last sequence:
    /// no mark reaches a message that does not exist yet.
    async fn ready_up_to(&self, up_to: u64) -> Result<u64, StoreError> {
        self.wait_ready().await?;
        let last = self
            .stream
            .get_info()
            .await
            .map_err(nats)?
            .state
            .last_sequence;
        Ok(up_to.min(last))
    }

    /// Marks `user`'s messages up to `up_to` read; returns the unread count
    /// after.
    pub async fn read(&self, user: &str, up_to: u64) -> Result<usize, StoreError> {
        let up_to = self.ready_up_to(up_to).await?;
        self.merge_marks(
            user,
            Marks {
                read_up_to: up_to,
                cleared_up_to: 0,
            },
        )
        .await?;
        Ok(self.index().unread(user))
    }

    /// Removes `user`'s messages up to `up_to` from the stream for good;
    /// returns how many went.
    pub async fn clear(&self, user: &str, up_to: u64) -> Result<u64, StoreError> {
        let up_to = self.ready_up_to(up_to).await?;
        // The mark first: every replica hides the messages at once, and a
        // purge interrupted here is finished by the next clear.
        self.merge_marks(
            user,
            Marks {
                read_up_to: up_to,
                cleared_up_to: up_to,
            },
        )
        .await?;
        let purged = self
            .stream
            .purge()
            .filter(talon_proto::names::inbox_subject(user))
            .sequence(up_to.saturating_add(1))
            .await
            .map_err(nats)?;
        Ok(purged.purged)
    }

    /// Merges `marks` into `user`'s entry in the bucket (compare and set),
    /// then into the index.
    async fn merge_marks(&self, user: &str, marks: Marks) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let entry = self.marks.entry(user).await.map_err(nats)?;
            let (current, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    serde_json::from_slice::<Marks>(&e.value).unwrap_or_default(),
                    Some(e.revision),
                ),
                Some(e) => (Marks::default(), Some(e.revision)),
                None => (Marks::default(), None),
            };
            let merged = current.merge(marks);
            if merged == current && revision.is_some() {
                self.apply_marks(user, merged);
                return Ok(());
            }
            // Marks are two numbers: they always serialize, and this error is
            // never returned.
            let value = serde_json::to_vec(&merged).map_err(nats)?;
            let written = match revision {
                Some(r) => self.marks.update(user, value.into(), r).await.is_ok(),
                None => self.marks.create(user, value.into()).await.is_ok(),
            };
            if written {
                self.apply_marks(user, merged);
                return Ok(());
            }
        }
        Err(StoreError::Nats(format!(
            "the marks of {user} keep changing; try again"
        )))
    }

    fn apply_marks(&self, user: &str, marks: Marks) {
        let before = self.index().marks(user);
        let after = self.index().mark(user, marks);
        if before != after {
            self.touch(user);
        }
    }
}

/// Follows every user's messages (headers only) into the index.
async fn follow_messages(inbox: Arc<Inbox>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(e) = follow_messages_once(&inbox, &shutdown).await {
            tracing::warn!(error = %e, "following the inbox stream; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn follow_messages_once(
    inbox: &Inbox,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let consumer = inbox
        .stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("{SUBJECT_INBOX_PREFIX}.*"),
            headers_only: true,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    if consumer.cached_info().num_pending == 0 {
        inbox.ready.send_modify(|r| r.0 = true);
    }
    let mut messages = consumer.messages().await.map_err(nats)?;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = messages.next() => n,
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(nats(e)),
            None => return Err(StoreError::Nats("the inbox stream ended".into())),
        };
        let Ok(meta) = msg.info() else { continue };
        let (seq, pending) = (meta.stream_sequence, meta.pending);
        if let Some(user) = user_of(msg.subject.as_str()) {
            let header = |name: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str())
            };
            match Entry::of_headers(header(HEADER_GROUP), header(HEADER_ALERT_ID), seq) {
                Some(entry) => {
                    if inbox.index().add(user, seq, entry) {
                        inbox.touch(user);
                    }
                }
                None => tracing::warn!(
                    seq,
                    group = ?header(HEADER_GROUP).map(|g| g.chars().take(80).collect::<String>()),
                    "inbox message names no group message <key>-<sequence>; skipped"
                ),
            }
        }
        if pending == 0 {
            inbox.ready.send_modify(|r| r.0 = true);
        }
    }
}

/// Follows every user's marks into the index.
async fn follow_marks(inbox: Arc<Inbox>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(e) = follow_marks_once(&inbox, &shutdown).await {
            tracing::warn!(error = %e, "following the inbox marks; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn follow_marks_once(inbox: &Inbox, shutdown: &CancellationToken) -> Result<(), StoreError> {
    // The watch replays each user's last marks, then follows; marks only
    // grow, so applying one twice or late is harmless. What the watch says
    // before it has caught up is loaded here first, so a start never
    // serves counts without marks.
    let mut watch = inbox.marks.watch_with_history(">").await.map_err(nats)?;
    let mut keys = inbox.marks.keys().await.map_err(nats)?;
    while let Some(key) = keys.next().await {
        let key = key.map_err(nats)?;
        if let Some(value) = inbox.marks.get(key.as_str()).await.map_err(nats)? {
            if let Ok(marks) = serde_json::from_slice::<Marks>(&value) {
                inbox.apply_marks(&key, marks);
            }
        }
    }
    inbox.ready.send_modify(|r| r.1 = true);
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = watch.next() => n,
        };
        let entry = match next {
            Some(Ok(e)) => e,
            Some(Err(e)) => return Err(nats(e)),
            None => return Err(StoreError::Nats("the marks watch ended".into())),
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        if let Ok(marks) = serde_json::from_slice::<Marks>(&entry.value) {
            inbox.apply_marks(&entry.key, marks);
        }
    }
}

/// Drops from the index what aged out of the stream (30 days).
async fn expire(inbox: Arc<Inbox>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EXPIRE_EVERY) => {}
        }
        match inbox.stream.get_info().await {
            Ok(info) => {
                let changed = inbox.index().expire_below(info.state.first_sequence);
                for user in changed {
                    inbox.touch(&user);
                }
            }
            Err(e) => tracing::debug!(error = %e, "inbox stream info"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_come_from_subjects() {
        assert_eq!(user_of("talon.inbox.alice"), Some("alice"));
        assert_eq!(user_of("talon.inbox."), None);
        assert_eq!(user_of("talon.inbox.a.b"), None);
        assert_eq!(user_of("talon.inboxes.alice"), None);
    }
}
