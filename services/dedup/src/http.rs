//! dedup's HTTP API on `[dedup].http_listen`:
//! `GET /v1/windows?prefix=&after=&limit=&all=` lists windows (live ones
//! unless `all=true`), in key order, paged by `next`;
//! `DELETE /v1/windows?key=K` forgets a key, so its next alert opens a new
//! window. Both need `Authorization: Bearer <a token of [dedup].tokens_env>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::consume::{time_of, Command};
use crate::store::PartitionStore;

/// What the API reaches of each owned partition.
#[derive(Clone)]
pub struct Owned {
    pub store: Arc<PartitionStore>,
    pub commands: mpsc::Sender<Command>,
}

#[derive(Clone)]
pub struct Api {
    /// By partition number.
    pub partitions: Arc<BTreeMap<u32, Owned>>,
    /// `[ingest].partitions`: how keys are spread.
    pub total_partitions: u32,
    /// `[dedup].tokens_env`'s bearer tokens.
    pub tokens: Arc<Vec<String>>,
}

/// Windows one list request looks at, at most, in each partition (ended
/// ones skipped count too): a request is bounded however many windows
/// there are.
pub const MAX_SCAN: usize = 100_000;

/// The 401 of a request without a valid token.
fn unauthorized(api: &Api, headers: &HeaderMap) -> Option<Response> {
    if talon_kit::http::bearer_ok(headers, &api.tokens) {
        return None;
    }
    Some(error(
        StatusCode::UNAUTHORIZED,
        "Authorization: Bearer <a token of [dedup].tokens_env> is required",
    ))
}

pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/v1/windows", get(list).delete(forget))
        .with_state(api)
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub prefix: String,
    pub after: Option<String>,
    pub limit: Option<usize>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct WindowView {
    pub key: String,
    pub partition: u32,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub suppressed: u64,
    pub suppressed_before: u64,
    pub live: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListAnswer {
    pub windows: Vec<WindowView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": reason.into() }))).into_response()
}

async fn list(State(api): State<Api>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Some(refusal) = unauthorized(&api, &headers) {
        return refusal;
    }
    // sled reads block: off the async runtime.
    match tokio::task::spawn_blocking(move || list_windows(&api, &q)).await {
        Ok(response) => response,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The page `q` asks for: up to `limit` windows in key order across the
/// owned partitions, each partition looked at for at most [`MAX_SCAN`]
/// windows; `next` says where to go on (also when the scan stopped short).
fn list_windows(api: &Api, q: &ListQuery) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let now_ms = Utc::now().timestamp_millis();
    let mut views = Vec::new();
    // The smallest key a partition's scan stopped at, when one stopped
    // before running out.
    let mut cut_short: Option<String> = None;
    for (partition, owned) in api.partitions.iter() {
        // Page through this partition until `limit` matching windows (live
        // ones unless `all`) are found, it runs out, or MAX_SCAN were seen.
        let mut after = q.after.clone();
        // One more than a page, to know whether there is a next one.
        let want = limit + 1;
        let mut found = 0;
        let mut scanned = 0;
        loop {
            let page = match owned.store.list(&q.prefix, after.as_deref(), want) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let exhausted = page.len() < want;
            scanned += page.len();
            after = page.last().map(|(k, _)| k.clone());
            for (key, w) in page {
                let live = w.end_ms > now_ms;
                if live || q.all {
                    views.push(WindowView {
                        key,
                        partition: *partition,
                        window_start: time_of(w.start_ms),
                        window_end: time_of(w.end_ms),
                        suppressed: w.suppressed,
                        suppressed_before: w.suppressed_before,
                        live,
                    });
                    found += 1;
                }
            }
            if exhausted || found >= want {
                break;
            }
            if scanned >= MAX_SCAN {
                if let Some(at) = after.take() {
                    if cut_short.as_ref().is_none_or(|c| at < *c) {
                        cut_short = Some(at);
                    }
                }
                break;
            }
        }
    }
    views.sort_by(|a, b| a.key.cmp(&b.key));
    // Past the point a partition stopped at, the page may miss windows.
    if let Some(cut) = &cut_short {
        views.retain(|v| v.key <= *cut);
    }
    let next = if views.len() > limit {
        views.truncate(limit);
        views.last().map(|v| v.key.clone())
    } else {
        cut_short
    };
    Json(ListAnswer {
        windows: views,
        next,
    })
    .into_response()
}

#[derive(Debug, Deserialize)]
pub struct ForgetQuery {
    pub key: String,
}

async fn forget(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<ForgetQuery>,
) -> Response {
    if let Some(refusal) = unauthorized(&api, &headers) {
        return refusal;
    }
    let partition = talon_proto::partition_of(&q.key, api.total_partitions);
    let Some(owned) = api.partitions.get(&partition) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "key {:?} belongs to partition {partition}, not owned by this replica",
                q.key
            ),
        );
    };
    let (reply, answer) = oneshot::channel();
    if owned
        .commands
        .send(Command::Forget {
            key: q.key.clone(),
            reply,
        })
        .await
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition is shutting down",
        );
    }
    match answer.await {
        Ok(Ok(forgotten)) => {
            Json(serde_json::json!({ "key": q.key, "forgotten": forgotten })).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "partition is shutting down",
        ),
    }
}
