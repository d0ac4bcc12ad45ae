//! What the console API says of one inbox message, with its place in the
//! stream and whether it is read: for an alert, its id, name, times,
//! severity, client, artifact and context; for a group message, how many
//! alerts, what they share, the counts and the time range (its alerts are
//! listed by `GET /v1/alerts?group=<key>-<sequence>`).
//!
//! A group message is read from the stream as hostile: [`decode_group`]
//! checks it against its header and bounds what is kept of it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use talon_proto::group::{Count, GroupValue, GROUP_TYPE, MAX_COUNTED_CLIENTS, MAX_MESSAGE_ALERTS};
use talon_proto::{Alert, ClientInfo, ContextEntry, GroupMessage};

use crate::index::GroupRef;

/// One inbox message: `"kind": "alert"` or `"kind": "group"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MessageView {
    Alert(AlertView),
    Group(GroupView),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertView {
    /// The message's `INBOX` sequence: `before` and `up_to` take it.
    pub seq: u64,
    pub read: bool,
    pub alert_id: String,
    pub name: String,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client inventory's record, when the client is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Alerts of this dedup key suppressed in its previous window.
    pub suppressed_before: u64,
    /// The flattened context, in order.
    pub context: Vec<ContextEntry>,
}

/// The view of `alert`, stored at `seq`.
pub fn message(seq: u64, read: bool, alert: &Alert) -> MessageView {
    MessageView::Alert(AlertView {
        seq,
        read,
        alert_id: alert.id.clone(),
        name: alert.name.clone(),
        timestamp: alert.timestamp,
        received_at: alert.received_at,
        severity: alert.severity.clone(),
        client_id: alert.effective_client_id().map(str::to_owned),
        client: alert.client.clone(),
        flow_id: alert.flow_id.clone(),
        artifact: alert.effective_artifact().map(str::to_owned),
        artifact_type: alert.artifact_type.clone(),
        suppressed_before: alert.dedup.as_ref().map_or(0, |d| d.suppressed_before),
        context: alert.context.clone().unwrap_or_else(|| context_of(alert)),
    })
}

/// A group message in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    pub seq: u64,
    pub read: bool,
    /// The entry's own id: `g-<group key>-<sequence>`.
    pub id: String,
    #[serde(flatten)]
    pub summary: GroupSummary,
}

/// The view of the group message `summary`, stored at `seq`.
pub fn group_message(seq: u64, read: bool, summary: &GroupSummary) -> MessageView {
    MessageView::Group(GroupView {
        seq,
        read,
        id: format!("g-{}-{}", summary.group_key, summary.sequence),
        summary: summary.clone(),
    })
}

/// Characters kept of one text of a group message (a value, a name).
pub const TEXT_CHARS: usize = 200;
/// Group values and severities kept of one message (clients: at most
/// [`MAX_COUNTED_CLIENTS`], as notify sends them).
pub const MAX_VALUES: usize = 20;
/// Bytes a group message may have (NATS refuses more than 2 MB anyway).
pub const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;

/// What the inbox shows of a group message: bounded whatever the stream
/// held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    /// `500 alerts: <the name they share, or the group's values>`.
    pub name: String,
    pub channel: String,
    pub group_key: String,
    pub sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The channel's `group_by` fields and the group's values of them.
    pub group: Vec<GroupValue>,
    /// The alert name every alert has, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Alerts in the message.
    pub count: u64,
    pub by_severity: Vec<Count>,
    pub by_client: Vec<Count>,
    pub other_clients: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// A group message as the console keeps it: what it shows, and the ids of
/// its alerts (at most [`MAX_MESSAGE_ALERTS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub summary: GroupSummary,
    pub alert_ids: Vec<String>,
}

/// Why a message that says it is a group message is not one the inbox
/// shows.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("{0} bytes, more than the {MAX_GROUP_BYTES} a group message may have")]
    TooLarge(usize),
    #[error("not a group message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("its type is {0:?}, not \"group\"")]
    NotAGroup(String),
    #[error("the header says group message {header}, the body {body}")]
    Mismatch { header: String, body: String },
    #[error("{0} alert ids, more than the {MAX_MESSAGE_ALERTS} a message may have")]
    TooManyIds(usize),
    #[error("it counts {count} alerts but lists {ids} ids")]
    Count { count: u64, ids: usize },
    #[error("alert id {at} cannot be used: {error}")]
    Id {
        at: usize,
        error: talon_proto::wire::IdError,
    },
}

