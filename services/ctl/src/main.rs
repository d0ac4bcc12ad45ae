//! talonctl: set up the streams, raise alerts, watch subjects, read the
//! dead-letter queue, check a config file (DESIGN §8).

mod hash_password;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Map, Value};
use talon_kit::config::{Config, Env};
use talon_kit::nats::{self, Initial};
use talon_proto::names::{
    is_artifact_name, monitoring_subject, HTTP_EVENTS_ORIGIN_PREFIX, STREAM_DLQ, SUBJECT_ALERTS,
    SUBJECT_DLQ_PREFIX,
};
use talon_proto::DeadLetter;

#[derive(Debug, Parser)]
#[command(version, about = "talon's command-line tool")]
struct Cli {
    /// The suite's TOML file; without it, the defaults (NATS on 127.0.0.1:4222).
    #[arg(long, env = "TALON_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// NATS server URL; overrides the config.
    #[arg(long, global = true)]
    nats: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create every stream and consumer of the suite (idempotent).
    Init,
    /// Raise one alert on Server.Internal.Alerts, like Velociraptor's alert().
    Alert {
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
    },
    /// Publish one monitoring row on Monitoring.<ArtifactName>, as a
    /// Velociraptor event artifact would, for ingest's rules.
    Event {
        /// The artifact whose queue the row joins, e.g. Linux.Detection.Honeyfiles.
        artifact: String,
        /// The row's columns; values are parsed as JSON where they parse.
        #[arg(value_name = "KEY=VALUE")]
        fields: Vec<String>,
    },
    /// Print every message published on a subject (wildcards allowed).
    Tail {
        subject: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Parse the config file and report the first problem.
    CheckConfig,
    /// Print an argon2 hash of a console password, for a user's
    /// `password_hash_env` / `password_hash_file`. Asks twice on a terminal;
    /// otherwise reads the first line of standard input.
    HashPassword,
    /// The client inventory (KV bucket talon_clients).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Dedup windows, through a dedup replica's HTTP API.
    Dedup {
        /// The replica's address; default: `[dedup].http_listen` of the config.
        #[arg(long, global = true)]
        url: Option<String>,
        /// The API's bearer token; default: the first of `[dedup].tokens_env`.
        #[arg(long, global = true, env = "TALON_DEDUP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: DedupCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Load JSON lines of {client_id, hostname, fqdn, os, labels}; every line
    /// is checked before anything is written.
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
enum DedupCommand {
    /// List windows, in key order.
    List {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Ended windows too (those kept for `suppressed_before`).
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// Print whole records as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Forget a key's window: its next alert is sent and opens a new one.
    Forget { key: String },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// ingest, rules, dedup, enrich or notify.
        #[arg(long)]
        stage: Option<String>,
        /// Print whole records as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on the subject they came from (a notify one
    /// back on its channel), then remove them from the queue.
    Replay {
        /// Only this stage's.
        #[arg(long)]
        stage: Option<String>,
        /// Only the dead letter with this DLQ sequence or alert id.
        #[arg(long)]
        id: Option<String>,
    },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn load_config(cli: &Cli, env: &Env) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path, env).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::parse("", env).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    if let Some(url) = &cli.nats {
        config.nats.url = url.clone();
    }
    Ok(config)
}

async fn connect(config: &Config, env: &Env) -> anyhow::Result<async_nats::Client> {
    nats::connect(&config.nats, env, "talonctl", Initial::FailFast)
        .await
        .context("connecting to NATS")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Env::from_process();
    if let Command::HashPassword = cli.command {
        return hash_password::run();
    }
    if let Command::CheckConfig = cli.command {
        let Some(path) = &cli.config else {
            bail!("check-config needs --config PATH (or TALON_CONFIG)");
        };
        if let Err(e) = Config::load(path, &env) {
            eprintln!("{e}");
            std::process::exit(2);
        }
        println!("{}: ok", path.display());
        return Ok(());
    }
    let config = load_config(&cli, &env)?;
    if let Command::Dedup {
        url,
        token,
        command,
    } = &cli.command
    {
        let base = dedup_base(url.as_deref(), &config);
        let token = token
            .clone()
            .or_else(|| {
                talon_kit::config::split_tokens(&env, &config.dedup.tokens_env)
                    .into_iter()
                    .next()
            })
            .unwrap_or_default();
        return dedup(&base, &token, command).await;
    }
    let client = connect(&config, &env).await?;
    let js = nats::jetstream(client.clone());
    match cli.command {
        Command::CheckConfig | Command::HashPassword | Command::Dedup { .. } => {
            unreachable!("handled above")
        }
        Command::Clients {
            command: ClientsCommand::Import { file },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let clients =
                parse_inventory(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let store =
                talon_kit::streams::ensure_clients_bucket(&js, config.nats.stream_replicas).await?;
            for (id, info) in &clients {
                store
                    .put(id, serde_json::to_vec(info)?.into())
                    .await
                    .with_context(|| format!("cannot store client {id}"))?;
            }
            println!("imported {} clients", clients.len());
        }
        Command::Init => {
            talon_kit::streams::ensure_suite(&js, &config).await?;
            for spec in talon_kit::streams::suite_consumers(&config) {
                println!(
                    "consumer {} on {} ({})",
                    spec.durable,
                    spec.stream.name(),
                    spec.filter
                );
            }
            println!("streams and consumers ready");
        }
        Command::Alert {
            name,
            dedup,
            condition,
            client_id,
            artifact,
            artifact_type,
            fields,
        } => {
            let row = alert_row(AlertArgs {
                name,
                dedup,
                condition,
                client_id,
                artifact,
                artifact_type,
                fields,
            })?;
            let ack = js
                .publish(SUBJECT_ALERTS, serde_json::to_vec(&row)?.into())
                .await?
                .await
                .context("JetStream did not ack the alert (is the ALERTS stream there? run talonctl init)")?;
            println!("{}", ack.sequence);
        }
        Command::Event { artifact, fields } => {
            let (subject, row) = event_row(&artifact, &fields)?;
            let ack = js
                .publish(subject, serde_json::to_vec(&row)?.into())
                .await?
                .await
                .context("JetStream did not ack the row (is the MONITORING stream there? run talonctl init)")?;
            println!("{}", ack.sequence);
        }
        Command::Tail { subject, count } => {
            let mut sub = client.subscribe(subject.clone()).await?;
            let mut seen = 0usize;
            while let Some(msg) = sub.next().await {
                println!("{} {}", msg.subject, String::from_utf8_lossy(&msg.payload));
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
        }
        Command::Dlq {
            command: DlqCommand::Replay { stage, id },
        } => {
            let stream = js.get_stream(STREAM_DLQ).await.context("no DLQ stream")?;
            let (mut replayed, mut refused) = (0, 0);
            for (seq, letter) in read_dlq(&js, stage.as_deref()).await? {
                if let Some(id) = &id {
                    if seq.to_string() != *id && letter.alert_id.as_deref() != Some(id.as_str()) {
                        continue;
                    }
                }
                let subject = replay_subject(&letter);
                if !talon_proto::names::is_pipeline_input(&subject) {
                    // A dead letter is data like any other: it names where
                    // it came from, and that is only trusted if it is one of
                    // the pipeline's own inputs.
                    eprintln!(
                        "{seq}\t{}\trefused: {subject:?} is not one of the pipeline's inputs",
                        letter.stage
                    );
                    refused += 1;
                    continue;
                }
                let bytes = letter
                    .raw_bytes()
                    .with_context(|| format!("dead letter {seq}: bad raw_base64"))?;
                for (i, item) in replay_items(&letter, &bytes).into_iter().enumerate() {
                    let msg_id = match i {
                        0 => talon_proto::key::derived_msg_id("replay", &seq.to_string()),
                        i => talon_proto::key::derived_msg_id("replay", &format!("{seq}:{i}")),
                    };
                    js.send_publish(
                        subject.clone(),
                        async_nats::jetstream::message::PublishMessage::build()
                            .payload(item.to_vec().into())
                            .message_id(msg_id),
                    )
                    .await?
                    .await
                    .with_context(|| format!("dead letter {seq}: {subject} did not ack"))?;
                }
                stream
                    .delete_message(seq)
                    .await
                    .with_context(|| format!("dead letter {seq} replayed but not removed"))?;
                println!("{seq}\t{}\t-> {subject}", letter.stage);
                replayed += 1;
            }
            if refused > 0 {
                bail!("{refused} dead letter(s) refused: they name a subject outside the pipeline ({replayed} replayed)");
            }
            if replayed == 0 {
                bail!("no dead letter matched");
            }
        }
        Command::Dlq {
            command: DlqCommand::List { stage, json },
        } => {
            for (seq, letter) in read_dlq(&js, stage.as_deref()).await? {
                if json {
                    println!("{}", serde_json::to_string(&letter)?);
                } else {
                    println!(
                        "{seq}\t{}\t{}\t{}\t{}",
                        letter.received_at.to_rfc3339(),
                        letter.stage,
                        letter.alert_id.as_deref().unwrap_or("-"),
                        letter.reason
                    );
                }
            }
        }
    }
    Ok(())
}

/// `http://host:port/v1/windows` of the dedup replica.
fn dedup_base(url: Option<&str>, config: &Config) -> String {
    let addr = url.unwrap_or(&config.dedup.http_listen);
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        format!("{addr}/v1/windows")
    } else {
        format!("http://{addr}/v1/windows")
    }
}

async fn dedup(base: &str, token: &str, command: &DedupCommand) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let answer = |resp: reqwest::Response| async move {
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .context("the dedup API answered without JSON")?;
        if !status.is_success() {
            bail!(
                "{status}: {}",
                body.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason)")
            );
        }
        Ok(body)
    };
    match command {
        DedupCommand::List {
            prefix,
            all,
            limit,
            json,
        } => {
            let mut after: Option<String> = None;
            let mut printed = 0usize;
            loop {
                let page = limit.map_or(1000, |l| (l - printed).min(1000));
                let mut query = vec![
                    ("prefix", prefix.clone()),
                    ("limit", page.to_string()),
                    ("all", all.to_string()),
                ];
                if let Some(a) = &after {
                    query.push(("after", a.clone()));
                }
                let resp = http
                    .get(base)
                    .bearer_auth(token)
                    .query(&query)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach dedup at {base}"))?;
                let body = answer(resp).await?;
                for w in body
                    .get("windows")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if *json {
                        println!("{w}");
                    } else {
                        println!(
                            "{}\t{}\t{}\tsuppressed={}",
                            w["key"].as_str().unwrap_or(""),
                            w["window_start"].as_str().unwrap_or(""),
                            w["window_end"].as_str().unwrap_or(""),
                            w["suppressed"]
                        );
                    }
                    printed += 1;
                }
                match body.get("next").and_then(Value::as_str) {
                    Some(next) if limit.is_none_or(|l| printed < l) => {
                        after = Some(next.to_owned())
                    }
                    _ => break,
                }
            }
        }
        DedupCommand::Forget { key } => {
            let resp = http
                .delete(base)
                .bearer_auth(token)
                .query(&[("key", key)])
                .send()
                .await
                .with_context(|| format!("cannot reach dedup at {base}"))?;
            let body = answer(resp).await?;
            if body.get("forgotten").and_then(Value::as_bool) == Some(true) {
                println!("forgot {key:?}");
            } else {
                println!("{key:?} had no window");
            }
        }
    }
    Ok(())
}

/// The client records of a JSON-lines inventory, keyed by client id; the
/// first bad line is an error naming it.
fn parse_inventory(text: &str) -> Result<Vec<(String, talon_proto::ClientInfo)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let info: talon_proto::ClientInfo =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let id = match info.client_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => return Err(format!("line {}: client_id is missing", i + 1)),
        };
        out.push((id, info));
    }
    Ok(out)
}

