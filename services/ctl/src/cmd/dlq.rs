//! `talonctl dlq`: list the dead-letter queue, replay its letters.

use std::time::Duration;

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer, stream::Stream};
use clap::Subcommand;
use futures::StreamExt;
use talon_proto::names::{
    is_pipeline_input, monitoring_subject, HTTP_EVENTS_ORIGIN_PREFIX, STREAM_DLQ, SUBJECT_ALERTS,
    SUBJECT_DLQ_PREFIX,
};
use talon_proto::DeadLetter;

use crate::cmd::Nats;

/// Arguments of `talonctl dlq`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List dead letters, oldest first.
    List(ListArgs),
    /// Put dead letters back on the subject they came from (a notify one
    /// back on its channel), then remove them from the queue.
    Replay(ReplayArgs),
}

/// Arguments of `talonctl dlq list`.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// ingest, rules, dedup, enrich or notify.
    #[arg(long)]
    stage: Option<String>,
    /// Print whole records as JSON lines.
    #[arg(long)]
    json: bool,
}

/// Arguments of `talonctl dlq replay`.
#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Only this stage's.
    #[arg(long)]
    stage: Option<String>,
    /// Only the dead letter with this DLQ sequence or alert id.
    #[arg(long)]
    id: Option<String>,
}

/// Runs the `dlq` subcommand given.
pub async fn run(args: Args, nats: &Nats) -> anyhow::Result<()> {
    match args.command {
        Command::List(args) => list(args, &nats.js).await,
        Command::Replay(args) => replay(args, &nats.js).await,
    }
}

/// Prints the dead letters, a line each or as JSON lines.
async fn list(args: ListArgs, js: &jetstream::Context) -> anyhow::Result<()> {
    for (seq, letter) in read_dlq(js, args.stage.as_deref()).await? {
        if args.json {
            println!("{}", serde_json::to_string(&letter)?);
        } else {
            println!("{}", list_line(seq, &letter));
        }
    }
    Ok(())
}

/// `SEQ  RECEIVED_AT  STAGE  ALERT_ID  REASON`, tab-separated, `-` for no
/// alert id.
fn list_line(seq: u64, letter: &DeadLetter) -> String {
    format!(
        "{seq}\t{}\t{}\t{}\t{}",
        letter.received_at.to_rfc3339(),
        letter.stage,
        letter.alert_id.as_deref().unwrap_or("-"),
        letter.reason
    )
}

/// Replays the selected dead letters, a line each on standard output; one
/// naming a subject outside the pipeline is refused on standard error and
/// makes the whole run fail, after the others have been replayed.
async fn replay(args: ReplayArgs, js: &jetstream::Context) -> anyhow::Result<()> {
    let stream = js.get_stream(STREAM_DLQ).await.context("no DLQ stream")?;
    let (mut replayed, mut refused) = (0, 0);
    for (seq, letter) in read_dlq(js, args.stage.as_deref()).await? {
        if !selected(seq, &letter, args.id.as_deref()) {
            continue;
        }
        let subject = replay_subject(&letter);
        if !is_pipeline_input(&subject) {
            // A dead letter is data like any other: it names where it came
            // from, and that is only trusted if it is one of the pipeline's
            // own inputs.
            eprintln!(
                "{seq}\t{}\trefused: {subject:?} is not one of the pipeline's inputs",
                letter.stage
            );
            refused += 1;
            continue;
        }
        replay_one(js, &stream, seq, &letter, &subject).await?;
        println!("{seq}\t{}\t-> {subject}", letter.stage);
        replayed += 1;
    }
    replay_outcome(replayed, refused)
}

/// Is the dead letter at `seq` one `--id` asks for (any, without it)?
fn selected(seq: u64, letter: &DeadLetter, id: Option<&str>) -> bool {
    id.is_none_or(|id| seq.to_string() == id || letter.alert_id.as_deref() == Some(id))
}

/// Publishes the dead letter's input on `subject`, waiting for each ack,
/// then removes it from the queue.
async fn replay_one(
    js: &jetstream::Context,
    stream: &Stream,
    seq: u64,
    letter: &DeadLetter,
    subject: &str,
) -> anyhow::Result<()> {
    let bytes = letter
        .raw_bytes()
        .with_context(|| format!("dead letter {seq}: bad raw_base64"))?;
    for (i, item) in replay_items(letter, &bytes).into_iter().enumerate() {
        js.send_publish(
            subject.to_owned(),
            jetstream::message::PublishMessage::build()
                .payload(item.to_vec().into())
                .message_id(replay_msg_id(seq, i)),
        )
        .await?
        .await
        .with_context(|| format!("dead letter {seq}: {subject} did not ack"))?;
    }
    stream
        .delete_message(seq)
        .await
        .with_context(|| format!("dead letter {seq} replayed but not removed"))?;
    Ok(())
}