/// The group message `want` (its `Talon-Group` header) from its stored
/// bytes: checked (type, group and sequence as the header says, at most
/// [`MAX_MESSAGE_ALERTS`] ids, each usable, as many as it counts) and cut
/// to what the inbox shows.
pub fn decode_group(want: &GroupRef, payload: &[u8]) -> Result<Group, GroupError> {
    if payload.len() > MAX_GROUP_BYTES {
        return Err(GroupError::TooLarge(payload.len()));
    }
    let m: GroupMessage = serde_json::from_slice(payload)?;
    if m.kind != GROUP_TYPE {
        return Err(GroupError::NotAGroup(cut(&m.kind, TEXT_CHARS)));
    }
    if m.group_key != want.key || m.sequence != want.sequence {
        return Err(GroupError::Mismatch {
            header: want.to_string(),
            body: format!("{}-{}", cut(&m.group_key, 64), m.sequence),
        });
    }
    if m.alert_ids.len() > MAX_MESSAGE_ALERTS {
        return Err(GroupError::TooManyIds(m.alert_ids.len()));
    }
    if m.count != m.alert_ids.len() as u64 {
        return Err(GroupError::Count {
            count: m.count,
            ids: m.alert_ids.len(),
        });
    }
    if let Some((at, error)) = m
        .alert_ids
        .iter()
        .enumerate()
        .find_map(|(at, id)| talon_proto::check_id(id).err().map(|e| (at, e)))
    {
        return Err(GroupError::Id { at, error });
    }
    let common_name = m.common_name().map(|n| cut(n, TEXT_CHARS));
    let label = cut(&m.label(), TEXT_CHARS);
    let what = match (&common_name, m.digest.is_some()) {
        (Some(name), _) => name.clone(),
        (None, _) if !label.is_empty() => label,
        (None, true) => format!("digest of {}", cut(&m.channel, TEXT_CHARS)),
        (None, false) => cut(&m.channel, TEXT_CHARS),
    };
    let plural = if m.count == 1 { "" } else { "s" };
    let counts = |list: &[Count], n: usize| -> Vec<Count> {
        list.iter()
            .take(n)
            .map(|c| Count {
                value: cut(&c.value, TEXT_CHARS),
                count: c.count,
            })
            .collect()
    };
    let unnamed: u64 = m
        .by_client
        .iter()
        .skip(MAX_COUNTED_CLIENTS)
        .fold(0u64, |sum, c| sum.saturating_add(c.count));
    let summary = GroupSummary {
        name: format!("{} alert{plural}: {what}", m.count),
        channel: cut(&m.channel, TEXT_CHARS),
        group_key: m.group_key,
        sequence: m.sequence,
        digest: m.digest.as_deref().map(|d| cut(d, TEXT_CHARS)),
        group: m
            .group
            .iter()
            .take(MAX_VALUES)
            .map(|g| GroupValue {
                field: cut(&g.field, TEXT_CHARS),
                value: cut(&g.value, TEXT_CHARS),
            })
            .collect(),
        common_name,
        count: m.count,
        by_severity: counts(&m.by_severity, MAX_VALUES),
        by_client: counts(&m.by_client, MAX_COUNTED_CLIENTS),
        other_clients: m.other_clients.saturating_add(unnamed),
        first_at: m.first_at,
        last_at: m.last_at,
    };
    Ok(Group {
        summary,
        alert_ids: m.alert_ids,
    })
}