struct AlertArgs {
    name: String,
    dedup: Option<i64>,
    condition: Option<bool>,
    client_id: Option<String>,
    artifact: Option<String>,
    artifact_type: Option<String>,
    fields: Vec<String>,
}

/// `KEY=VALUE` arguments as a JSON object, each value parsed as JSON where
/// it parses, else taken as a string.
fn parse_fields(fields: &[String]) -> anyhow::Result<Map<String, Value>> {
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

/// The subject and row of `talonctl event`: the given columns, plus `_ts`
/// (now, in epoch seconds) unless given.
fn event_row(artifact: &str, fields: &[String]) -> anyhow::Result<(String, Value)> {
    if !is_artifact_name(artifact) {
        bail!(
            "{artifact:?} is not an artifact name (dot-separated parts of A-Z, a-z, 0-9, _ and -)"
        );
    }
    let mut row = parse_fields(fields)?;
    row.entry("_ts")
        .or_insert_with(|| chrono::Utc::now().timestamp().into());
    Ok((monitoring_subject(artifact), Value::Object(row)))
}

/// A Velociraptor queue row for `talonctl alert`.
fn alert_row(args: AlertArgs) -> anyhow::Result<Value> {
    let event_data = parse_fields(&args.fields)?;
    let mut row = Map::new();
    row.insert("name".into(), args.name.into());
    row.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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

/// What a replayed dead letter publishes: its input, or for HTTP input
/// (one dead letter per request, its rejected items one per line) each
/// item on its own.
fn replay_items<'a>(letter: &DeadLetter, raw: &'a [u8]) -> Vec<&'a [u8]> {
    if letter.subject.starts_with("http:") {
        raw.split(|b| *b == b'\n')
            .filter(|item| !item.iter().all(u8::is_ascii_whitespace))
            .collect()
    } else {
        vec![raw]
    }
}

