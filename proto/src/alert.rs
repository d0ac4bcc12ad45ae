//! The Alert envelope that travels between stages. Ingest fills
//! the first block of fields; dedup adds `dedup`; enrich adds `severity`,
//! `context`, `client`, `links`, `silenced_by`, `routed_to` and `channel`. Fields a stage has not filled yet are
//! absent from the JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Stable for the life of the alert: derived from the input's
    /// `Nats-Msg-Id`, or from its stream sequence.
    pub id: String,
    /// When the input reached JetStream; dedup windows are measured on it.
    pub received_at: DateTime<Utc>,
    /// `nats`, `http` or `rule:<rule-name>`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    pub name: String,
    /// The producer's timestamp; `received_at` when the producer sent none.
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub event_data: Map<String, Value>,
    /// The producer's `dedup`: 0 means "the configured default", a negative
    /// value means "never suppress".
    #[serde(default)]
    pub dedup_seconds: i64,

    /// Added by dedup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupInfo>,

    /// Added by enrich.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<ContextEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
    /// Links into the Velociraptor GUI (`[velociraptor].gui_url` set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    /// The silences that matched: the alert went to no channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silenced_by: Vec<String>,
    /// The channels enrich routed it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Links into the Velociraptor GUI, each present when the alert names what
/// it points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// The client's host page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The flow's collected results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The hunt the context names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hunt: Option<String>,
}

impl Links {
    /// No link at all.
    pub fn is_empty(&self) -> bool {
        self.host.is_none() && self.flow.is_none() && self.hunt.is_none()
    }
}

/// The dedup window an alert opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupInfo {
    pub key: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Alerts with this key suppressed in the key's previous window.
    pub suppressed_before: u64,
}

/// One flattened context field, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextEntry {
    pub key: String,
    pub value: String,
}

/// What the client inventory (`talon_clients`) knows of a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// The `event_data` keys that override the alert's own fields, in the order
/// of those fields: `client_id`, `flow_id`, `artifact`, `artifact_type`. As
/// in Velociraptor's `Server.Monitor.Alerts`, an alert raised on behalf of
/// someone else (a server event rule speaking for a client, say) names them
/// there.
pub const OVERRIDE_KEYS: [&str; 4] = ["ClientId", "FlowId", "Artifact", "ArtifactType"];

/// How long an alert's dedup window is, as its producer asked (`dedup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupWindow {
    /// No `dedup`, or 0: the configured length for its name.
    Default,
    /// A negative `dedup`: never suppress it.
    Never,
    /// This many seconds (before the configured maximum cuts it).
    Seconds(u32),
}

impl DedupWindow {
    /// The window `dedup_seconds` asks for; lengths past `u32::MAX`
    /// seconds (136 years) are that.
    pub fn of(dedup_seconds: i64) -> DedupWindow {
        match dedup_seconds {
            s if s < 0 => DedupWindow::Never,
            0 => DedupWindow::Default,
            s => DedupWindow::Seconds(u32::try_from(s).unwrap_or(u32::MAX)),
        }
    }
}

impl Alert {
    /// A minimal alert (`sample`, named `Sample`, from NATS, received and
    /// raised at 2020-10-07T20:43:09Z, nothing else set): for tests and
    /// examples, as `Alert { name: …, ..Alert::sample() }`.
    pub fn sample() -> Alert {
        let at = DateTime::<Utc>::from_timestamp(1_602_103_389, 0).unwrap_or_default();
        Alert {
            id: "sample".to_owned(),
            received_at: at,
            source: "nats".to_owned(),
            org_id: None,
            name: "Sample".to_owned(),
            timestamp: at,
            client_id: None,
            flow_id: None,
            artifact: None,
            artifact_type: None,
            event_data: Map::new(),
            dedup_seconds: 0,
            dedup: None,
            severity: None,
            context: None,
            client: None,
            links: None,
            silenced_by: Vec::new(),
            routed_to: None,
            channel: None,
        }
    }

    /// The dedup window its producer asked for.
    pub fn dedup_window(&self) -> DedupWindow {
        DedupWindow::of(self.dedup_seconds)
    }

