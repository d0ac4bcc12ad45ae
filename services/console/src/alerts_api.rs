//! `/v1/alerts`: every alert with filters and counts, one alert whole, and
//! triage (one alert or many). Every route needs a session; triage needs
//! the analyst or administrator role (403 for a reader).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::alerts::AlertsError;
use crate::api::{backend, body, user_of, ApiError, MAX_BODY_BYTES};
use crate::catalog::{self, Filter};
use crate::index::GroupRef;
use crate::triage::Request;
use crate::Console;

/// At most this many alerts in one triage request.
pub const BULK_MAX: usize = 500;

pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/v1/alerts", get(list))
        .route("/v1/alerts/triage", post(triage_many))
        .route("/v1/alerts/{id}", get(one))
        .route("/v1/alerts/{id}/triage", post(triage_one))
        .route("/v1/users", get(users))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(console)
}

impl From<AlertsError> for ApiError {
    fn from(e: AlertsError) -> ApiError {
        let status = match &e {
            AlertsError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            AlertsError::NotFound(_) => StatusCode::NOT_FOUND,
            AlertsError::NotAllowed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AlertsError::Conflict { .. } => StatusCode::CONFLICT,
            AlertsError::Failed(_) => {
                tracing::warn!(error = %e, "alerts request failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError(status, e.to_string())
    }
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

/// A time as RFC 3339 or epoch seconds, in milliseconds.
fn time_ms(key: &str, value: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = value.parse::<i64>() {
        return secs
            .checked_mul(1000)
            .ok_or_else(|| bad(format!("{key}: out of range")));
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
        .map_err(|_| bad(format!("{key}: not a time (RFC 3339 or epoch seconds)")))
}

/// What a `GET /v1/alerts` query string asks for.
#[derive(Debug)]
pub struct Query {
    pub filter: Filter,
    pub limit: usize,
    pub cursor: Option<u64>,
    /// The alerts of this group message of the user's inbox (`group`),
    /// resolved to their ids from the message.
    pub group: Option<GroupRef>,
}

/// The filter, page size, cursor and group message of a `GET /v1/alerts`
/// query string. Unknown parameters are refused, so a misspelt filter is
/// not silently ignored.
pub fn parse_query(raw: &str) -> Result<Query, ApiError> {
    let mut f = Filter::default();
    let (mut limit, mut cursor, mut group) = (catalog::PAGE_DEFAULT, None, None);
    for (key, value) in url_pairs(raw)? {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let list = || {
            value
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        match key.as_str() {
            "from" => f.from_ms = Some(time_ms("from", value)?),
            "to" => f.to_ms = Some(time_ms("to", value)?),
            "severity" => f.severity = list(),
            "state" => {
                f.state = list();
                if let Some(s) = f
                    .state
                    .iter()
                    .find(|s| !matches!(s.as_str(), "open" | "acknowledged" | "resolved"))
                {
                    return Err(bad(format!(
                        "state: {s:?} is not open, acknowledged or resolved"
                    )));
                }
            }
            "assignee" => f.assignee = Some(value.to_owned()),
            "client" => f.client = Some(value.to_owned()),
            "source" => f.source = Some(value.to_owned()),
            "artifact" => f.artifact = Some(value.to_owned()),
            "channel" => f.channel = Some(value.to_owned()),
            "silenced" => {
                f.silenced = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("silenced: true or false")),
                })
            }
            "silence" => {
                if talon_proto::check_id(value).is_err() || value.len() > 64 {
                    return Err(bad("silence: a silence id"));
                }
                f.silence = Some(value.to_owned());
            }
            "group" => {
                group = Some(GroupRef::parse(value).ok_or_else(|| {
                    bad("group: <group key>-<sequence> of a group message in your inbox")
                })?)
            }
            "q" => f.text = catalog::words(value),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .map_err(|_| bad("limit: a number"))?
                    .clamp(1, catalog::PAGE_MAX)
            }
            "cursor" => {
                // A `HISTORY` sequence, which SQLite holds as an i64.
                cursor = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|c| i64::try_from(*c).is_ok())
                        .ok_or_else(|| bad("cursor: not one this API gave"))?,
                )
            }
            other => return Err(bad(format!("unknown parameter {other:?}"))),
        }
    }
    Ok(Query {
        filter: f,
        limit,
        cursor,
        group,
    })
}

/// A query string's `key=value` pairs, %-decoded, in order; a 400 when it
/// cannot be read.
pub(crate) fn url_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded_pairs(raw).map_err(|e| bad(format!("bad query string: {e}")))
}

/// `a=b&c=d` into pairs, %-decoded (what axum's `Query` does, kept as a
/// list so a parameter given twice is not lost unseen: the last wins).
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, String> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{raw}")
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?,
    )
    .map(|q| q.0)
    .map_err(|e| e.body_text())
}

async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let user = user_of(&console, &headers).await?;
    let Query {
        mut filter,
        limit,
        cursor,
        group,
    } = parse_query(raw.as_deref().unwrap_or(""))?;
    let backend = backend(&console)?;
    if let Some(group) = group {
        // Only a group message of the user's own inbox names alerts here.
        let message = backend.inbox.group(&user, &group).await?;
        filter.ids = Some(message.alert_ids.clone());
    }
    let page = backend.alerts.list(filter, limit, cursor).await?;
    Ok(Json(page).into_response())
}