/// Where a replayed dead letter goes: its own subject, or for HTTP input
/// (which has none) the subject its endpoint publishes to:
/// `Server.Internal.Alerts`, or `Monitoring.<ArtifactName>` for
/// `/v1/events/<ArtifactName>`.
fn replay_subject(letter: &DeadLetter) -> String {
    if let Some(artifact) = letter.subject.strip_prefix(HTTP_EVENTS_ORIGIN_PREFIX) {
        monitoring_subject(artifact)
    } else if letter.subject.starts_with("http:") {
        SUBJECT_ALERTS.to_owned()
    } else {
        letter.subject.clone()
    }
}

/// Every dead letter (of `stage`, or of all stages) with its DLQ sequence.
async fn read_dlq(
    js: &jetstream::Context,
    stage: Option<&str>,
) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
    let stream = js
        .get_stream(STREAM_DLQ)
        .await
        .context("no DLQ stream (run talonctl init)")?;
    let filter = match stage {
        Some(s) => format!("{SUBJECT_DLQ_PREFIX}.{s}"),
        None => format!("{SUBJECT_DLQ_PREFIX}.*"),
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    let mut messages = consumer.messages().await?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
        let Ok(Some(msg)) = next else { break };
        let msg = msg?;
        let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        match serde_json::from_slice::<DeadLetter>(&msg.payload) {
            Ok(letter) => out.push((seq, letter)),
            Err(e) => eprintln!("DLQ message {seq} is not a dead-letter record: {e}"),
        }
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_fields_parse_as_json_where_they_can() {
        let row = alert_row(AlertArgs {
            name: "Honey".into(),
            dedup: Some(-1),
            condition: None,
            client_id: None,
            artifact: Some("A".into()),
            artifact_type: None,
            fields: vec![
                "Pid=42".into(),
                "Name=evil.exe".into(),
                "Tags=[\"a\"]".into(),
                "Eq=a=b".into(),
            ],
        })
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
    fn inventory_lines_are_checked_before_anything_is_written() {
        let good = "{\"client_id\":\"C.1\",\"hostname\":\"web-1\",\"labels\":[\"prod\"]}\n\n{\"client_id\":\"C.2\"}\n";
        let parsed = parse_inventory(good).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].1.hostname.as_deref(), Some("web-1"));
        assert_eq!(
            parse_inventory("{\"hostname\":\"x\"}").unwrap_err(),
            "line 1: client_id is missing"
        );
        assert!(
            parse_inventory("{\"client_id\":\"C.1\"}\n{\"client_id\":\"C.2\",\"colour\":1}")
                .unwrap_err()
                .starts_with("line 2: unknown field `colour`")
        );
    }

    #[test]
    fn event_rows_carry_the_columns_and_a_ts() {
        let (subject, row) = event_row(
            "Linux.Detection.Honeyfiles",
            &["FileName=/h".into(), "Pid=42".into(), "ClientId=C.1".into()],
        )
        .unwrap();
        assert_eq!(subject, "Monitoring.Linux.Detection.Honeyfiles");
        assert_eq!(row["FileName"], "/h");
        assert_eq!(row["Pid"], 42);
        assert!(row["_ts"].as_i64().unwrap() > 1_700_000_000);
        let (_, row) = event_row("A", &["_ts=5".into()]).unwrap();
        assert_eq!(row["_ts"], 5);
        assert!(event_row("A..B", &[])
            .unwrap_err()
            .to_string()
            .contains("not an artifact name"));
        assert!(event_row("A", &["x".into()]).is_err());
    }

    #[test]
    fn an_http_dead_letter_replays_each_item() {
        let http = DeadLetter::new("ingest", "r", "http:/v1/alerts", None, b"");
        let items = replay_items(&http, b"{\"name\":\"\"}\n7\n\n{\"a\":\"x\\ny\"}");
        assert_eq!(items, [&b"{\"name\":\"\"}"[..], b"7", b"{\"a\":\"x\\ny\"}"]);
        let nats = DeadLetter::new("ingest", "r", "Server.Internal.Alerts", Some(1), b"");
        assert_eq!(replay_items(&nats, b"a\nb"), [&b"a\nb"[..]]);
    }

    #[test]
    fn http_dead_letters_replay_to_their_endpoint_subject() {
        let letter = |subject: &str| DeadLetter::new("rules", "r", subject, None, b"{}");
        assert_eq!(
            replay_subject(&letter("http:/v1/events/Linux.Detection.Honeyfiles")),
            "Monitoring.Linux.Detection.Honeyfiles"
        );
        assert_eq!(replay_subject(&letter("http:/v1/alerts")), SUBJECT_ALERTS);
        assert_eq!(replay_subject(&letter("Monitoring.A")), "Monitoring.A");
    }

    #[test]
    fn a_field_without_equals_is_an_error() {
        let args = AlertArgs {
            name: "n".into(),
            dedup: None,
            condition: None,
            client_id: None,
            artifact: None,
            artifact_type: None,
            fields: vec!["oops".into()],
        };
        assert!(alert_row(args)
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
    }
}