    /// `event_data.<key>` when it is a non-empty string, the one rule for an
    /// override (`key` one of [`OVERRIDE_KEYS`]): anything else, an empty
    /// string included, leaves the alert's own field as it is.
    pub fn override_of(&self, key: &str) -> Option<&str> {
        match self.event_data.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// The client id after the `event_data.ClientId` override.
    pub fn effective_client_id(&self) -> Option<&str> {
        self.override_of("ClientId").or(self.client_id.as_deref())
    }

    /// The flow id after the `event_data.FlowId` override.
    pub fn effective_flow_id(&self) -> Option<&str> {
        self.override_of("FlowId").or(self.flow_id.as_deref())
    }

    /// The artifact after the `event_data.Artifact` override.
    pub fn effective_artifact(&self) -> Option<&str> {
        self.override_of("Artifact").or(self.artifact.as_deref())
    }

    /// The artifact type after the `event_data.ArtifactType` override.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.override_of("ArtifactType")
            .or(self.artifact_type.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_windows_say_what_the_number_meant() {
        assert_eq!(DedupWindow::of(0), DedupWindow::Default);
        assert_eq!(DedupWindow::of(-1), DedupWindow::Never);
        assert_eq!(DedupWindow::of(i64::MIN), DedupWindow::Never);
        assert_eq!(DedupWindow::of(60), DedupWindow::Seconds(60));
        assert_eq!(DedupWindow::of(i64::MAX), DedupWindow::Seconds(u32::MAX));
        let a = Alert {
            dedup_seconds: -5,
            ..Alert::sample()
        };
        assert_eq!(a.dedup_window(), DedupWindow::Never);
    }

    fn alert(event_data: Value) -> Alert {
        Alert {
            id: "x".into(),
            received_at: "2020-10-07T20:43:09Z".parse().unwrap(),
            name: "TestAlert".into(),
            timestamp: "2020-10-07T20:43:08Z".parse().unwrap(),
            client_id: Some("server".into()),
            artifact: Some("EventTest.Alert".into()),
            event_data: event_data.as_object().cloned().unwrap_or_default(),
            ..Alert::sample()
        }
    }

    #[test]
    fn overrides_come_from_event_data_strings_only() {
        let a = alert(serde_json::json!({"ClientId": "C.1", "Artifact": ""}));
        assert_eq!(a.effective_client_id(), Some("C.1"));
        assert_eq!(a.effective_artifact(), Some("EventTest.Alert"));
        let b = alert(serde_json::json!({"ClientId": 5}));
        assert_eq!(b.effective_client_id(), Some("server"));
        assert_eq!(b.override_of("ClientId"), None);
        let c = alert(serde_json::json!({
            "FlowId": "F.1",
            "ArtifactType": "CLIENT_EVENT",
            "Artifact": "Linux.Detection.Honeyfiles",
        }));
        assert_eq!(c.effective_flow_id(), Some("F.1"));
        assert_eq!(c.effective_artifact_type(), Some("CLIENT_EVENT"));
        assert_eq!(c.effective_artifact(), Some("Linux.Detection.Honeyfiles"));
        assert_eq!(a.effective_flow_id(), None);
        assert_eq!(a.effective_artifact_type(), None);
    }

    #[test]
    fn every_override_key_has_its_effective_field() {
        let a = alert(Value::Object(
            OVERRIDE_KEYS
                .iter()
                .map(|k| (k.to_string(), Value::String(format!("from {k}"))))
                .collect(),
        ));
        let effective = [
            a.effective_client_id(),
            a.effective_flow_id(),
            a.effective_artifact(),
            a.effective_artifact_type(),
        ];
        for (key, value) in OVERRIDE_KEYS.iter().zip(effective) {
            assert_eq!(value, Some(format!("from {key}").as_str()));
        }
    }

    #[test]
    fn timestamps_serialize_as_rfc3339_utc() {
        let json = serde_json::to_value(alert(Value::Null)).unwrap();
        assert_eq!(json["timestamp"], "2020-10-07T20:43:08Z");
        assert!(json.get("dedup").is_none(), "unfilled fields are absent");
    }
}
