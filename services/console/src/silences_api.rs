//! `/v1/silences`: list, one with its revisions, create or edit, expire
//! now, and a preview of what matchers would have hidden. Every route
//! needs a session; changing a silence needs the analyst or administrator
//! role (403 for a reader).
//!
//! A silence is written to `talon_silences` with a compare-and-set on its
//! revision, so two edits never silently overwrite each other (the loser
//! gets 409). Expiring sets `ends_at` to now: the silence stays, visible,
//! with who expired it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use talon_kit::silences::{self, Compiled, Entry};
use talon_proto::{Alert, Matcher, Silence, SilenceState};

use crate::alerts_api::url_pairs;
use crate::api::{backend, body, user_of, ApiError, MAX_BODY_BYTES};
use crate::Console;

/// How far back a preview looks.
pub const PREVIEW_WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// Alerts a preview reads, at most (the newest of the window).
pub const PREVIEW_MAX: u64 = 100_000;
/// Matching alerts a preview lists.
const PREVIEW_SAMPLE: usize = 20;
/// A preview gives up after this long and says how far it got.
const PREVIEW_TIME: Duration = Duration::from_secs(10);
/// Previews one replica runs at once (each may read 100,000 records); one
/// more is answered 503, to be asked again.
static PREVIEWS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// A sync report older than this is from a replica that has gone.
const SYNC_STALE: chrono::Duration = chrono::Duration::seconds(90);

pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/v1/silences", get(list).post(save))
        .route("/v1/silences/preview", post(preview))
        .route("/v1/silences/{id}", get(one))
        .route("/v1/silences/{id}/expire", post(expire))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(console)
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "silences request failed");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("silences are unavailable: {e}"),
    )
}

fn forbidden() -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        "a reader cannot change silences".into(),
    )
}

/// A silence id as the console makes them: 32 hex digits.
fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, "no such silence".into()))
    }
}

/// A silence as the API shows it: its fields, its state now, its revision,
/// how many alerts it hid, and whether every enrich replica applies it.
fn view(
    entry: &Entry,
    hidden: u64,
    replicas: &[talon_proto::SilenceSync],
    now: DateTime<Utc>,
) -> Value {
    let mut v = serde_json::to_value(&entry.silence).unwrap_or_default();
    let live: Vec<_> = replicas
        .iter()
        .filter(|r| now - r.at < SYNC_STALE)
        .collect();
    let applied = live.iter().filter(|r| r.revision >= entry.revision).count();
    if let Some(o) = v.as_object_mut() {
        o.insert("state".into(), json!(entry.silence.state(now).as_str()));
        o.insert("revision".into(), json!(entry.revision));
        o.insert("hidden".into(), json!(hidden));
        o.insert(
            "applied_by".into(),
            json!({"replicas": applied, "of": live.len()}),
        );
    }
    v
}

fn replicas_view(replicas: &[talon_proto::SilenceSync], now: DateTime<Utc>) -> Vec<Value> {
    replicas
        .iter()
        .filter(|r| now - r.at < chrono::Duration::hours(24))
        .map(|r| {
            json!({
                "replica": r.replica, "revision": r.revision, "active": r.active,
                "at": r.at, "live": now - r.at < SYNC_STALE,
            })
        })
        .collect()
}

