//! Overrides: as in Velociraptor's `Server.Monitor.Alerts`, an alert raised
//! on behalf of someone else (a server event rule speaking for a client, say)
//! names them in its context: `event_data.ClientId`, `FlowId`, `Artifact` and
//! `ArtifactType` replace the alert's own `client_id`, `flow_id`, `artifact`
//! and `artifact_type`, and leave the context.

use serde_json::Value;
use talon_proto::{Alert, OVERRIDE_KEYS};

/// Moves the [`OVERRIDE_KEYS`] out of `event_data` into the alert's fields.
///
/// Only strings count: a non-empty string replaces the field (the rule of
/// [`Alert::override_of`]), an empty one leaves the field as it was; either
/// way the key leaves `event_data`. A key holding anything else (a number,
/// an object, null) is not an override and stays in `event_data`, where it
/// shows up in the context like any other value. The other keys keep their
/// order.
pub fn apply_overrides(alert: &mut Alert) {
    let overrides = OVERRIDE_KEYS.map(|key| alert.override_of(key).map(str::to_owned));
    let Alert {
        event_data,
        client_id,
        flow_id,
        artifact,
        artifact_type,
        ..
    } = alert;
    let fields = [client_id, flow_id, artifact, artifact_type];
    for ((key, value), field) in OVERRIDE_KEYS.into_iter().zip(overrides).zip(fields) {
        if let Some(value) = value {
            *field = Some(value);
        }
        // `shift_remove`, not `remove`: the latter swaps the last key into the
        // hole and the context would lose the input's order.
        if matches!(event_data.get(key), Some(Value::String(_))) {
            event_data.shift_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The alert's own fields: (client_id, flow_id, artifact, artifact_type).
    type Fields = (
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );

    /// What a server event rule raises: the server's own alert.
    const SERVER: Fields = (
        Some("server"),
        None,
        Some("EventTest.Alert"),
        Some("SERVER_MONITORING"),
    );

    fn alert(event_data: Value) -> Alert {
        let (client_id, flow_id, artifact, artifact_type) = SERVER;
        Alert {
            id: "a1".into(),
            received_at: "2020-10-07T20:43:09Z".parse().unwrap(),
            name: "TestAlert".into(),
            timestamp: "2020-10-07T20:43:08Z".parse().unwrap(),
            client_id: client_id.map(Into::into),
            flow_id: flow_id.map(Into::into),
            artifact: artifact.map(Into::into),
            artifact_type: artifact_type.map(Into::into),
            event_data: event_data.as_object().cloned().unwrap(),
            ..Alert::sample()
        }
    }

    /// Applies the overrides to an alert with `SERVER`'s fields and
    /// `event_data`; compares the fields and what is left of `event_data`,
    /// key order included.
    fn check(event_data: Value, fields: Fields, left: Value) {
        let mut a = alert(event_data.clone());
        apply_overrides(&mut a);
        let got = (
            a.client_id.as_deref(),
            a.flow_id.as_deref(),
            a.artifact.as_deref(),
            a.artifact_type.as_deref(),
        );
        assert_eq!(got, fields, "fields of {event_data}");
        assert_eq!(
            Value::Object(a.event_data).to_string(),
            left.to_string(),
            "event_data left of {event_data}"
        );
    }

    #[test]
    fn overrides() {
        check(json!({}), SERVER, json!({}));
        check(
            json!({"FileName": "/etc/shadow", "Pid": 4120}),
            SERVER,
            json!({"FileName": "/etc/shadow", "Pid": 4120}),
        );
        // A rule raising a client's alert: all four move, the rest keeps its order.
        check(
            json!({
                "FileName": "/home/alice/secret.txt",
                "ClientId": "C.1b2c3d4e5f607182",
                "FlowId": "F.CR1NGB0J8Q5SC",
                "Pid": 4120,
                "Artifact": "Linux.Detection.Honeyfiles",
                "ArtifactType": "CLIENT_EVENT",
                "ProcessName": "cat",
            }),
            (
                Some("C.1b2c3d4e5f607182"),
                Some("F.CR1NGB0J8Q5SC"),
                Some("Linux.Detection.Honeyfiles"),
                Some("CLIENT_EVENT"),
            ),
            json!({"FileName": "/home/alice/secret.txt", "Pid": 4120, "ProcessName": "cat"}),
        );
        // Only some of them.
        check(
            json!({"ClientId": "C.1", "Level": "high"}),
            (
                Some("C.1"),
                None,
                Some("EventTest.Alert"),
                Some("SERVER_MONITORING"),
            ),
            json!({"Level": "high"}),
        );
        // An empty string overrides nothing but still leaves the context.
        check(
            json!({"ClientId": "", "Artifact": "", "Level": "high"}),
            SERVER,
            json!({"Level": "high"}),
        );
        // Anything but a string is no override and stays in the context.
        check(
            json!({"ClientId": 5, "FlowId": null, "Artifact": {"Name": "X"}, "ArtifactType": ["CLIENT_EVENT"]}),
            SERVER,
            json!({"ClientId": 5, "FlowId": null, "Artifact": {"Name": "X"}, "ArtifactType": ["CLIENT_EVENT"]}),
        );
        check(
            json!({"ClientId": 5, "FlowId": "F.1"}),
            (
                Some("server"),
                Some("F.1"),
                Some("EventTest.Alert"),
                Some("SERVER_MONITORING"),
            ),
            json!({"ClientId": 5}),
        );
        // The names are case-sensitive, as in Velociraptor.
        check(
            json!({"clientid": "C.1", "client_id": "C.2"}),
            SERVER,
            json!({"clientid": "C.1", "client_id": "C.2"}),
        );
    }
}
