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
//!
//! A group message ([`render_group`]) is one incident per group:
//! `dedup_key` is the group's key, so every message of a group updates
//! one incident; `severity` is the highest of its alerts'; `summary` is
//! its title (`500 alerts: <name>`); `custom_details` hold its count,
//! values, counts by severity and client, time span, up to
//! [`GROUP_DETAIL_ROWS`] rows as compact lines (`name — client — severity
//! — time (link)`, then `…and N more`) and its alert ids, as many as fit
//! in the event (`alert_ids_left_out` says how many did not).

use chrono::SecondsFormat;
use serde_json::{json, Map, Value};
use talon_proto::{Alert, GroupMessage};

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
/// Rows of a group message listed in its `custom_details`, at most.
pub const GROUP_DETAIL_ROWS: usize = 100;

/// PagerDuty's severity for one of ours.
pub fn severity(ours: Option<&str>) -> &'static str {
    match ours.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "fatal") => "critical",
        Some("high" | "error") => "error",
        Some("medium" | "warning" | "warn") => "warning",
        _ => "info",
    }
}

/// How PagerDuty's severities rank, highest last.
fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 3,
        "error" => 2,
        "warning" => 1,
        _ => 0,
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

/// The event for `group`.
pub fn render_group(group: &GroupMessage, options: &ChannelOptions) -> Value {
    let severity = group
        .by_severity
        .iter()
        .map(|c| severity(Some(&c.value)))
        .max_by_key(|s| rank(s))
        .unwrap_or_else(|| severity(None));
    let source = match (group.by_client.as_slice(), group.other_clients) {
        ([one], 0) if one.value.is_empty() => "server".to_owned(),
        ([one], 0) => one.value.clone(),
        (clients, 0) => format!("{} clients", clients.len()),
        (clients, _) => format!("more than {} clients", clients.len()),
    };
    let mut payload = Map::new();
    payload.insert(
        "summary".into(),
        Value::String(parts::cut(&present::group_title(group), SUMMARY_CHARS)),
    );
    payload.insert(
        "source".into(),
        Value::String(parts::cut(&present::one_line(&source), FIELD_CHARS)),
    );
    payload.insert("severity".into(), Value::String(severity.to_owned()));
    payload.insert(
        "timestamp".into(),
        Value::String(group.last_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    let mut details = Map::new();
    details.insert("alerts".into(), Value::from(group.count));
    let values: Map<String, Value> = group
        .group
        .iter()
        .map(|g| {
            let value = parts::cut(&g.value, present::GROUP_VALUE_CHARS);
            (
                parts::cut(&g.field, present::LABEL_CHARS),
                Value::String(value),
            )
        })
        .collect();
    details.insert("group".into(), Value::Object(values));
    if let Some(digest) = &group.digest {
        details.insert(
            "digest".into(),
            Value::String(parts::cut(digest, present::GROUP_VALUE_CHARS)),
        );
    }
    details.insert("message".into(), Value::from(group.sequence));
    details.insert(
        "by_severity".into(),
        Value::String(present::severity_counts(group)),
    );
    details.insert(
        "by_client".into(),
        Value::String(present::client_counts(
            group,
            talon_proto::group::MAX_COUNTED_CLIENTS,
        )),
    );
    details.insert("time".into(), Value::String(present::group_span(group)));
    let lines: Vec<String> = group
        .rows
        .iter()
        .take(GROUP_DETAIL_ROWS)
        .map(|row| present::row_line(group, row, parts::cut, |c, u| format!("{c} ({u})")))
        .collect();
    let build = |n: usize, ids: usize| {
        let mut details = details.clone();
        let more = present::not_shown(group, n);
        let rows: Vec<Value> = lines
            .iter()
            .take(n)
            .cloned()
            .chain((more > 0).then(|| present::and_more(more)))
            .map(Value::String)
            .collect();
        details.insert("rows".into(), Value::Array(rows));
        let kept: Vec<Value> = group
            .alert_ids
            .iter()
            .take(ids)
            .map(|id| Value::String(id.clone()))
            .collect();
        details.insert("alert_ids".into(), Value::Array(kept));
        let left_out = group.alert_ids.len().saturating_sub(ids);
        if left_out > 0 {
            details.insert("alert_ids_left_out".into(), Value::from(left_out));
        }
        let mut payload = payload.clone();
        payload.insert("custom_details".into(), Value::Object(details));
        json!({
            "routing_key": options.routing_key.as_deref().unwrap_or_default(),
            "event_action": EVENT_ACTION,
            "dedup_key": parts::bounded_key(&group.group_key, DEDUP_KEY_CHARS),
            "payload": payload,
            "client": CLIENT,
        })
    };
    // The rows first (a bounded few), then as many ids as fit beside them.
    parts::fit_in_turn(lines.len(), group.alert_ids.len(), build, |event| {
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

    #[test]
    fn a_group_is_one_incident() {
        let group = fixtures::group();
        let event = render_group(&group, &fixtures::options());
        assert_eq!(event["dedup_key"], group.group_key.as_str());
        assert_eq!(event["event_action"], EVENT_ACTION);
        assert_eq!(event["routing_key"], "R0UT1NGKEY0123456789abcdef012345");
        let payload = &event["payload"];
        assert_eq!(payload["severity"], "critical", "the highest, not the most");
        assert_eq!(
            payload["summary"],
            "500 alerts: Sigma: Mimikatz Use <!channel> & @everyone"
        );
        let details = &payload["custom_details"];
        assert_eq!(details["alerts"], 500);
        assert_eq!(details["group"]["name"], group.group[0].value.as_str());
        assert_eq!(
            details["by_severity"],
            "high (450), medium (40), critical (10)"
        );
        assert_eq!(details["alert_ids"].as_array().unwrap().len(), 500);
        assert!(details.get("alert_ids_left_out").is_none());
        let rows = details["rows"].as_array().unwrap();
        assert_eq!(rows.len(), GROUP_DETAIL_ROWS + 1);
        assert_eq!(rows[GROUP_DETAIL_ROWS], "…and 400 more");
    }

    #[test]
    fn a_groups_severity_is_its_highest() {
        fn check(severities: &[&str], expected: &str) {
            let mut group = fixtures::group();
            group.by_severity = severities
                .iter()
                .map(|s| talon_proto::group::Count {
                    value: (*s).into(),
                    count: 1,
                })
                .collect();
            let event = render_group(&group, &fixtures::options());
            assert_eq!(event["payload"]["severity"], expected, "{severities:?}");
        }
        check(&["low", "high", "medium"], "error");
        check(&["warn", "info"], "warning");
        check(&["", "odd"], "info");
        check(&[], "info");
        check(&["medium", "FATAL"], "critical");
    }

    #[test]
    fn oversized_groups_stay_within_the_limits() {
        let group = fixtures::oversized_group();
        let event = render_group(&group, &fixtures::options());
        let len = parts::json_len(&event);
        assert!(len <= EVENT_BYTES, "{len}");
        assert_eq!(event["dedup_key"], group.group_key.as_str());
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SUMMARY_CHARS);
        assert!(summary.starts_with("Digest: 10000 alerts: Group G<&>"));
        let details = &event["payload"]["custom_details"];
        assert_eq!(
            details["rows"].as_array().unwrap().len(),
            GROUP_DETAIL_ROWS + 1
        );
        assert_eq!(details["alert_ids"].as_array().unwrap().len(), 10_000);

        // Ids too long to all fit: as many as fit, and how many did not.
        let mut group = group;
        for id in &mut group.alert_ids {
            id.push_str(&"x".repeat(100));
        }
        let event = render_group(&group, &fixtures::options());
        let len = parts::json_len(&event);
        assert!(len <= EVENT_BYTES && len > EVENT_BYTES - 200, "{len}");
        let details = &event["payload"]["custom_details"];
        let kept = details["alert_ids"].as_array().unwrap().len();
        let left_out = details["alert_ids_left_out"].as_u64().unwrap() as usize;
        assert!(kept > 1000 && left_out > 0, "{kept} {left_out}");
        assert_eq!(kept + left_out, 10_000);
    }
}