/// The first `n` characters of `text`.
fn cut(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// An alert that was not enriched shows its `event_data`, one entry a
/// top-level key (strings as they are, anything else as JSON).
fn context_of(alert: &Alert) -> Vec<ContextEntry> {
    alert
        .event_data
        .iter()
        .map(|(key, value)| ContextEntry {
            key: key.clone(),
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use talon_proto::DedupInfo;

    fn alert(enriched: bool) -> Alert {
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "id": "a1",
            "received_at": "2026-12-01T10:00:01Z",
            "source": "nats",
            "name": "Honey file opened",
            "timestamp": "2026-12-01T10:00:00Z",
            "client_id": "C.1",
            "artifact": "Linux.Detection.Honeyfiles",
            "event_data": {"FileName": "/home/a/honey.docx", "Pid": 42},
        }))
        .unwrap();
        if enriched {
            a.severity = Some("high".into());
            a.context = Some(vec![ContextEntry {
                key: "FileName".into(),
                value: "/home/a/honey.docx".into(),
            }]);
            a.client = Some(ClientInfo {
                hostname: Some("ws-01".into()),
                ..Default::default()
            });
            a.dedup = Some(DedupInfo {
                key: "Honey file opened".into(),
                window_start: a.received_at,
                window_end: a.received_at,
                suppressed_before: 3,
            });
        }
        a
    }

    fn check(alert: &Alert, expected: serde_json::Value) {
        let got = serde_json::to_value(message(7, false, alert)).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn an_enriched_alert_shows_its_context_client_and_severity() {
        check(
            &alert(true),
            serde_json::json!({
                "kind": "alert", "seq": 7, "read": false, "alert_id": "a1", "name": "Honey file opened",
                "timestamp": "2026-12-01T10:00:00Z", "received_at": "2026-12-01T10:00:01Z",
                "severity": "high", "client_id": "C.1", "client": {"hostname": "ws-01", "labels": []},
                "artifact": "Linux.Detection.Honeyfiles", "suppressed_before": 3,
                "context": [{"key": "FileName", "value": "/home/a/honey.docx"}],
            }),
        );
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    /// A group message of `n` alerts named `name` on two clients.
    fn group(n: usize, name: &str) -> GroupMessage {
        let values = vec![GroupValue {
            field: "name".into(),
            value: name.into(),
        }];
        let mut b = talon_proto::group::Builder::new("inbox", KEY, values, 2, None, 100);
        for i in 0..n {
            let mut a = alert(true);
            a.id = format!("a{i}");
            a.name = name.into();
            a.severity = Some(if i % 5 == 0 { "high" } else { "low" }.into());
            a.client_id = Some(format!("C.{}", i % 2));
            a.client = None;
            b.push(a);
        }
        b.finish()
    }

    fn want() -> GroupRef {
        GroupRef::new(KEY, 2).unwrap()
    }

    fn decode(m: &GroupMessage) -> Result<Group, GroupError> {
        decode_group(&want(), &serde_json::to_vec(m).unwrap())
    }

    #[test]
    fn a_group_message_shows_its_count_name_and_counts() {
        let g = decode(&group(500, "Sigma: mimikatz")).unwrap();
        assert_eq!(g.alert_ids.len(), 500);
        assert_eq!(g.alert_ids.first().map(String::as_str), Some("a0"));
        let got = serde_json::to_value(group_message(9, true, &g.summary)).unwrap();
        assert_eq!(
            got,
            serde_json::json!({
                "kind": "group", "seq": 9, "read": true, "id": format!("g-{KEY}-2"),
                "name": "500 alerts: Sigma: mimikatz", "channel": "inbox",
                "group_key": KEY, "sequence": 2,
                "group": [{"field": "name", "value": "Sigma: mimikatz"}],
                "common_name": "Sigma: mimikatz", "count": 500,
                "by_severity": [{"value": "low", "count": 400}, {"value": "high", "count": 100}],
                "by_client": [{"value": "C.0", "count": 250}, {"value": "C.1", "count": 250}],
                "other_clients": 0,
                "first_at": "2026-12-01T10:00:00Z", "last_at": "2026-12-01T10:00:00Z",
            })
        );
        // One alert; a digest without a shared name or values.
        let mut one = group(1, "x");
        one.group.clear();
        one.rows.clear();
        one.not_listed = 1;
        one.digest = Some("0 9 * * *".into());
        assert_eq!(
            decode(&one).unwrap().summary.name,
            "1 alert: digest of inbox"
        );
    }

    #[test]
    fn hostile_group_messages_are_refused_or_cut() {
        let good = group(3, "n");
        let bad = |f: &dyn Fn(&mut GroupMessage)| {
            let mut m = good.clone();
            f(&mut m);
            decode(&m)
        };
        assert!(matches!(
            bad(&|m| m.kind = "alert".into()),
            Err(GroupError::NotAGroup(_))
        ));
        assert!(matches!(
            bad(&|m| m.sequence = 3),
            Err(GroupError::Mismatch { .. })
        ));
        assert!(matches!(
            bad(&|m| m.group_key = "f".repeat(32)),
            Err(GroupError::Mismatch { .. })
        ));
        assert!(matches!(
            bad(&|m| m.count = 500),
            Err(GroupError::Count { .. })
        ));
        assert!(matches!(
            bad(&|m| m.alert_ids[1] = "../../x".into()),
            Err(GroupError::Id { at: 1, .. })
        ));
        assert!(matches!(
            bad(&|m| m.alert_ids[0] = String::new()),
            Err(GroupError::Id { at: 0, .. })
        ));
        assert!(matches!(
            bad(&|m| {
                m.alert_ids = (0..=MAX_MESSAGE_ALERTS).map(|i| format!("a{i}")).collect();
                m.count = m.alert_ids.len() as u64;
            }),
            Err(GroupError::TooManyIds(10_001))
        ));
        // Not JSON, not a group message, an alert, a field it does not have.
        let mut extra = serde_json::to_value(&good).unwrap();
        extra["evil"] = serde_json::json!(1);
        for payload in [
            b"".to_vec(),
            b"{".to_vec(),
            b"[]".to_vec(),
            b"null".to_vec(),
            br#"{"type": "group"}"#.to_vec(),
            serde_json::to_vec(&alert(true)).unwrap(),
            serde_json::to_vec(&extra).unwrap(),
        ] {
            assert!(
                matches!(decode_group(&want(), &payload), Err(GroupError::Json(_))),
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
        let huge = vec![b' '; MAX_GROUP_BYTES + 1];
        assert!(matches!(
            decode_group(&want(), &huge),
            Err(GroupError::TooLarge(_))
        ));

        // Long texts and long lists are cut.
        let long = "é".repeat(10_000);
        let g = bad(&|m| {
            m.channel = long.clone();
            m.group = (0..100)
                .map(|i| GroupValue {
                    field: format!("f{i}"),
                    value: long.clone(),
                })
                .collect();
            m.by_severity = (0..100)
                .map(|i| Count {
                    value: format!("s{i}"),
                    count: 1,
                })
                .collect();
            m.by_client = (0..100)
                .map(|i| Count {
                    value: long.clone(),
                    count: u64::MAX - i,
                })
                .collect();
        })
        .unwrap();
        let s = &g.summary;
        assert_eq!(s.channel.chars().count(), TEXT_CHARS);
        assert_eq!(s.group.len(), MAX_VALUES);
        assert!(s
            .group
            .iter()
            .all(|v| v.value.chars().count() == TEXT_CHARS));
        assert_eq!(s.by_severity.len(), MAX_VALUES);
        assert_eq!(s.by_client.len(), MAX_COUNTED_CLIENTS);
        assert_eq!(s.other_clients, u64::MAX, "added up without overflow");
        assert!(s.name.chars().count() <= TEXT_CHARS + 30, "{}", s.name);
    }

    #[test]
    fn an_alert_without_context_shows_its_event_data() {
        check(
            &alert(false),
            serde_json::json!({
                "kind": "alert", "seq": 7, "read": false, "alert_id": "a1", "name": "Honey file opened",
                "timestamp": "2026-12-01T10:00:00Z", "received_at": "2026-12-01T10:00:01Z",
                "client_id": "C.1", "artifact": "Linux.Detection.Honeyfiles", "suppressed_before": 0,
                "context": [
                    {"key": "FileName", "value": "/home/a/honey.docx"},
                    {"key": "Pid", "value": "42"},
                ],
            }),
        );
    }
}
