//! dedup's HTTP API on `[dedup].http_listen`:
//! `GET /v1/windows?prefix=&after=&limit=&all=` lists windows (live ones
//! unless `all=true`), in key order, paged by `next`;
//! `DELETE /v1/windows?key=K` forgets a key, so its next alert opens a new
//! window.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
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

async fn list(State(api): State<Api>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let now_ms = Utc::now().timestamp_millis();
    let mut views = Vec::new();
    for (partition, owned) in api.partitions.iter() {
        // Page through this partition until `limit` matching windows (live
        // ones unless `all`) are found or it runs out.
        let mut after = q.after.clone();
        // One more than a page, to know whether there is a next one.
        let want = limit + 1;
        let mut found = 0;
        loop {
            let page = match owned.store.list(&q.prefix, after.as_deref(), want) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let exhausted = page.len() < want;
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
        }
    }
    views.sort_by(|a, b| a.key.cmp(&b.key));
    let next = if views.len() > limit {
        views.truncate(limit);
        views.last().map(|v| v.key.clone())
    } else {
        None
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

async fn forget(State(api): State<Api>, Query(q): Query<ForgetQuery>) -> Response {
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
