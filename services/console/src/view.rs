//! What the console API says of one inbox message: the alert's id, name,
//! times, severity, client, artifact and context, plus its place in the
//! stream and whether it is read.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use talon_proto::{Alert, ClientInfo, ContextEntry};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageView {
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
    MessageView {
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
    }
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
                "seq": 7, "read": false, "alert_id": "a1", "name": "Honey file opened",
                "timestamp": "2026-12-01T10:00:00Z", "received_at": "2026-12-01T10:00:01Z",
                "severity": "high", "client_id": "C.1", "client": {"hostname": "ws-01", "labels": []},
                "artifact": "Linux.Detection.Honeyfiles", "suppressed_before": 3,
                "context": [{"key": "FileName", "value": "/home/a/honey.docx"}],
            }),
        );
    }

    #[test]
    fn an_alert_without_context_shows_its_event_data() {
        check(
            &alert(false),
            serde_json::json!({
                "seq": 7, "read": false, "alert_id": "a1", "name": "Honey file opened",
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
