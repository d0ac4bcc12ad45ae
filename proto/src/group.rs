//! A group message: the alerts of one group of a channel with `group_by`
//! (or a scheduled `digest`) since that group's previous message. notify
//! builds it from the alerts it collected on `talon.groups.<channel>.<key>`;
//! every channel kind renders it, and the `webhook` kind POSTs it as it is
//! (`proto/schemas/group.schema.json`).
//!
//! Its size is bounded whatever the storm: at most [`MAX_MESSAGE_ALERTS`]
//! alerts are counted in one message (a larger backlog becomes several
//! messages, sent one after the other), at most the channel's
//! `group_max_alerts` of them are listed as rows, and only the first
//! [`FULL_ALERTS`] of those are carried whole.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Alert;

/// Alerts counted in one group message, at most.
pub const MAX_MESSAGE_ALERTS: usize = 10_000;

/// Alerts a group message carries whole (with their context and links).
pub const FULL_ALERTS: usize = 3;

/// The default `group_max_alerts`: rows listed in one message.
pub const DEFAULT_LISTED: usize = 100;

/// Clients (and severities) named in a message's counts, at most; the rest
/// are added up under `other_clients`.
pub const MAX_COUNTED_CLIENTS: usize = 20;

/// `"group"`: what the web hook's receivers tell a group from an alert by.
pub const GROUP_TYPE: &str = "group";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMessage {
    /// Always [`GROUP_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The channel it is sent on.
    pub channel: String,
    /// The group's key: 32 hex characters, the same for every message of
    /// the group (a PagerDuty `dedup_key`, a Google Chat thread key).
    pub group_key: String,
    /// What the alerts of the group have in common: the channel's
    /// `group_by` fields and their values (empty for a digest without
    /// `group_by`).
    pub group: Vec<GroupValue>,
    /// This message's number within its group: 1, 2, ...
    pub sequence: u64,
    /// The digest schedule, when the channel has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Alerts in this message.
    pub count: u64,
    /// Every alert id in this message, in the order they reached the
    /// channel.
    pub alert_ids: Vec<String>,
    /// Counts by severity, most alerts first (`""`: without one).
    pub by_severity: Vec<Count>,
    /// Counts by client (hostname, else client id; `""`: the server), most
    /// alerts first, at most [`MAX_COUNTED_CLIENTS`].
    pub by_client: Vec<Count>,
    /// Alerts of clients not named in `by_client`.
    pub other_clients: u64,
    /// The earliest and latest alert time (the producer's timestamp).
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// The first [`FULL_ALERTS`] alerts, whole.
    pub alerts: Vec<Alert>,
    /// One row per listed alert, the whole ones included: at most the
    /// channel's `group_max_alerts`.
    pub rows: Vec<GroupRow>,
    /// Alerts counted but not listed: `count - rows.len()`.
    pub not_listed: u64,
}

/// One `group_by` field and the group's value of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupValue {
    pub field: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

/// An alert as a line of a group's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    /// Hostname, else client id; absent for the server's own alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    pub timestamp: DateTime<Utc>,
    /// The client's page in the Velociraptor GUI, when enrich linked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl GroupMessage {
    /// The group's values as `field=value, ...` (empty for none).
    pub fn label(&self) -> String {
        self.group
            .iter()
            .map(|g| format!("{}={}", g.field, g.value))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The name the alerts share, when the group is by name or every
    /// listed alert has the same one.
    pub fn common_name(&self) -> Option<&str> {
        if let Some(g) = self.group.iter().find(|g| g.field == "name") {
            return Some(&g.value);
        }
        let first = self.rows.first()?.name.as_str();
        (self.not_listed == 0 && self.rows.iter().all(|r| r.name == first)).then_some(first)
    }
}

/// Builds a [`GroupMessage`] from its alerts, one at a time (a message of
/// ten thousand alerts never holds more than its listed rows and
/// [`FULL_ALERTS`] whole alerts).
#[derive(Debug)]
pub struct Builder {
    message: GroupMessage,
    listed: usize,
    severities: std::collections::HashMap<String, u64>,
    clients: std::collections::HashMap<String, u64>,
}

