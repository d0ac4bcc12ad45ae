//! Every alert and its triage, as the console serves them: `HISTORY` and
//! `TRIAGE` followed into the [`Catalog`] (rebuilt at every start), one
//! alert read whole from `HISTORY`, its audit trail from its `TRIAGE`
//! subject, and triage written there with an expected-last-sequence check,
//! so concurrent edits serialize and the loser learns the current state.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use futures::StreamExt;
use talon_proto::names::{SUBJECT_DELIVERIES_PREFIX, SUBJECT_HISTORY, SUBJECT_TRIAGE_PREFIX};
use talon_proto::{Alert, Delivery};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Filter, Page, Previous};
use crate::triage::{self, Event, Request, Triage};

/// Records applied to the catalog in one transaction, at most.
const BATCH: usize = 2000;
/// Messages asked of NATS at once while following a stream.
const FETCH_BATCH: usize = 5000;
/// How long a request waits for the catalog to catch up after a start.
const READY_WAIT: Duration = Duration::from_secs(10);
/// Tries of one triage write that loses races (without `expected_version`).
const CAS_ATTEMPTS: usize = 5;
/// An alert's audit trail (and its delivery outcomes) shows at most this
/// many events.
pub const AUDIT_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("the alert list is still loading; try again")]
    NotReady,
    #[error("no alert {0}")]
    NotFound(String),
    #[error("{0}")]
    NotAllowed(String),
    /// Someone else changed it first: the current triage and its version.
    #[error("the alert changed since version {seen}: now version {version}")]
    Conflict {
        seen: u64,
        version: u64,
        current: Triage,
    },
    #[error("alerts: {0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> AlertsError {
    AlertsError::Failed(e.to_string())
}

/// The subject of alert `id`'s triage events.
pub fn triage_subject(id: &str) -> String {
    format!("{SUBJECT_TRIAGE_PREFIX}.{id}")
}

pub struct Alerts {
    js: jetstream::Context,
    history: stream::Stream,
    triage: stream::Stream,
    deliveries: stream::Stream,
    catalog: Mutex<Catalog>,
    /// (HISTORY caught up, TRIAGE caught up).
    ready: watch::Sender<(bool, bool)>,
    /// Ticks when an alert arrives or its triage changes.
    changed: broadcast::Sender<()>,
    /// The catalog's file, removed when the console stops.
    _dir: Option<tempfile::TempDir>,
}

/// An alert whole: the record, its triage, its audit trail.
#[derive(Debug, serde::Serialize)]
pub struct Detail {
    pub alert: Alert,
    pub triage: TriageView,
    pub audit: Vec<Event>,
    /// Each delivery attempt's end, oldest first.
    pub deliveries: Vec<Delivery>,
    /// The alert before it with the same dedup key, when there is one (a
    /// repeat of a resolved alert links back to it and its verdict).
    pub repeat_of: Option<Previous>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TriageView {
    #[serde(flatten)]
    pub triage: Triage,
    pub version: u64,
}

impl Alerts {
    /// Starts following `HISTORY` and `TRIAGE` into a catalog in a
    /// temporary file (in memory when none can be made).
    pub fn start(
        js: jetstream::Context,
        history: stream::Stream,
        triage: stream::Stream,
        deliveries: stream::Stream,
        shutdown: CancellationToken,
    ) -> Result<Arc<Alerts>, AlertsError> {
        let dir = tempfile::Builder::new()
            .prefix("talon-console-")
            .tempdir()
            .ok();
        let path: Option<PathBuf> = dir.as_ref().map(|d| d.path().join("alerts.sqlite"));
        let catalog = Catalog::open(path.as_deref()).map_err(failed)?;
        let (ready, _) = watch::channel((false, false));
        let (changed, _) = broadcast::channel(64);
        let alerts = Arc::new(Alerts {
            js,
            history,
            triage,
            deliveries,
            catalog: Mutex::new(catalog),
            ready,
            changed,
            _dir: dir,
        });
        tokio::spawn(follow(alerts.clone(), Source::History, shutdown.clone()));
        tokio::spawn(follow(alerts.clone(), Source::Triage, shutdown));
        Ok(alerts)
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ticks as alerts arrive or change (for the page's live updates).
    pub fn subscribe(&self) -> broadcast::Receiver<()> {
        self.changed.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        let (h, t) = *self.ready.borrow();
        h && t
    }

    async fn wait_ready(&self) -> Result<(), AlertsError> {
        let mut ready = self.ready.subscribe();
        let waited = tokio::time::timeout(READY_WAIT, ready.wait_for(|&(h, t)| h && t))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            _ => Err(AlertsError::NotReady),
        }
    }

    /// One page of the alerts `filter` matches.
    pub async fn list(
        self: &Arc<Self>,
        filter: Filter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page, AlertsError> {
        self.wait_ready().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.catalog().query(&filter, limit, cursor))
            .await
            .map_err(failed)?
            .map_err(failed)
    }

    /// How many alerts each of `silences` hid (0 before the catalog has
    /// caught up).
    pub async fn hidden_counts(self: &Arc<Self>, silences: Vec<String>) -> Vec<u64> {
        let me = self.clone();
        let n = silences.len();
        tokio::task::spawn_blocking(move || me.catalog().hidden_counts(&silences))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| vec![0; n])
    }