async fn one(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    user_of(&console, &headers).await?;
    check_id(&id)?;
    let detail = backend(&console)?.alerts.get(&id).await?;
    Ok(Json(detail).into_response())
}

/// An alert id is a subject token (`[0-9A-Za-z_-]`): anything else is no
/// alert, and is never put in a subject.
fn check_id(id: &str) -> Result<(), ApiError> {
    if talon_proto::check_id(id).is_err() || id.len() > 256 {
        return Err(ApiError(StatusCode::NOT_FOUND, "no such alert".into()));
    }
    Ok(())
}

async fn triage_one(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user_of(&console, &headers).await?;
    let request: Request = body(&headers, &bytes)?;
    if !console.may_triage(&user) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "a reader cannot triage".into(),
        ));
    }
    check_id(&id)?;
    let alerts = &backend(&console)?.alerts;
    match alerts.apply(&id, &request, &user, |n| console.is_user(n)).await {
        Ok(view) => {
            tracing::info!(alert = %id, user = %user, action = request.action.as_str(), version = view.version, "triage");
            Ok(Json(view).into_response())
        }
        Err(AlertsError::Conflict { seen, version, current }) => Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "error": format!("the alert changed since version {seen}: now version {version}"),
                "triage": {"state": current.state, "assignee": current.assignee, "verdict": current.verdict, "version": version},
            })),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// `ids` and a triage request (whose own keys are strict: anything else is
/// refused there).
#[derive(Debug, Deserialize)]
struct Bulk {
    ids: Vec<String>,
    #[serde(flatten)]
    request: serde_json::Map<String, serde_json::Value>,
}

/// The same action on many alerts: each answered on its own
/// (`{"results": [{"id", "status", "triage"?, "error"?}]}`).
async fn triage_many(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let user = user_of(&console, &headers).await?;
    let bulk: Bulk = body(&headers, &bytes)?;
    let request: Request = serde_json::from_value(serde_json::Value::Object(bulk.request))
        .map_err(|e| bad(format!("bad request body: {e}")))?;
    if !console.may_triage(&user) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "a reader cannot triage".into(),
        ));
    }
    if bulk.ids.is_empty() || bulk.ids.len() > BULK_MAX {
        return Err(bad(format!("ids: 1 to {BULK_MAX} alert ids")));
    }
    let alerts = &backend(&console)?.alerts;
    let mut results = Vec::with_capacity(bulk.ids.len());
    for id in &bulk.ids {
        if check_id(id).is_err() {
            results.push(json!({"id": id, "status": 404, "error": "no such alert"}));
            continue;
        }
        match alerts
            .apply(id, &request, &user, |n| console.is_user(n))
            .await
        {
            Ok(view) => results.push(json!({"id": id, "status": 200, "triage": view})),
            Err(e) => {
                let ApiError(status, error) = ApiError::from(e);
                results.push(json!({"id": id, "status": status.as_u16(), "error": error}));
            }
        }
    }
    tracing::info!(user = %user, action = request.action.as_str(), alerts = bulk.ids.len(), "bulk triage");
    Ok(Json(json!({ "results": results })).into_response())
}

/// The users an alert can be assigned to.
async fn users(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    user_of(&console, &headers).await?;
    let users: Vec<serde_json::Value> = console
        .user_names()
        .into_iter()
        .map(|n| json!({"name": n, "roles": console.roles(n)}))
        .collect();
    Ok(Json(json!({ "users": users })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_unknown_or_bad_parameters_are_refused() {
        let Query {
            filter: f,
            limit,
            cursor,
            group,
        } = parse_query(
            "severity=high,critical&state=open&client=C.1&q=honey%20file&limit=9000&cursor=42&from=2026-12-01T00:00:00Z&to=1790000000&silenced=false&silence=0a1b&group=0123456789abcdef0123456789abcdef-7",
        )
        .unwrap();
        assert_eq!(
            group.map(|g| g.to_string()).as_deref(),
            Some("0123456789abcdef0123456789abcdef-7")
        );
        assert_eq!(f.severity, ["high", "critical"]);
        assert_eq!(f.state, ["open"]);
        assert_eq!(f.client.as_deref(), Some("C.1"));
        assert_eq!(f.text, ["honey", "file"]);
        assert_eq!(limit, catalog::PAGE_MAX);
        assert_eq!(cursor, Some(42));
        assert_eq!(f.to_ms, Some(1_790_000_000_000));
        assert!(f.from_ms.is_some());
        assert_eq!(f.silenced, Some(false));
        assert_eq!(f.silence.as_deref(), Some("0a1b"));
        assert_eq!(parse_query("").unwrap().limit, catalog::PAGE_DEFAULT);
        for bad in [
            "sevrity=high",
            "state=closed",
            "from=yesterday",
            "to=99999999999999999",
            "limit=-1",
            "cursor=abc",
            "cursor=9223372036854775808",
            "cursor=-1",
            "silenced=yes",
            "silence=a.b",
            "group=abc-1",
            "group=0123456789abcdef0123456789abcdef",
            "group=0123456789abcdef0123456789abcdef-0",
            "group=g-0123456789abcdef0123456789abcdef-1",
        ] {
            let e = parse_query(bad).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
