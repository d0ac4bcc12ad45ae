//! The `pagerduty` channel: an Events API v2 `trigger` event. `dedup_key`
//! is the alert's dedup key (else its name), so the repeats of one key,
//! window after window, update one PagerDuty incident, and a redelivery
//! never opens a second; `payload.custom_details` is the context.
//!
//! Severity, onto PagerDuty's four: `critical` and `fatal` → `critical`;
//! `high` and `error` → `error`; `medium`, `warning` and `warn` →
//! `warning`; anything else (`low`, `info`, none, unknown) → `info`.
//!
//! Limits: `summary` 1,024 characters, `dedup_key` 255 (a longer key keeps
//! its start and a hash of the whole), the whole event under 512 KB
//! (context fields that do not fit are counted under the key `…`).
//! PagerDuty answers 202 when it took the event; 400 (a bad event) is
//! permanent, 429 and 5xx are retried, as for every HTTP kind.

use chrono::SecondsFormat;
use serde_json::{json, Map, Value};
use talon_proto::Alert;

use super::parts::{self, ChannelOptions};
use crate::channels::present;

/// The one event action talon sends.
pub const EVENT_ACTION: &str = "trigger";
/// The `client` named in each event.
pub const CLIENT: &str = "talon";
/// Characters of `payload.summary`.
pub const SUMMARY_CHARS: usize = 1024;
/// Characters of `dedup_key`.
pub const DEDUP_KEY_CHARS: usize = 255;
/// Bytes of the whole event (PagerDuty takes up to 512 KB).
pub const EVENT_BYTES: usize = 512_000;
/// Characters of `payload.source`, `component`, `group` and `class`.
const FIELD_CHARS: usize = 255;

/// PagerDuty's severity for one of ours.
pub fn severity(ours: Option<&str>) -> &'static str {
    match ours.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "fatal") => "critical",
        Some("high" | "error") => "error",
        Some("medium" | "warning" | "warn") => "warning",
        _ => "info",
    }
}

/// The `dedup_key` of `alert`.
pub fn dedup_key(alert: &Alert) -> String {
    parts::bounded_key(parts::dedup_key(alert), DEDUP_KEY_CHARS)
}

/// The event for `alert`.
pub fn render(alert: &Alert, options: &ChannelOptions) -> Value {
    let source = present::client_label(alert).unwrap_or("server");
    let mut payload = Map::new();
    payload.insert(
        "summary".into(),
        Value::String(parts::cut(
            &present::title(alert, present::WHOLE_NAME),
            SUMMARY_CHARS,
        )),
    );
    payload.insert(
        "source".into(),
        Value::String(parts::cut(&present::one_line(source), FIELD_CHARS)),
    );
    payload.insert(
        "severity".into(),
        Value::String(severity(alert.severity.as_deref()).to_owned()),
    );
    payload.insert(
        "timestamp".into(),
        Value::String(alert.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    let optional = [
        ("component", alert.effective_artifact()),
        ("group", alert.org_id.as_deref()),
        ("class", alert.artifact_type.as_deref()),
    ];
    for (key, value) in optional {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            payload.insert(key.into(), Value::String(parts::cut(v, FIELD_CHARS)));
        }
    }
    let context = present::context_rows(alert);
    let build = |n: usize| {
        let details: Map<String, Value> = parts::kept(&context, n)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let mut payload = payload.clone();
        payload.insert("custom_details".into(), Value::Object(details));
        let mut event = json!({
            "routing_key": options.routing_key.as_deref().unwrap_or_default(),
            "event_action": EVENT_ACTION,
            "dedup_key": dedup_key(alert),
            "payload": payload,
            "client": CLIENT,
        });
        let links: Vec<Value> = present::links(alert)
            .into_iter()
            .map(|(text, href)| json!({"href": href, "text": text}))
            .collect();
        if let (Some(event), false) = (event.as_object_mut(), links.is_empty()) {
            event.insert("links".into(), Value::Array(links));
        }
        event
    };
    parts::fit(context.len(), build, |event| {
        parts::json_len(event) <= EVENT_BYTES
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    #[test]
    fn severities_map_onto_pagerdutys_four() {
        fn check(ours: Option<&str>, expected: &str) {
            assert_eq!(severity(ours), expected, "{ours:?}");
        }
        check(Some("critical"), "critical");
        check(Some("Critical"), "critical");
        check(Some("fatal"), "critical");
        check(Some("high"), "error");
        check(Some("error"), "error");
        check(Some("medium"), "warning");
        check(Some("WARN"), "warning");
        check(Some("warning"), "warning");
        check(Some("low"), "info");
        check(Some("info"), "info");
        check(Some("unknown"), "info");
        check(Some(""), "info");
        check(None, "info");
    }

    #[test]
    fn the_dedup_key_is_the_alerts() {
        fn check(alert: Alert, expected: &str) {
            let event = render(&alert, &fixtures::options());
            assert_eq!(event["dedup_key"], expected);
        }
        check(fixtures::alert(), "Honey file | C.1234");
        let mut other_window = fixtures::alert();
        other_window.id = "another-id".into();
        if let Some(d) = other_window.dedup.as_mut() {
            d.window_start = "2021-01-01T00:00:00Z".parse().unwrap();
            d.suppressed_before = 0;
        }
        check(other_window, "Honey file | C.1234");
        let mut undeduped = fixtures::alert();
        undeduped.dedup = None;
        check(undeduped, "Honey file");
    }

    #[test]
    fn oversized_alerts_stay_within_the_limits() {
        let event = render(&fixtures::oversized(), &fixtures::options());
        let len = parts::json_len(&event);
        assert!(len <= EVENT_BYTES, "{len}");
        assert!(len > EVENT_BYTES - 10_000, "the budget is used: {len}");
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_CHARS);
        assert!(summary.ends_with(parts::ELLIPSIS));
        let key = event["dedup_key"].as_str().unwrap();
        assert!(key.chars().count() <= DEDUP_KEY_CHARS);
        let details = event["payload"]["custom_details"].as_object().unwrap();
        assert!(details[parts::LEFT_OUT_LABEL]
            .as_str()
            .unwrap()
            .ends_with("more fields left out"));
    }

    #[test]
    fn custom_details_are_the_context() {
        let event = render(&fixtures::alert(), &fixtures::options());
        assert_eq!(
            event["payload"]["custom_details"]["FileName"],
            "/home/alice/honey.docx"
        );
        assert_eq!(event["payload"]["custom_details"]["Empty"], "");
        assert_eq!(event["routing_key"], "R0UT1NGKEY0123456789abcdef012345");
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["payload"]["severity"], "error");
        assert_eq!(event["payload"]["source"], "web-01");
    }
}