    /// The `HISTORY` sequence of the first alert received at or after
    /// `since_ms`, as far as the catalog knows.
    pub async fn first_since(self: &Arc<Self>, since_ms: i64) -> Result<Option<u64>, AlertsError> {
        self.wait_ready().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.catalog().first_since(since_ms))
            .await
            .map_err(failed)?
            .map_err(failed)
    }

    /// The `HISTORY` stream (a look back over recent alerts).
    pub fn history(&self) -> &stream::Stream {
        &self.history
    }

    /// Alert `id` whole.
    pub async fn get(&self, id: &str) -> Result<Detail, AlertsError> {
        self.wait_ready().await?;
        let seq = self
            .catalog()
            .seq_of(id)
            .map_err(failed)?
            .ok_or_else(|| AlertsError::NotFound(id.to_owned()))?;
        let repeat_of = self.catalog().previous(id).map_err(failed)?;
        let record = self.history.get_raw_message(seq).await.map_err(failed)?;
        let alert: Alert = serde_json::from_slice(&record.payload).map_err(failed)?;
        let audit: Vec<(u64, Event)> = read_subject(&self.triage, &triage_subject(id)).await?;
        let deliveries: Vec<(u64, Delivery)> = read_subject(
            &self.deliveries,
            &format!("{SUBJECT_DELIVERIES_PREFIX}.{id}"),
        )
        .await?;
        let triage = match audit.last() {
            Some((version, e)) => TriageView {
                triage: e.after.clone(),
                version: *version,
            },
            None => TriageView {
                triage: Triage::default(),
                version: 0,
            },
        };
        Ok(Detail {
            alert,
            triage,
            audit: audit.into_iter().map(|(_, e)| e).collect(),
            deliveries: deliveries.into_iter().map(|(_, d)| d).collect(),
            repeat_of,
        })
    }

