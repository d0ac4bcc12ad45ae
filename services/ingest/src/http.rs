//! ingest's HTTP edge: `POST /v1/alerts` takes one raw alert, a
//! JSON array of them, or NDJSON. Valid items are published to
//! `Server.Internal.Alerts` (marked `Talon-Source: http`) and answered with
//! their stream sequence only once JetStream has acked them; invalid items
//! are dead-lettered and answered with their reason.
//! `POST /v1/events/<ArtifactName>` takes monitoring rows (JSON objects) the
//! same way and publishes them to `Monitoring.<ArtifactName>` for the rules;
//! what is not an object goes to `talon.dlq.rules`.

use std::sync::Arc;

use async_nats::jetstream::{self, message::PublishMessage};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use talon_proto::key::derived_msg_id;
use talon_proto::names::{
    is_artifact_name, monitoring_subject, Stage, HEADER_SOURCE, HTTP_EVENTS_ORIGIN_PREFIX,
    SUBJECT_ALERTS,
};
use talon_proto::{DeadLetter, RawAlert};

use crate::metrics::Metrics;

/// Subject recorded in dead letters of HTTP alerts.
pub const HTTP_SUBJECT: &str = "http:/v1/alerts";

/// A client may send this header so that a retried request publishes the
/// same `Nats-Msg-Id`s and JetStream drops the copies.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Clone)]
pub struct Edge {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub tokens: Arc<Vec<String>>,
    pub tokens_env: String,
    pub max_body_bytes: usize,
    pub max_items: usize,
    pub metrics: Metrics,
}

/// The rejected items of one request that its summary dead letter lists
/// with their reasons (all of them are in its `raw`).
const REASONS_IN_SUMMARY: usize = 20;

pub fn routes(edge: Edge) -> Router {
    Router::new()
        .route("/v1/alerts", post(post_alerts))
        .route("/v1/events/{artifact}", post(post_events))
        .with_state(edge)
}

#[derive(Debug, Serialize, Default)]
pub struct Answer {
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub index: usize,
    pub seq: u64,
}

#[derive(Debug, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": reason.into() }))).into_response()
}

/// `None` when the request may go on, else the 401 to send.
fn authorize(edge: &Edge, headers: &HeaderMap) -> Option<Response> {
    if edge.tokens.is_empty() {
        tracing::warn!(
            tokens_env = %edge.tokens_env,
            "HTTP request refused: no ingest tokens are configured"
        );
        return Some(error(
            StatusCode::UNAUTHORIZED,
            format!(
                "no tokens are configured on this server (set {})",
                edge.tokens_env
            ),
        ));
    }
    match talon_kit::http::bearer(headers) {
        None => Some(error(StatusCode::UNAUTHORIZED, "missing bearer token")),
        Some(t) if talon_kit::http::token_matches(&edge.tokens, t) => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "invalid bearer token")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
}

/// The body format from `Content-Type`, parameters ignored.
pub fn format_of(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Some(Format::Json),
        "application/x-ndjson" => Some(Format::Ndjson),
        _ => None,
    }
}

/// What an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Raw alerts, for `Server.Internal.Alerts`.
    Alerts,
    /// Monitoring rows, for `Monitoring.<ArtifactName>`.
    Events,
}

impl Kind {
    /// What one item is called in reasons.
    fn noun(self) -> &'static str {
        match self {
            Kind::Alerts => "alert",
            Kind::Events => "row",
        }
    }

    fn check(self, value: Value) -> Result<(), String> {
        match self {
            Kind::Alerts => RawAlert::from_value(value)
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::Events => crate::rules::row_of(value).map(drop),
        }
    }
}

/// One item of a request: its bytes as they will be published or
/// dead-lettered, and whether it validated.
#[derive(Debug)]
pub struct Item {
    pub raw: Vec<u8>,
    pub verdict: Result<(), String>,
}

fn item_of_value(value: Value, kind: Kind) -> Item {
    // A Value always serializes; were it not to, the item would be rejected
    // (with no bytes to keep) rather than published.
    match serde_json::to_vec(&value) {
        Ok(raw) => {
            let verdict = kind.check(value);
            Item { raw, verdict }
        }
        Err(e) => Item {
            raw: Vec::new(),
            verdict: Err(format!("{} does not serialize: {e}", kind.noun())),
        },
    }
}