/// `GET /v1/silences[?state=active,pending,expired]`: newest first.
async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    user_of(&console, &headers).await?;
    let mut states: Vec<SilenceState> = Vec::new();
    for (key, value) in url_pairs(raw.as_deref().unwrap_or(""))? {
        match key.as_str() {
            "state" => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    states.push(match s {
                        "active" => SilenceState::Active,
                        "pending" => SilenceState::Pending,
                        "expired" => SilenceState::Expired,
                        _ => return Err(bad("state: active, pending or expired")),
                    });
                }
            }
            _ => return Err(bad(format!("unknown parameter {key:?}"))),
        }
    }
    let backend = backend(&console)?;
    let now = Utc::now();
    let mut entries: Vec<Entry> = backend
        .silences
        .list()
        .into_iter()
        .filter(|e| states.is_empty() || states.contains(&e.silence.state(now)))
        .collect();
    entries.sort_by(|a, b| {
        (b.silence.created_at, &b.silence.id).cmp(&(a.silence.created_at, &a.silence.id))
    });
    let ids = entries.iter().map(|e| e.silence.id.clone()).collect();
    let hidden = backend.alerts.hidden_counts(ids).await;
    let replicas = backend.silences.syncs();
    let silences: Vec<Value> = entries
        .iter()
        .zip(hidden)
        .map(|(e, n)| view(e, n, &replicas, now))
        .collect();
    Ok(Json(json!({
        "silences": silences,
        "replicas": replicas_view(&replicas, now),
    }))
    .into_response())
}

/// `GET /v1/silences/<id>`: the silence and every revision kept, oldest
/// first.
async fn one(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    user_of(&console, &headers).await?;
    check_id(&id)?;
    let backend = backend(&console)?;
    let entry = current(backend, &id).await?;
    let mut revisions = Vec::new();
    let mut history = backend
        .silence_store
        .history(talon_proto::silence::silence_key(&id))
        .await
        .map_err(unavailable)?;
    while let Some(e) = history.next().await {
        let e = e.map_err(unavailable)?;
        if let Ok(s) = serde_json::from_slice::<Silence>(&e.value) {
            revisions.push(json!({"revision": e.revision, "silence": s}));
        }
    }
    let hidden = backend.alerts.hidden_counts(vec![id]).await;
    let mut v = view(
        &entry,
        hidden.first().copied().unwrap_or(0),
        &backend.silences.syncs(),
        Utc::now(),
    );
    if let Some(o) = v.as_object_mut() {
        o.insert("revisions".into(), json!(revisions));
    }
    Ok(Json(v).into_response())
}

/// The silence as the bucket holds it now (not the cache: an edit's
/// compare-and-set needs the newest revision).
async fn current(backend: &crate::Backend, id: &str) -> Result<Entry, ApiError> {
    let entry = backend
        .silence_store
        .entry(talon_proto::silence::silence_key(id))
        .await
        .map_err(unavailable)?;
    let entry = entry
        .filter(|e| e.operation == kv::Operation::Put)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such silence".into()))?;
    if let Err(e) = serde_json::from_slice::<Silence>(&entry.value) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the stored silence cannot be read: {e}"),
        ));
    }
    backend
        .silences
        .record(&entry.key, entry.revision, entry.operation, &entry.value);
    backend.silences.get(id).ok_or_else(|| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the stored silence is under another id".into(),
        )
    })
}

/// What `POST /v1/silences` takes: a new silence, or (with `id`) a new
/// revision of one that has not ended.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Draft {
    #[serde(default)]
    id: Option<String>,
    /// The revision the edit is based on (409 when it is no longer the
    /// newest).
    #[serde(default)]
    expected_revision: Option<u64>,
    matchers: Vec<Matcher>,
    #[serde(default)]
    starts_at: Option<DateTime<Utc>>,
    ends_at: DateTime<Utc>,
    comment: String,
}