    /// The current triage of alert `id` and its version (0: never triaged).
    async fn current(&self, id: &str) -> Result<(Triage, u64), AlertsError> {
        match self
            .triage
            .get_last_raw_message_by_subject(&triage_subject(id))
            .await
        {
            Ok(m) => {
                let event: Event = serde_json::from_slice(&m.payload).map_err(failed)?;
                Ok((event.after, m.sequence))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok((Triage::default(), 0))
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// Applies `request` to alert `id` as `user`: the new triage and its
    /// version. With `expected_version`, a newer version is a conflict;
    /// without, a write that loses a race is decided again on the state that
    /// won (so two notes both land, and a second `ack` is refused as the
    /// alert is no longer open), a few times at most.
    pub async fn apply(
        &self,
        id: &str,
        request: &Request,
        user: &str,
        is_user: impl Fn(&str) -> bool,
    ) -> Result<TriageView, AlertsError> {
        self.wait_ready().await?;
        if self.catalog().seq_of(id).map_err(failed)?.is_none() {
            return Err(AlertsError::NotFound(id.to_owned()));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.apply_once(id, request, user, &is_user).await {
                Err(AlertsError::Conflict { .. })
                    if request.expected_version.is_none() && attempts < CAS_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    async fn apply_once(
        &self,
        id: &str,
        request: &Request,
        user: &str,
        is_user: &impl Fn(&str) -> bool,
    ) -> Result<TriageView, AlertsError> {
        let (current, version) = self.current(id).await?;
        if let Some(seen) = request.expected_version.filter(|&v| v != version) {
            return Err(AlertsError::Conflict {
                seen,
                version,
                current,
            });
        }
        let (after, note) =
            triage::apply(&current, request, is_user).map_err(|e| AlertsError::NotAllowed(e.0))?;
        let event = Event {
            alert_id: id.to_owned(),
            action: request.action,
            by: user.to_owned(),
            at: chrono::Utc::now(),
            before: current,
            after: after.clone(),
            note,
        };
        let body = serde_json::to_vec(&event).map_err(failed)?;
        let publish = self
            .js
            .send_publish(
                triage_subject(id),
                PublishMessage::build()
                    .payload(body.into())
                    .expected_last_subject_sequence(version),
            )
            .await
            .map_err(failed)?;
        match publish.await {
            Ok(ack) => {
                let view = TriageView {
                    triage: after,
                    version: ack.sequence,
                };
                // The follower will bring it too; the catalog is told now
                // so that the next list shows it.
                let _ = self.catalog().set_triage(&[(
                    id.to_owned(),
                    view.triage.clone(),
                    view.version,
                )]);
                let _ = self.changed.send(());
                Ok(view)
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                let (current, now) = self.current(id).await?;
                Err(AlertsError::Conflict {
                    seen: version,
                    version: now,
                    current,
                })
            }
            Err(e) => Err(failed(e)),
        }
    }
}

/// The messages on `subject` of `stream` that read as `T`, oldest first,
/// with their sequences; at most [`AUDIT_MAX`].
async fn read_subject<T: serde::de::DeserializeOwned>(
    stream: &stream::Stream,
    subject: &str,
) -> Result<Vec<(u64, T)>, AlertsError> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer.messages().await.map_err(failed)?;
    let mut out = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout(READY_WAIT, messages.next()).await {
        let msg = next.map_err(failed)?;
        let info = msg.info().map_err(failed)?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        if let Ok(item) = serde_json::from_slice::<T>(&msg.payload) {
            out.push((seq, item));
        }
        if pending == 0 || out.len() >= AUDIT_MAX {
            break;
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    History,
    Triage,
}

/// Follows one stream into the catalog, from where it left off after an
/// error.
async fn follow(alerts: Arc<Alerts>, source: Source, shutdown: CancellationToken) {
    let mut next_seq = 1;
    while !shutdown.is_cancelled() {
        match follow_once(&alerts, source, &mut next_seq, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, ?source, "following the alert history; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn follow_once(
    alerts: &Arc<Alerts>,
    source: Source,
    next_seq: &mut u64,
    shutdown: &CancellationToken,
) -> Result<(), AlertsError> {
    let (stream, filter) = match source {
        Source::History => (&alerts.history, SUBJECT_HISTORY.to_owned()),
        Source::Triage => (&alerts.triage, format!("{SUBJECT_TRIAGE_PREFIX}.*")),
    };
    // A plain ephemeral pull consumer without acks, read in large batches
    // (an ordered consumer's 500-message batches made a million-alert
    // rebuild wait on NATS round trips); a gap in its consumer sequence
    // ends this pass, and `follow` starts again after the last record read.
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: *next_seq,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(failed)?;
    let mut last_delivery: u64 = 0;
    let started = std::time::Instant::now();
    let mut seen: u64 = 0;
    // Where a rebuild's time goes: waiting for the catalog to write a batch,
    // and building its indexes at the end.
    let mut write_wait = Duration::ZERO;
    let mut indexing = Duration::ZERO;
    let caught_up = |alerts: &Alerts, seen: u64, write_wait: Duration, indexing: Duration| {
        let first = alerts.ready.send_if_modified(|r| {
            let flag = match source {
                Source::History => &mut r.0,
                Source::Triage => &mut r.1,
            };
            !std::mem::replace(flag, true)
        });
        if first {
            tracing::info!(
                ?source,
                messages = seen,
                seconds = started.elapsed().as_secs_f64(),
                write_wait_seconds = write_wait.as_secs_f64(),
                indexing_seconds = indexing.as_secs_f64(),
                "alert catalog caught up"
            );
        }
    };
    if consumer.cached_info().num_pending == 0 {
        if source == Source::History {
            alerts.catalog().finish_rebuild().map_err(failed)?;
        }
        caught_up(alerts, 0, write_wait, indexing);
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(FETCH_BATCH)
        .messages()
        .await
        .map_err(failed)?;
    let mut records: Vec<(u64, Alert)> = Vec::new();
    let mut states: Vec<(String, Triage, u64)> = Vec::new();
    let mut writing: Writing = None;
    loop {
        // Whatever is already here goes in one transaction; then wait.
        let next = if records.is_empty() && states.is_empty() {
            settle(&mut writing).await?;
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                n = messages.next() => n,
            }
        } else {
            match tokio::time::timeout(Duration::from_millis(20), messages.next()).await {
                Ok(n) => n,
                Err(_) => {
                    flush(alerts, &mut records, &mut states, &mut writing).await?;
                    settle(&mut writing).await?;
                    continue;
                }
            }
        };
        let msg = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                flush(alerts, &mut records, &mut states, &mut writing).await?;
                settle(&mut writing).await?;
                return Err(failed(e));
            }
            None => return Err(failed("the stream ended")),
        };
        let Ok(info) = msg.info() else { continue };
        if info.consumer_sequence != last_delivery + 1 {
            flush(alerts, &mut records, &mut states, &mut writing).await?;
            settle(&mut writing).await?;
            return Err(failed(format!(
                "a gap in the consumer's deliveries ({} after {last_delivery})",
                info.consumer_sequence
            )));
        }
        last_delivery = info.consumer_sequence;
        let (seq, pending) = (info.stream_sequence, info.pending);
        *next_seq = seq + 1;
        seen += 1;
        match source {
            Source::History => match serde_json::from_slice::<Alert>(&msg.payload) {
                Ok(alert) => records.push((seq, alert)),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "a HISTORY record that is not an alert; skipped")
                }
            },
            Source::Triage => match serde_json::from_slice::<Event>(&msg.payload) {
                Ok(event) => states.push((event.alert_id, event.after, seq)),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "a TRIAGE event that cannot be read; skipped")
                }
            },
        }
        if records.len() + states.len() >= BATCH || pending == 0 {
            let t = std::time::Instant::now();
            flush(alerts, &mut records, &mut states, &mut writing).await?;
            write_wait += t.elapsed();
        }
        if pending == 0 {
            let t = std::time::Instant::now();
            settle(&mut writing).await?;
            write_wait += t.elapsed();
            if source == Source::History {
                let t = std::time::Instant::now();
                let me = alerts.clone();
                tokio::task::spawn_blocking(move || me.catalog().finish_rebuild())
                    .await
                    .map_err(failed)?
                    .map_err(failed)?;
                indexing += t.elapsed();
            }
            caught_up(alerts, seen, write_wait, indexing);
        }
    }
}

/// A batch being written to the catalog on a blocking thread, while the
/// next one is read from NATS.
type Writing = Option<tokio::task::JoinHandle<Result<(), crate::catalog::CatalogError>>>;

/// Waits for the batch being written, if any.
async fn settle(writing: &mut Writing) -> Result<(), AlertsError> {
    if let Some(handle) = writing.take() {
        handle.await.map_err(failed)?.map_err(failed)?;
    }
    Ok(())
}

/// Hands what was read to the catalog: waits for the batch before it, then
/// writes this one in the background.
async fn flush(
    alerts: &Arc<Alerts>,
    records: &mut Vec<(u64, Alert)>,
    states: &mut Vec<(String, Triage, u64)>,
    writing: &mut Writing,
) -> Result<(), AlertsError> {
    settle(writing).await?;
    if records.is_empty() && states.is_empty() {
        return Ok(());
    }
    let (r, s) = (std::mem::take(records), std::mem::take(states));
    let me = alerts.clone();
    *writing = Some(tokio::task::spawn_blocking(move || {
        {
            let mut catalog = me.catalog();
            if !r.is_empty() {
                catalog.add(&r)?;
            }
            if !s.is_empty() {
                catalog.set_triage(&s)?;
            }
        }
        let _ = me.changed.send(());
        Ok(())
    }));
    Ok(())
}
