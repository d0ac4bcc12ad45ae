//! `talonctl alert`: raise one alert on Server.Internal.Alerts, like
//! Velociraptor's alert().

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use talon_proto::names::SUBJECT_ALERTS;

use crate::cmd::{parse_fields, publish_row, Nats};

/// Arguments of `talonctl alert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The alert's name (its dedup key by default).
    #[arg(long)]
    name: String,
    /// Dedup window in seconds; 0 = the default, -1 = never suppress.
    #[arg(long, allow_hyphen_values = true)]
    dedup: Option<i64>,
    /// `false`: the alert is counted and not sent.
    #[arg(long)]
    condition: Option<bool>,
    #[arg(long)]
    client_id: Option<String>,
    #[arg(long)]
    artifact: Option<String>,
    #[arg(long)]
    artifact_type: Option<String>,
    /// Context fields; values are parsed as JSON where they parse.
    #[arg(value_name = "KEY=VALUE")]
    fields: Vec<String>,
}

/// Publishes the alert and prints its sequence in the ALERTS stream.
pub async fn run(args: Args, nats: &Nats) -> anyhow::Result<()> {
    let row = alert_row(args, Utc::now())?;
    publish_row(
        &nats.js,
        SUBJECT_ALERTS,
        &row,
        "JetStream did not ack the alert (is the ALERTS stream there? run talonctl init)",
    )
    .await
}

/// The Velociraptor queue row of the alert, raised at `now`.
fn alert_row(args: Args, now: DateTime<Utc>) -> anyhow::Result<Value> {
    let event_data = parse_fields(&args.fields)?;
    let mut row = Map::new();
    row.insert("name".into(), args.name.into());
    row.insert(
        "timestamp".into(),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            .into(),
    );
    row.insert(
        "client_id".into(),
        args.client_id.unwrap_or_else(|| "server".into()).into(),
    );
    for (key, value) in [
        ("artifact", args.artifact),
        ("artifact_type", args.artifact_type),
    ] {
        if let Some(v) = value {
            row.insert(key.into(), v.into());
        }
    }
    if let Some(d) = args.dedup {
        row.insert("dedup".into(), d.into());
    }
    if let Some(c) = args.condition {
        row.insert("condition".into(), c.into());
    }
    row.insert("event_data".into(), Value::Object(event_data));
    row.insert("_Source".into(), "talonctl".into());
    Ok(Value::Object(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, fields: &[&str]) -> Args {
        Args {
            name: name.into(),
            dedup: None,
            condition: None,
            client_id: None,
            artifact: None,
            artifact_type: None,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn alert_fields_parse_as_json_where_they_can() {
        let row = alert_row(
            Args {
                dedup: Some(-1),
                artifact: Some("A".into()),
                ..args(
                    "Honey",
                    &["Pid=42", "Name=evil.exe", "Tags=[\"a\"]", "Eq=a=b"],
                )
            },
            Utc::now(),
        )
        .unwrap();
        assert_eq!(row["event_data"]["Pid"], 42);
        assert_eq!(row["event_data"]["Name"], "evil.exe");
        assert_eq!(row["event_data"]["Tags"][0], "a");
        assert_eq!(row["event_data"]["Eq"], "a=b");
        assert_eq!(row["dedup"], -1);
        assert_eq!(row["client_id"], "server");
        assert!(talon_proto::RawAlert::from_value(row).is_ok());
    }

    #[test]
    fn the_row_has_only_the_options_given() {
        let now = DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let row = alert_row(args("n", &[]), now).unwrap();
        assert_eq!(
            row,
            serde_json::json!({
                "name": "n",
                "timestamp": "2025-01-02T03:04:05Z",
                "client_id": "server",
                "event_data": {},
                "_Source": "talonctl",
            })
        );
        let row = alert_row(
            Args {
                dedup: Some(0),
                condition: Some(false),
                client_id: Some("C.1".into()),
                artifact: Some("A.B".into()),
                artifact_type: Some("CLIENT_EVENT".into()),
                ..args("n", &["k=v"])
            },
            now,
        )
        .unwrap();
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "timestamp",
                "client_id",
                "artifact",
                "artifact_type",
                "dedup",
                "condition",
                "event_data",
                "_Source"
            ]
        );
        assert_eq!(row["condition"], false);
        assert_eq!(row["client_id"], "C.1");
    }

    #[test]
    fn a_field_without_equals_is_an_error() {
        assert!(alert_row(args("n", &["oops"]), Utc::now())
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
    }
}