async fn save(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user_of(&console, &headers).await?;
    let draft: Draft = body(&headers, &bytes)?;
    if !console.may_triage(&user) {
        return Err(forbidden());
    }
    let backend = backend(&console)?;
    let now = Utc::now();
    let max = console.silence_max;
    let unprocessable = |e: String| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e);
    let Some(id) = draft.id.clone() else {
        let silence = Silence {
            id: uuid::Uuid::new_v4().simple().to_string(),
            matchers: draft.matchers,
            starts_at: draft.starts_at.unwrap_or(now).max(now),
            ends_at: draft.ends_at,
            created_by: user.clone(),
            created_at: now,
            comment: draft.comment,
            updated_by: None,
            updated_at: None,
        };
        silences::check(&silence, now, max).map_err(unprocessable)?;
        let body = serde_json::to_vec(&silence).map_err(unavailable)?;
        let revision = backend
            .silence_store
            .create(silence.key(), body.clone().into())
            .await
            .map_err(unavailable)?;
        backend
            .silences
            .record(&silence.key(), revision, kv::Operation::Put, &body);
        tracing::info!(silence = %silence.id, user = %user, matchers = silence.matchers.len(), ends_at = %silence.ends_at, "silence created");
        return answer(backend, &silence.id, StatusCode::CREATED).await;
    };
    check_id(&id)?;
    let entry = current(backend, &id).await?;
    if draft.expected_revision.is_some_and(|r| r != entry.revision) {
        return Err(conflict(&entry));
    }
    if entry.silence.state(now) == SilenceState::Expired {
        return Err(unprocessable(
            "an expired silence cannot change: create a new one".into(),
        ));
    }
    let mut silence = entry.silence.clone();
    silence.matchers = draft.matchers;
    // A silence already in force keeps its start; a pending one may move.
    if silence.state(now) == SilenceState::Pending {
        silence.starts_at = draft.starts_at.unwrap_or(silence.starts_at).max(now);
    }
    silence.ends_at = draft.ends_at;
    silence.comment = draft.comment;
    silence.updated_by = Some(user.clone());
    silence.updated_at = Some(now);
    silences::check(&silence, now, max).map_err(unprocessable)?;
    write(backend, &silence, entry.revision).await?;
    tracing::info!(silence = %id, user = %user, "silence changed");
    answer(backend, &id, StatusCode::OK).await
}

fn conflict(entry: &Entry) -> ApiError {
    ApiError(
        StatusCode::CONFLICT,
        format!(
            "the silence changed: now revision {} (reload it)",
            entry.revision
        ),
    )
}

/// Writes `silence` as the revision after `revision`, or 409.
async fn write(backend: &crate::Backend, silence: &Silence, revision: u64) -> Result<(), ApiError> {
    let body = serde_json::to_vec(silence).map_err(unavailable)?;
    match backend
        .silence_store
        .update(silence.key(), body.clone().into(), revision)
        .await
    {
        Ok(new) => {
            backend
                .silences
                .record(&silence.key(), new, kv::Operation::Put, &body);
            Ok(())
        }
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            let now = current(backend, &silence.id).await?;
            Err(conflict(&now))
        }
        Err(e) => Err(unavailable(e)),
    }
}

async fn answer(
    backend: &crate::Backend,
    id: &str,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let entry = backend
        .silences
        .get(id)
        .ok_or_else(|| unavailable("the silence was written but is not read back"))?;
    let hidden = backend.alerts.hidden_counts(vec![id.to_owned()]).await;
    let v = view(
        &entry,
        hidden.first().copied().unwrap_or(0),
        &backend.silences.syncs(),
        Utc::now(),
    );
    Ok((status, Json(v)).into_response())
}