fn item_of_bytes(raw: &[u8], kind: Kind) -> Item {
    let noun = kind.noun();
    let verdict = std::str::from_utf8(raw)
        .map_err(|e| {
            format!(
                "{noun} is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            )
        })
        .and_then(|text| {
            serde_json::from_str::<Value>(text).map_err(|e| format!("{noun} is not JSON: {e}"))
        })
        .and_then(|value| kind.check(value));
    Item {
        raw: raw.to_vec(),
        verdict,
    }
}

/// A body with more items than `max_items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyItems {
    pub count: usize,
    pub max: usize,
}

/// Splits a body into items: a JSON object is one item, a JSON array one item
/// per element, NDJSON one per non-blank line. The items are counted before
/// any of them is checked: more than `max_items` and none is.
pub fn split(
    body: &[u8],
    format: Format,
    kind: Kind,
    max_items: usize,
) -> Result<Vec<Item>, TooManyItems> {
    let too_many = |count: usize| {
        (count > max_items).then_some(TooManyItems {
            count,
            max: max_items,
        })
    };
    match format {
        Format::Ndjson => {
            let lines = || {
                body.split(|b| *b == b'\n')
                    .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                    .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            };
            if let Some(e) = too_many(lines().count()) {
                return Err(e);
            }
            Ok(lines().map(|line| item_of_bytes(line, kind)).collect())
        }
        Format::Json => {
            let parsed = std::str::from_utf8(body)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(text).ok());
            match parsed {
                Some(Value::Array(items)) => {
                    if let Some(e) = too_many(items.len()) {
                        return Err(e);
                    }
                    Ok(items.into_iter().map(|v| item_of_value(v, kind)).collect())
                }
                Some(_) | None => Ok(vec![item_of_bytes(body, kind)]),
            }
        }
    }
}

/// Where one request's items go.
#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    /// The subject valid items are published to.
    subject: String,
    /// The subject dead letters record (`http:/v1/...`).
    origin: String,
    /// The stage of the dead letters.
    stage: Stage,
    /// What the `Nats-Msg-Id`s of a request's items derive from, besides
    /// its key and each item's index.
    scope: Option<String>,
}

impl Target {
    fn alerts() -> Target {
        Target {
            kind: Kind::Alerts,
            subject: SUBJECT_ALERTS.to_owned(),
            origin: HTTP_SUBJECT.to_owned(),
            stage: Stage::Ingest,
            scope: None,
        }
    }

    fn events(artifact: &str) -> Target {
        Target {
            kind: Kind::Events,
            subject: monitoring_subject(artifact),
            origin: format!("{HTTP_EVENTS_ORIGIN_PREFIX}{artifact}"),
            stage: Stage::Rules,
            scope: Some(artifact.to_owned()),
        }
    }

    /// The `Nats-Msg-Id`s of item `index` of the request `key`: its
    /// publish, and its dead letter.
    fn msg_ids(&self, key: &str, index: usize) -> (String, String) {
        match &self.scope {
            None => {
                let item = format!("{key}:{index}");
                (
                    derived_msg_id(talon_proto::names::MsgIdDomain::Http, &item),
                    derived_msg_id(talon_proto::names::MsgIdDomain::HttpDeadLetter, &item),
                )
            }
            Some(scope) => {
                let item = format!("{scope}\u{0}{key}:{index}");
                (
                    derived_msg_id(talon_proto::names::MsgIdDomain::HttpEvents, &item),
                    derived_msg_id(talon_proto::names::MsgIdDomain::HttpEventsDeadLetter, &item),
                )
            }
        }
    }
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .map(|s| s.is::<http_body_util::LengthLimitError>())
                .unwrap_or(false);
            if too_large {
                Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is over max_body_bytes ({limit} bytes)"),
                ))
            } else {
                Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read body: {e}"),
                ))
            }
        }
    }
}

async fn post_alerts(State(edge): State<Edge>, headers: HeaderMap, body: Body) -> Response {
    let response = handle(&edge, &headers, body, Ok(Target::alerts())).await;
    count(&edge, response)
}

async fn post_events(
    State(edge): State<Edge>,
    Path(artifact): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let target = if is_artifact_name(&artifact) {
        Ok(Target::events(&artifact))
    } else {
        Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "{artifact:?} is not an artifact name (dot-separated parts of A-Z, a-z, 0-9, _ and -)"
            ),
        ))
    };
    let response = handle(&edge, &headers, body, target).await;
    count(&edge, response)
}

fn count(edge: &Edge, response: Response) -> Response {
    edge.metrics
        .http_requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}

