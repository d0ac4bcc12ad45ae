//! The pure core of ingest: one input in, one decision out. No I/O here;
//! `consume.rs` carries the decision out.

use chrono::{DateTime, Utc};
use talon_proto::key::{alert_id_from_msg_id, alert_id_from_stream};
use talon_proto::names::{accepted_subject, Stage, STREAM_ALERTS};
use talon_proto::{dedup_key, partition_of, Alert, DeadLetter, DedupKeyField, RawAlert};

/// One message from `Server.Internal.Alerts`, as far as ingest cares.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    /// The producer's `Nats-Msg-Id`, when it sent one.
    pub msg_id: Option<&'a str>,
    /// The `Talon-Source` header, set by the HTTP edge and the rules.
    pub source: Option<&'a str>,
    pub stream_seq: u64,
    /// When JetStream stored the input: the alert's `received_at`.
    pub published: DateTime<Utc>,
}

/// What ingest needs from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_bytes: usize,
    pub key: Vec<DedupKeyField>,
    pub partitions: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Publish `alert` to `subject` with `Nats-Msg-Id` = its id.
    Forward { subject: String, alert: Box<Alert> },
    /// `condition: false`: counted, acked, not forwarded.
    ConditionFalse { id: String },
    /// Dead-letter it.
    Reject(Box<DeadLetter>),
}

/// The alert id: from the producer's `Nats-Msg-Id`, else from the input's
/// place in `ALERTS`, so a redelivery yields the same id.
pub fn alert_id(input: &Input) -> String {
    match input.msg_id {
        Some(id) if !id.is_empty() => alert_id_from_msg_id(id),
        _ => alert_id_from_stream(STREAM_ALERTS, input.stream_seq),
    }
}

/// `http` and `rule:<name>` as the header says; anything else is `nats`.
pub fn source_of(header: Option<&str>) -> String {
    match header {
        Some("http") => "http".to_owned(),
        Some(rule) if rule.starts_with("rule:") && rule.len() > 5 => rule.to_owned(),
        _ => "nats".to_owned(),
    }
}

/// The Alert envelope of a validated raw alert.
pub fn to_alert(raw: RawAlert, id: String, received_at: DateTime<Utc>, source: String) -> Alert {
    raw.into_alert(id, received_at, source)
}

pub fn decide(input: &Input, settings: &Settings) -> Decision {
    let raw = match RawAlert::parse(input.payload, settings.max_bytes) {
        Ok(raw) => raw,
        Err(e) => {
            let mut dl = DeadLetter::new(
                Stage::Ingest,
                e.to_string(),
                input.subject,
                Some(input.stream_seq),
                input.payload,
            );
            if let Some(id) = input.msg_id {
                dl.headers
                    .insert(talon_proto::names::HEADER_MSG_ID.to_owned(), id.to_owned());
            }
            return Decision::Reject(Box::new(dl));
        }
    };
    let id = alert_id(input);
    if raw.condition == Some(false) {
        return Decision::ConditionFalse { id };
    }
    let alert = to_alert(raw, id, input.published, source_of(input.source));
    let key = dedup_key(&alert, &settings.key);
    let subject = accepted_subject(partition_of(&key, settings.partitions));
    Decision::Forward {
        subject,
        alert: Box::new(alert),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"client_id":"server","name":"TestAlert","timestamp":"2020-10-07T20:43:08Z","event_data":{"field":"Field1"},"artifact":"EventTest.Alert","artifact_type":"SERVER_MONITORING","_ts":1602103388,"_Source":"VelociraptorServer"}"#;

    fn input(payload: &str) -> Input<'_> {
        Input {
            subject: "Server.Internal.Alerts",
            payload: payload.as_bytes(),
            msg_id: None,
            source: None,
            stream_seq: 7,
            published: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn settings(partitions: u32) -> Settings {
        Settings {
            max_bytes: 4096,
            key: vec![DedupKeyField::Name],
            partitions,
        }
    }

    #[test]
    fn velociraptor_row_is_forwarded_with_every_field() {
        let Decision::Forward { subject, alert } = decide(&input(ROW), &settings(1)) else {
            panic!("not forwarded");
        };
        assert_eq!(subject, "talon.alerts.accepted.0");
        assert_eq!(alert.name, "TestAlert");
        assert_eq!(alert.client_id.as_deref(), Some("server"));
        assert_eq!(alert.artifact.as_deref(), Some("EventTest.Alert"));
        assert_eq!(alert.artifact_type.as_deref(), Some("SERVER_MONITORING"));
        assert_eq!(alert.event_data["field"], "Field1");
        assert_eq!(alert.timestamp.to_rfc3339(), "2020-10-07T20:43:08+00:00");
        assert_eq!(alert.received_at.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(alert.source, "nats");
        assert_eq!(alert.id, alert_id_from_stream("ALERTS", 7));
    }

    #[test]
    fn msg_id_decides_the_id_and_source_header_the_source() {
        let mut i = input(r#"{"name":"a"}"#);
        i.msg_id = Some("m-1");
        i.source = Some("http");
        let Decision::Forward { alert, .. } = decide(&i, &settings(1)) else {
            panic!("not forwarded");
        };
        assert_eq!(alert.id, alert_id_from_msg_id("m-1"));
        assert_eq!(alert.source, "http");
        assert_eq!(source_of(Some("rule:x")), "rule:x");
        assert_eq!(source_of(Some("rule:")), "nats");
        assert_eq!(source_of(Some("spoof")), "nats");
    }

    #[test]
    fn condition_false_is_not_forwarded_and_bad_input_is_rejected() {
        assert!(matches!(
            decide(&input(r#"{"name":"a","condition":false}"#), &settings(1)),
            Decision::ConditionFalse { .. }
        ));
        let Decision::Reject(dl) = decide(&input(r#"{"name":""}"#), &settings(1)) else {
            panic!("not rejected");
        };
        assert_eq!(dl.stage, "ingest");
        assert_eq!(dl.stream_seq, Some(7));
        assert_eq!(dl.raw.as_deref(), Some(r#"{"name":""}"#));
        assert!(dl.reason.contains("empty"));
    }

    #[test]
    fn partition_follows_the_dedup_key() {
        let a = input(r#"{"name":"same","client_id":"C.1"}"#);
        let b = input(r#"{"name":"same","client_id":"C.2"}"#);
        let by_name = settings(16);
        let subject = |i: &Input, s: &Settings| match decide(i, s) {
            Decision::Forward { subject, .. } => subject,
            other => panic!("{other:?}"),
        };
        assert_eq!(subject(&a, &by_name), subject(&b, &by_name));
        let by_client = Settings {
            key: vec![DedupKeyField::Name, DedupKeyField::ClientId],
            ..by_name
        };
        let spread: std::collections::BTreeSet<String> = (0..50)
            .map(|n| {
                let row = format!(r#"{{"name":"same","client_id":"C.{n}"}}"#);
                subject(&input(&row), &by_client)
            })
            .collect();
        assert!(spread.len() > 1, "client ids spread over partitions");
    }
}