/// `POST /v1/silences/<id>/expire`: ends it now (an expired one stays as
/// it is).
async fn expire(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = user_of(&console, &headers).await?;
    crate::api::same_origin(&headers)?;
    if !console.may_triage(&user) {
        return Err(forbidden());
    }
    check_id(&id)?;
    let backend = backend(&console)?;
    // Another edit in between: read again and retry, a few times.
    for _ in 0..3 {
        let entry = current(backend, &id).await?;
        let now = Utc::now();
        if entry.silence.state(now) == SilenceState::Expired {
            return answer(backend, &id, StatusCode::OK).await;
        }
        let mut silence = entry.silence.clone();
        silence.starts_at = silence.starts_at.min(now);
        silence.ends_at = now;
        silence.updated_by = Some(user.clone());
        silence.updated_at = Some(now);
        match write(backend, &silence, entry.revision).await {
            Ok(()) => {
                tracing::info!(silence = %id, user = %user, "silence expired");
                return answer(backend, &id, StatusCode::OK).await;
            }
            Err(ApiError(StatusCode::CONFLICT, _)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError(
        StatusCode::CONFLICT,
        "the silence keeps changing: try again".into(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewRequest {
    matchers: Vec<Matcher>,
}

/// `POST /v1/silences/preview` with `{"matchers"}`: how many alerts of the
/// last 24 hours (at most the newest [`PREVIEW_MAX`]) the matchers would
/// have hidden, read from `HISTORY` as enrich recorded them, with the
/// newest of them.
async fn preview(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    user_of(&console, &headers).await?;
    let request: PreviewRequest = body(&headers, &bytes)?;
    let compiled = Compiled::new(&request.matchers)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let backend = backend(&console)?;
    let Ok(_running) = PREVIEWS.try_acquire() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "other previews are running: ask again in a moment".into(),
        ));
    };
    let now = Utc::now();
    let since = now - PREVIEW_WINDOW;
    let history = backend.alerts.history().clone();
    let last = history
        .clone()
        .info()
        .await
        .map_err(unavailable)?
        .state
        .last_sequence;
    let first = backend
        .alerts
        .first_since(since.timestamp_millis())
        .await
        .map_err(ApiError::from)?;
    let Some(first) = first else {
        return Ok(Json(
            json!({"matched": 0, "examined": 0, "since": since, "complete": true, "alerts": []}),
        )
        .into_response());
    };
    let start = first.max(last.saturating_sub(PREVIEW_MAX - 1)).max(1);
    let found =
        tokio::time::timeout(PREVIEW_TIME, scan(&history, start, last, since, &compiled)).await;
    let (matched, examined, sample, complete) = match found {
        Ok(r) => r.map_err(unavailable)?,
        Err(_) => return Err(unavailable("the preview took too long")),
    };
    Ok(Json(json!({
        "matched": matched,
        "examined": examined,
        "since": since,
        "complete": complete && start == first,
        "alerts": sample,
    }))
    .into_response())
}

/// Reads `HISTORY` from `start` to `last`, counting the alerts received
/// since `since` that `compiled` matches; the newest
/// [`PREVIEW_SAMPLE`] of them are listed.
async fn scan(
    history: &jetstream::stream::Stream,
    start: u64,
    last: u64,
    since: DateTime<Utc>,
    compiled: &Compiled,
) -> Result<(u64, u64, Vec<Value>, bool), String> {
    let consumer = history
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(2000)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let (mut matched, mut examined) = (0u64, 0u64);
    let mut sample: std::collections::VecDeque<Value> = std::collections::VecDeque::new();
    let one = [(String::from("preview"), compiled)];
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| e.to_string())?;
        let Ok(info) = msg.info() else { continue };
        let (seq, pending) = (info.stream_sequence, info.pending);
        if let Ok(alert) = serde_json::from_slice::<Alert>(&msg.payload) {
            if alert.received_at >= since {
                examined += 1;
                let routed = alert.routed_to.clone().unwrap_or_default();
                let verdict = silences::apply(one.iter().map(|(id, c)| (id, *c)), &alert, &routed);
                if !verdict.silenced_by.is_empty() {
                    matched += 1;
                    if sample.len() == PREVIEW_SAMPLE {
                        sample.pop_front();
                    }
                    sample.push_back(json!({
                        "id": alert.id, "name": alert.name, "severity": alert.severity,
                        "client_id": alert.client_id,
                        "hostname": alert.client.as_ref().and_then(|c| c.hostname.clone()),
                        "received_at": alert.received_at,
                    }));
                }
            }
        }
        if pending == 0 || seq >= last {
            break;
        }
    }
    let newest_first: Vec<Value> = sample.into_iter().rev().collect();
    Ok((matched, examined, newest_first, true))
}