async fn handle(
    edge: &Edge,
    headers: &HeaderMap,
    body: Body,
    target: Result<Target, Response>,
) -> Response {
    if let Some(refusal) = authorize(edge, headers) {
        return refusal;
    }
    let target = match target {
        Ok(t) => t,
        Err(refusal) => return refusal,
    };
    let Some(format) = format_of(headers) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json or application/x-ndjson",
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > edge.max_body_bytes) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body is over max_body_bytes ({} bytes)",
                edge.max_body_bytes
            ),
        );
    }
    let body = match read_body(body, edge.max_body_bytes).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    if !talon_kit::nats::is_connected(&edge.client) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NATS is unreachable; retry later",
        );
    }
    let items = match split(&body, format, target.kind, edge.max_items) {
        Ok(items) => items,
        Err(TooManyItems { count, max }) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body holds {count} {}s, over max_items ({max})",
                    target.kind.noun()
                ),
            )
        }
    };
    if items.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the body holds no {}s", target.kind.noun()),
        );
    }
    let request_key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    match publish_items(edge, &target, items, &request_key).await {
        Ok(answer) if answer.accepted.is_empty() => {
            (StatusCode::BAD_REQUEST, Json(answer)).into_response()
        }
        Ok(answer) => (StatusCode::ACCEPTED, Json(answer)).into_response(),
        Err(e) => {
            let noun = target.kind.noun();
            tracing::warn!(error = %e, subject = %target.subject, "HTTP {noun}s not acked by JetStream");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("NATS did not acknowledge the {noun}s ({e}); retry later"),
            )
        }
    }
}

/// One dead letter for all the rejected items of a request: the reasons of
/// the first few by index, and every rejected item, one per line, as `raw`.
fn summary_letter(
    target: &Target,
    total: usize,
    rejected: &[(usize, String, Vec<u8>)],
) -> DeadLetter {
    let mut reason = format!(
        "{} of {total} {}s in one request rejected",
        rejected.len(),
        target.kind.noun()
    );
    for (index, why, _) in rejected.iter().take(REASONS_IN_SUMMARY) {
        reason.push_str(&format!("; item {index}: {why}"));
    }
    if rejected.len() > REASONS_IN_SUMMARY {
        reason.push_str(&format!(
            "; and {} more",
            rejected.len() - REASONS_IN_SUMMARY
        ));
    }
    let mut raw = Vec::new();
    for (i, (_, _, bytes)) in rejected.iter().enumerate() {
        if i > 0 {
            raw.push(b'\n');
        }
        raw.extend_from_slice(bytes);
    }
    DeadLetter::new(target.stage, reason, target.origin.as_str(), None, &raw)
}