impl Builder {
    /// A message of `channel`'s group `group_key` (values `group`), its
    /// `sequence`-th, listing at most `listed` rows.
    pub fn new(
        channel: &str,
        group_key: &str,
        group: Vec<GroupValue>,
        sequence: u64,
        digest: Option<String>,
        listed: usize,
    ) -> Builder {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Builder {
            message: GroupMessage {
                kind: GROUP_TYPE.to_owned(),
                channel: channel.to_owned(),
                group_key: group_key.to_owned(),
                group,
                sequence,
                digest,
                count: 0,
                alert_ids: Vec::new(),
                by_severity: Vec::new(),
                by_client: Vec::new(),
                other_clients: 0,
                first_at: epoch,
                last_at: epoch,
                alerts: Vec::new(),
                rows: Vec::new(),
                not_listed: 0,
            },
            listed,
            severities: Default::default(),
            clients: Default::default(),
        }
    }

    /// Alerts counted so far.
    pub fn count(&self) -> usize {
        self.message.alert_ids.len()
    }

    /// Counts `alert` in (and lists it while there is room).
    pub fn push(&mut self, alert: Alert) {
        let m = &mut self.message;
        if m.alert_ids.is_empty() || alert.timestamp < m.first_at {
            m.first_at = alert.timestamp;
        }
        if m.alert_ids.is_empty() || alert.timestamp > m.last_at {
            m.last_at = alert.timestamp;
        }
        m.alert_ids.push(alert.id.clone());
        let client = client_label(&alert);
        *self
            .severities
            .entry(alert.severity.clone().unwrap_or_default())
            .or_default() += 1;
        *self
            .clients
            .entry(client.clone().unwrap_or_default())
            .or_default() += 1;
        if m.rows.len() < self.listed {
            m.rows.push(GroupRow {
                id: alert.id.clone(),
                name: alert.name.clone(),
                client,
                client_id: alert.effective_client_id().map(str::to_owned),
                severity: alert.severity.clone(),
                timestamp: alert.timestamp,
                link: alert.links.as_ref().and_then(|l| l.host.clone()),
            });
            if m.alerts.len() < FULL_ALERTS {
                m.alerts.push(alert);
            }
        }
    }

    pub fn finish(self) -> GroupMessage {
        let mut m = self.message;
        m.count = m.alert_ids.len() as u64;
        m.not_listed = m.count - m.rows.len() as u64;
        m.by_severity = most_first(self.severities);
        let mut clients = most_first(self.clients);
        let shown = clients.len().min(MAX_COUNTED_CLIENTS);
        m.other_clients = clients.drain(shown..).map(|c| c.count).sum();
        m.by_client = clients;
        m
    }
}

/// Counts, most first, then by value.
fn most_first(counts: std::collections::HashMap<String, u64>) -> Vec<Count> {
    let mut out: Vec<Count> = counts
        .into_iter()
        .map(|(value, count)| Count { value, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out
}

/// Hostname, else the client id (none for the server).
fn client_label(alert: &Alert) -> Option<String> {
    let hostname = alert
        .client
        .as_ref()
        .and_then(|c| c.hostname.as_deref())
        .filter(|h| !h.trim().is_empty());
    hostname
        .or(alert.effective_client_id())
        .filter(|c| !c.is_empty() && *c != "server")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(i: usize, client: &str, severity: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "id": format!("a{i}"),
            "received_at": "2026-01-01T00:00:00Z",
            "source": "nats",
            "name": "Sigma: mimikatz",
            "timestamp": format!("2026-01-01T00:{:02}:00Z", i % 60),
            "client_id": client,
            "severity": severity,
        }))
        .unwrap()
    }

    #[test]
    fn a_group_counts_every_alert_and_lists_some() {
        let mut b = Builder::new("email", "k", vec![], 1, None, 4);
        for i in 0..30 {
            b.push(alert(
                i,
                &format!("C.{}", i % 25),
                if i % 3 == 0 { "high" } else { "low" },
            ));
        }
        let m = b.finish();
        assert_eq!(m.count, 30);
        assert_eq!(m.alert_ids.len(), 30);
        assert_eq!(m.rows.len(), 4);
        assert_eq!(m.alerts.len(), FULL_ALERTS);
        assert_eq!(m.not_listed, 26);
        assert_eq!(
            m.by_severity,
            [
                Count {
                    value: "low".into(),
                    count: 20
                },
                Count {
                    value: "high".into(),
                    count: 10
                }
            ]
        );
        assert_eq!(m.by_client.len(), MAX_COUNTED_CLIENTS);
        assert_eq!(m.by_client[0].count, 2);
        let named: u64 = m.by_client.iter().map(|c| c.count).sum();
        assert_eq!(named + m.other_clients, 30);
        assert_eq!(m.first_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(m.last_at.to_rfc3339(), "2026-01-01T00:29:00+00:00");
        assert_eq!(m.common_name(), None, "not every alert is listed");
    }
}
