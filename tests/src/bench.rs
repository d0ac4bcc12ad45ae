//! What the benchmarks share: the flags every bench binary takes, reading
//! the machine and processes from /proc, publishing a load, watching a
//! stream fill, a raw JetStream hop to compare talon's stages with.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use async_nats::ToSubject;
use futures::StreamExt;
use talon_proto::names::DUPLICATE_WINDOW;
use talon_proto::Alert;

/// What every bench binary's arguments have in common, flattened into each
/// bench's own: `cargo bench` passes `--bench` to every bench binary (as it
/// would to libtest's), and it means nothing here.
#[derive(clap::Args, Debug)]
pub struct Cargo {
    #[arg(long, hide = true, overrides_with = "bench")]
    pub bench: bool,
}

/// A count of at least `MIN`, as a flag's `value_parser`: the benches
/// divide by their counts, and some need more than one of a kind.
pub fn at_least<const MIN: usize>(arg: &str) -> Result<usize, String> {
    let n: usize = arg.parse().map_err(|_| "needs a number".to_owned())?;
    if n < MIN {
        return Err(format!("must be at least {MIN}"));
    }
    Ok(n)
}

/// Logs to stderr, warnings and up unless `RUST_LOG` says otherwise, so the
/// services' logs stay out of the figures printed on stdout.
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `nats-server --version` of the server the harness starts.
pub fn nats_server_version() -> String {
    crate::nats::nats_binary()
        .ok()
        .and_then(|bin| {
            std::process::Command::new(bin)
                .arg("--version")
                .output()
                .ok()
        })
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Publishes `messages` to `subject` with at most `in_flight` acks
/// outstanding, and waits for every ack.
pub async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    messages: impl IntoIterator<Item = PublishMessage>,
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut acks = std::collections::VecDeque::with_capacity(in_flight);
    for message in messages {
        if acks.len() >= in_flight {
            if let Some(ack) = acks.pop_front() {
                ack.await?;
            }
        }
        acks.push_back(js.send_publish(subject.to_owned(), message).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// `publish_all` of `alerts`, each serialized as it is published with its
/// id as `Nats-Msg-Id`, as ingest and dedup publish them.
pub async fn publish_alerts(
    js: &jetstream::Context,
    subject: &str,
    alerts: impl IntoIterator<Item = Alert>,
    in_flight: usize,
) -> anyhow::Result<()> {
    let messages = alerts.into_iter().map(|alert| {
        let body = serde_json::to_vec(&alert).expect("an Alert serializes");
        PublishMessage::build()
            .payload(body.into())
            .message_id(&alert.id)
    });
    publish_all(js, subject, messages, in_flight).await
}

/// A file-backed work-queue stream, duplicates detected over talon's
/// window: the shape of the streams between talon's stages.
pub fn work_queue(name: &str, subjects: Vec<String>) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects,
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// What `consumer` delivers, in chunks of up to `batch` as they are
/// ready (pull requests of `batch`, errors left out).
pub async fn pull_chunks(
    consumer: &consumer::PullConsumer,
    batch: usize,
) -> anyhow::Result<futures::stream::BoxStream<'static, Vec<jetstream::Message>>> {
    let messages = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    Ok(messages
        .ready_chunks(batch)
        .map(|chunk| chunk.into_iter().filter_map(Result::ok).collect())
        .boxed())
}

/// A raw consume-and-republish hop in the shape of talon's stateless
/// stages: pull up to `batch` from `consumer`, publish what `outputs` makes
/// of each input (called with the input and its stream sequence; one
/// subject and message per output, usually the payload unchanged with a
/// `Nats-Msg-Id`), await the acks, then ack the inputs, each once all its
/// outputs are acked. Returns once `n` inputs are done.
pub async fn republish<O, S>(
    js: jetstream::Context,
    consumer: consumer::PullConsumer,
    batch: usize,
    n: usize,
    mut outputs: impl FnMut(&jetstream::Message, u64) -> O,
) -> anyhow::Result<()>
where
    O: IntoIterator<Item = (S, PublishMessage)>,
    S: ToSubject,
{
    let mut done = 0;
    let mut chunks = pull_chunks(&consumer, batch).await?;
    while done < n {
        let Some(msgs) = chunks.next().await else {
            anyhow::bail!("the hop's pull ended after {done} of {n}");
        };
        let mut acks = Vec::with_capacity(msgs.len());
        // How many of `acks` are each input's.
        let mut per_input = Vec::with_capacity(msgs.len());
        for msg in &msgs {
            let seq = msg.info().map_or(0, |i| i.stream_sequence);
            let before = acks.len();
            for (subject, message) in outputs(msg, seq) {
                acks.push(js.send_publish(subject, message).await?);
            }
            per_input.push(acks.len() - before);
        }
        let mut acks = acks.into_iter();
        for (msg, count) in msgs.iter().zip(per_input) {
            for ack in acks.by_ref().take(count) {
                ack.await?;
            }
            msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            done += 1;
        }
    }
    Ok(())
}

/// What a poll of a stream filling up saw.
pub struct Progress {
    /// When a poll first saw a message in it, and how many.
    pub first: Instant,
    pub first_count: u64,
    /// When a poll first saw all of them.
    pub done: Instant,
}

/// Polls `stream` every `poll` until it holds `n` messages; gives up after
/// `deadline`.
pub async fn watch(
    js: jetstream::Context,
    stream: &'static str,
    n: u64,
    poll: Duration,
    deadline: Duration,
) -> anyhow::Result<Progress> {
    let give_up = Instant::now() + deadline;
    let mut first = None;
    loop {
        let have = crate::stream_messages(&js, stream).await;
        let now = Instant::now();
        if have > 0 && first.is_none() {
            first = Some((now, have));
        }
        if let (true, Some((first, first_count))) = (have >= n, first) {
            return Ok(Progress {
                first,
                first_count,
                done: now,
            });
        }
        if now > give_up {
            anyhow::bail!("{stream} holds {have} of {n} messages after {deadline:?}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// The `p`-th percentile (0–100) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// CPU seconds (user + system) used so far by process `pid`, from
/// `/proc/<pid>/stat` (in USER_HZ = 100 ticks; Linux only).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state ppid ... utime (14th) stime (15th).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds of nats-server and of this process (the bench's own hops,
/// pollers and clients, and any service it runs in-process).
#[derive(Clone, Copy)]
pub struct Cpu {
    pub server: f64,
    pub bench: f64,
}

impl Cpu {
    /// Both so far; NaN where /proc cannot tell.
    pub fn now(server_pid: Option<u32>) -> Cpu {
        Cpu {
            server: server_pid.and_then(cpu_seconds).unwrap_or(f64::NAN),
            bench: cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
        }
    }

    /// What was used between `before` and `self`.
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            bench: self.bench - before.bench,
        }
    }
}

/// The nats-server the harness started: our child named `nats-server`.
pub fn nats_server_pid() -> Option<u32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (comm, rest) = stat.split_once(") ")?;
            let ppid = rest.split_whitespace().nth(1)?;
            (comm.ends_with("(nats-server") && ppid == me).then_some(pid)
        })
}