/// Publishes every valid item to the target's subject and, when some were
/// rejected, one summary dead letter for them, then waits for every ack.
async fn publish_items(
    edge: &Edge,
    target: &Target,
    items: Vec<Item>,
    request_key: &str,
) -> Result<Answer, String> {
    let total = items.len();
    let mut started = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let (msg_id, _) = target.msg_ids(request_key, index);
        match item.verdict {
            Ok(()) => {
                let mut message = PublishMessage::build()
                    .payload(item.raw.into())
                    .message_id(&msg_id);
                if target.kind == Kind::Alerts {
                    message = message.header(HEADER_SOURCE, "http");
                }
                let ack = edge
                    .js
                    .send_publish(target.subject.clone(), message)
                    .await
                    .map_err(|e| e.to_string())?;
                started.push((index, ack));
            }
            Err(reason) => rejected.push((index, reason, item.raw)),
        }
    }
    let letter = match rejected.first() {
        Some((first, why, _)) => {
            edge.metrics
                .http_rejected_items
                .with_label_values(&[target.kind.noun()])
                .inc_by(rejected.len() as u64);
            tracing::info!(
                count = rejected.len(),
                of = total,
                sample_index = first,
                sample_reason = ?why,
                subject = %target.subject,
                "HTTP items rejected"
            );
            let (_, dlq_id) = target.msg_ids(request_key, 0);
            let letter = summary_letter(target, total, &rejected);
            Some(
                talon_kit::dlq::publish(&edge.js, &letter, &dlq_id)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let mut answer = Answer::default();
    for (index, ack) in started {
        let ack = ack.await.map_err(|e| e.to_string())?;
        answer.accepted.push(Accepted {
            index,
            seq: ack.sequence,
        });
    }
    if let Some(ack) = letter {
        ack.await.map_err(|e| e.to_string())?;
    }
    answer.rejected = rejected
        .into_iter()
        .map(|(index, reason, _)| Rejected { index, reason })
        .collect();
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(body: &str, format: Format) -> Vec<Result<(), String>> {
        split(body.as_bytes(), format, Kind::Alerts, 1000)
            .unwrap()
            .into_iter()
            .map(|i| i.verdict)
            .collect()
    }

    #[test]
    fn bodies_split_into_items() {
        assert_eq!(verdicts(r#"{"name":"a"}"#, Format::Json), vec![Ok(())]);
        let mixed = verdicts(r#"[{"name":"a"},{"name":""},7]"#, Format::Json);
        assert_eq!(mixed.len(), 3);
        assert!(mixed[0].is_ok() && mixed[1].is_err() && mixed[2].is_err());
        let nd = verdicts(
            "{\"name\":\"a\"}\r\n\n  \n{bad\n{\"name\":\"b\"}\n",
            Format::Ndjson,
        );
        assert_eq!(nd.len(), 3);
        assert!(nd[0].is_ok() && nd[1].is_err() && nd[2].is_ok());
        let broken = verdicts("{", Format::Json);
        assert!(broken[0].as_ref().unwrap_err().contains("not JSON"));
    }

    #[test]
    fn event_bodies_hold_json_objects() {
        let reasons = |body: &str, format| -> Vec<Result<(), String>> {
            split(body.as_bytes(), format, Kind::Events, 1000)
                .unwrap()
                .into_iter()
                .map(|i| i.verdict)
                .collect()
        };
        assert_eq!(reasons(r#"{"Pid":1}"#, Format::Json), vec![Ok(())]);
        assert_eq!(
            reasons(r#"[{},7]"#, Format::Json),
            vec![
                Ok(()),
                Err("a monitoring row must be a JSON object, got a number".into())
            ]
        );
        let nd = reasons("{}\n{bad\n", Format::Ndjson);
        assert!(nd[1].as_ref().unwrap_err().starts_with("row is not JSON"));
        let (a, _) = Target::events("A.B").msg_ids("k", 0);
        let (b, _) = Target::events("A.C").msg_ids("k", 0);
        let (c, _) = Target::alerts().msg_ids("k", 0);
        assert!(a != b && a != c, "ids are scoped by artifact and endpoint");
        assert_eq!(
            Target::alerts().msg_ids("k", 0).0,
            derived_msg_id(talon_proto::names::MsgIdDomain::Http, "k:0")
        );
    }

    #[test]
    fn items_are_counted_before_any_is_checked() {
        let too_many = |body: &str, format| split(body.as_bytes(), format, Kind::Alerts, 2).err();
        assert_eq!(too_many("[1,2]", Format::Json), None);
        assert_eq!(
            too_many("[1,2,3]", Format::Json),
            Some(TooManyItems { count: 3, max: 2 })
        );
        assert_eq!(too_many("a\n\nb\n", Format::Ndjson), None);
        assert_eq!(
            too_many("a\nb\r\nc", Format::Ndjson),
            Some(TooManyItems { count: 3, max: 2 })
        );
        let big = format!("[{}0]", "0,".repeat(99_999));
        assert_eq!(
            split(big.as_bytes(), Format::Json, Kind::Alerts, 1000).err(),
            Some(TooManyItems {
                count: 100_000,
                max: 1000
            })
        );
    }

    #[test]
    fn one_summary_letter_names_the_first_reasons_and_keeps_every_item() {
        let rejected: Vec<(usize, String, Vec<u8>)> = (0..25)
            .map(|i| {
                (
                    i * 2,
                    format!("bad {i}"),
                    format!("{{\"n\":{i}}}").into_bytes(),
                )
            })
            .collect();
        let letter = summary_letter(&Target::alerts(), 50, &rejected);
        assert!(
            letter.reason.starts_with(
                "25 of 50 alerts in one request rejected; item 0: bad 0; item 2: bad 1"
            ),
            "{}",
            letter.reason
        );
        assert!(letter.reason.ends_with("; and 5 more"), "{}", letter.reason);
        let raw = letter.raw.unwrap();
        assert_eq!(raw.lines().count(), 25);
        assert_eq!(raw.lines().last(), Some("{\"n\":24}"));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(format_of(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(format_of(&h), Some(Format::Json));
        h.insert(
            header::CONTENT_TYPE,
            "application/x-ndjson".parse().unwrap(),
        );
        assert_eq!(format_of(&h), Some(Format::Ndjson));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(format_of(&h), None);
    }
}