/// The `Nats-Msg-Id` of item `i` of the dead letter at `seq`: a replay
/// repeated within the duplicate window publishes nothing twice.
fn replay_msg_id(seq: u64, i: usize) -> String {
    match i {
        0 => talon_proto::key::derived_msg_id(
            talon_proto::names::MsgIdDomain::Replay,
            &seq.to_string(),
        ),
        i => talon_proto::key::derived_msg_id(
            talon_proto::names::MsgIdDomain::Replay,
            &format!("{seq}:{i}"),
        ),
    }
}

/// The end of a replay: an error if any dead letter was refused, or if none
/// matched.
fn replay_outcome(replayed: usize, refused: usize) -> anyhow::Result<()> {
    if refused > 0 {
        bail!("{refused} dead letter(s) refused: they name a subject outside the pipeline ({replayed} replayed)");
    }
    if replayed == 0 {
        bail!("no dead letter matched");
    }
    Ok(())
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
    fn an_http_dead_letter_replays_each_item() {
        let http = DeadLetter::new(
            talon_proto::names::Stage::Ingest,
            "r",
            "http:/v1/alerts",
            None,
            b"",
        );
        let items = replay_items(&http, b"{\"name\":\"\"}\n7\n\n{\"a\":\"x\\ny\"}");
        assert_eq!(items, [&b"{\"name\":\"\"}"[..], b"7", b"{\"a\":\"x\\ny\"}"]);
        let nats = DeadLetter::new(
            talon_proto::names::Stage::Ingest,
            "r",
            "Server.Internal.Alerts",
            Some(1),
            b"",
        );
        assert_eq!(replay_items(&nats, b"a\nb"), [&b"a\nb"[..]]);
    }

    #[test]
    fn http_dead_letters_replay_to_their_endpoint_subject() {
        let letter = |subject: &str| {
            DeadLetter::new(talon_proto::names::Stage::Rules, "r", subject, None, b"{}")
        };
        assert_eq!(
            replay_subject(&letter("http:/v1/events/Linux.Detection.Honeyfiles")),
            "Monitoring.Linux.Detection.Honeyfiles"
        );
        assert_eq!(replay_subject(&letter("http:/v1/alerts")), SUBJECT_ALERTS);
        assert_eq!(replay_subject(&letter("Monitoring.A")), "Monitoring.A");
    }

    #[test]
    fn id_selects_by_sequence_or_alert_id() {
        let mut letter = DeadLetter::new(
            talon_proto::names::Stage::Notify,
            "r",
            "talon.notify.hook",
            None,
            b"{}",
        );
        letter.alert_id = Some("bad-1".into());
        assert!(selected(7, &letter, None));
        assert!(selected(7, &letter, Some("7")));
        assert!(selected(7, &letter, Some("bad-1")));
        assert!(!selected(7, &letter, Some("8")));
        assert!(!selected(7, &letter, Some("bad")));
        letter.alert_id = None;
        assert!(!selected(7, &letter, Some("bad-1")));
    }

    #[test]
    fn replayed_items_have_stable_distinct_msg_ids() {
        assert_eq!(replay_msg_id(5, 0), replay_msg_id(5, 0));
        assert_eq!(
            replay_msg_id(5, 0),
            talon_proto::key::derived_msg_id(talon_proto::names::MsgIdDomain::Replay, "5")
        );
        assert_eq!(
            replay_msg_id(5, 1),
            talon_proto::key::derived_msg_id(talon_proto::names::MsgIdDomain::Replay, "5:1")
        );
        assert_ne!(replay_msg_id(5, 0), replay_msg_id(6, 0));
    }

    #[test]
    fn a_refusal_or_no_match_fails_the_replay() {
        assert!(replay_outcome(2, 0).is_ok());
        assert_eq!(
            replay_outcome(1, 2).unwrap_err().to_string(),
            "2 dead letter(s) refused: they name a subject outside the pipeline (1 replayed)"
        );
        assert_eq!(
            replay_outcome(0, 0).unwrap_err().to_string(),
            "no dead letter matched"
        );
    }

    #[test]
    fn a_list_line_is_tab_separated_with_a_dash_for_no_alert_id() {
        let letter = DeadLetter::new(
            talon_proto::names::Stage::Ingest,
            "bad JSON",
            "Server.Internal.Alerts",
            None,
            b"",
        );
        let line = list_line(3, &letter);
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 5, "{line}");
        assert_eq!(cols[0], "3");
        assert_eq!(cols[1], letter.received_at.to_rfc3339());
        assert_eq!(cols[2..], ["ingest", "-", "bad JSON"]);
    }
}
