//! talonctl's subcommands, a module each, and what they share: the NATS
//! connection, `KEY=VALUE` fields and publishing a row.

pub mod alert;
pub mod alerts;
pub mod check_config;
pub mod clients;
pub mod dedup;
pub mod dlq;
pub mod event;
pub mod hash_password;
pub mod health;
pub mod init;
pub mod silence;
pub mod tail;

use anyhow::Context as _;
use async_nats::jetstream;
use async_nats::subject::ToSubject;
use serde_json::{Map, Value};
use talon_kit::config::{Config, Env};
use talon_kit::nats::{self, Initial};

use crate::cli::Global;

/// What a subcommand that talks to NATS starts from: the config (with
/// `--nats` applied), a client connected as `talonctl`, and a JetStream
/// context with the suite's timeouts.
pub struct Nats {
    pub config: Config,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Nats {
    /// Loads the config and connects, failing at once if the server is not
    /// there.
    pub async fn connect(global: &Global, env: &Env) -> anyhow::Result<Nats> {
        let config = global.load_config(env)?;
        let client = nats::connect(&config.nats, env, "talonctl", Initial::FailFast)
            .await
            .context("connecting to NATS")?;
        let js = nats::jetstream(client.clone());
        Ok(Nats { config, client, js })
    }
}

/// Publishes `row` as JSON on `subject` and prints the stream sequence
/// JetStream acked it with; `unacked` is the error when it does not ack.
pub async fn publish_row(
    js: &jetstream::Context,
    subject: impl ToSubject,
    row: &Value,
    unacked: &'static str,
) -> anyhow::Result<()> {
    let ack = js
        .publish(subject, serde_json::to_vec(row)?.into())
        .await?
        .await
        .context(unacked)?;
    println!("{}", ack.sequence);
    Ok(())
}

/// `KEY=VALUE` arguments as a JSON object, each value parsed as JSON where
/// it parses, else taken as a string.
pub fn parse_fields(fields: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for field in fields {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("{field:?} is not KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(args: &[&str]) -> anyhow::Result<Map<String, Value>> {
        parse_fields(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn field_values_are_json_where_they_parse_else_strings() {
        let got = fields(&[
            "Pid=42",
            "Name=evil.exe",
            "Tags=[\"a\"]",
            "On=true",
            "Quoted=\"7\"",
            "Empty=",
            "Eq=a=b",
        ])
        .unwrap();
        assert_eq!(got["Pid"], 42);
        assert_eq!(got["Name"], "evil.exe");
        assert_eq!(got["Tags"][0], "a");
        assert_eq!(got["On"], true);
        assert_eq!(got["Quoted"], "7");
        assert_eq!(got["Empty"], "");
        assert_eq!(got["Eq"], "a=b", "the first = splits");
        let order: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            order,
            ["Pid", "Name", "Tags", "On", "Quoted", "Empty", "Eq"],
            "in the order given"
        );
    }

    #[test]
    fn a_later_field_replaces_an_earlier_one() {
        assert_eq!(fields(&["a=1", "a=2"]).unwrap()["a"], 2);
    }

    #[test]
    fn a_field_without_equals_is_an_error_naming_it() {
        assert_eq!(
            fields(&["a=1", "oops"]).unwrap_err().to_string(),
            "\"oops\" is not KEY=VALUE"
        );
        assert!(fields(&[]).unwrap().is_empty());
    }
}
