//! `talonctl event`: publish one monitoring row on
//! Monitoring.<ArtifactName>, as a Velociraptor event artifact would, for
//! ingest's rules.

use anyhow::bail;
use chrono::{DateTime, Utc};
use serde_json::Value;
use talon_proto::names::{is_artifact_name, monitoring_subject};

use crate::cmd::{parse_fields, publish_row, Nats};

/// Arguments of `talonctl event`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The artifact whose queue the row joins, e.g. Linux.Detection.Honeyfiles.
    artifact: String,
    /// The row's columns; values are parsed as JSON where they parse.
    #[arg(value_name = "KEY=VALUE")]
    fields: Vec<String>,
}

/// Publishes the row and prints its sequence in the MONITORING stream.
pub async fn run(args: Args, nats: &Nats) -> anyhow::Result<()> {
    let (subject, row) = event_row(&args.artifact, &args.fields, Utc::now())?;
    publish_row(
        &nats.js,
        subject,
        &row,
        "JetStream did not ack the row (is the MONITORING stream there? run talonctl init)",
    )
    .await
}

/// The subject and row of the event: the given columns, plus `_ts` (`now`,
/// in epoch seconds) unless given.
fn event_row(
    artifact: &str,
    fields: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<(String, Value)> {
    if !is_artifact_name(artifact) {
        bail!(
            "{artifact:?} is not an artifact name (dot-separated parts of A-Z, a-z, 0-9, _ and -)"
        );
    }
    let mut row = parse_fields(fields)?;
    row.entry("_ts").or_insert_with(|| now.timestamp().into());
    Ok((monitoring_subject(artifact), Value::Object(row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_rows_carry_the_columns_and_a_ts() {
        let (subject, row) = event_row(
            "Linux.Detection.Honeyfiles",
            &["FileName=/h".into(), "Pid=42".into(), "ClientId=C.1".into()],
            Utc::now(),
        )
        .unwrap();
        assert_eq!(subject, "Monitoring.Linux.Detection.Honeyfiles");
        assert_eq!(row["FileName"], "/h");
        assert_eq!(row["Pid"], 42);
        assert!(row["_ts"].as_i64().unwrap() > 1_700_000_000);
        let (_, row) = event_row("A", &["_ts=5".into()], Utc::now()).unwrap();
        assert_eq!(row["_ts"], 5);
        assert!(event_row("A..B", &[], Utc::now())
            .unwrap_err()
            .to_string()
            .contains("not an artifact name"));
        assert!(event_row("A", &["x".into()], Utc::now()).is_err());
    }

    #[test]
    fn the_ts_is_now_in_seconds() {
        let now = DateTime::from_timestamp(1_750_000_000, 999_000_000).unwrap();
        let (_, row) = event_row("A", &[], now).unwrap();
        assert_eq!(row, serde_json::json!({"_ts": 1_750_000_000}));
    }
}
