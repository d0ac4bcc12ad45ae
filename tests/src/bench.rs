//! What the benchmarks share: reading the machine and processes from /proc,
//! publishing a load, a raw JetStream hop to compare talon's stages with.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, message::PublishMessage};
use futures::StreamExt;

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

/// Publishes `payloads` to `subject` with at most `in_flight` acks
/// outstanding, and waits for every ack.
pub async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: impl IntoIterator<Item = bytes::Bytes>,
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut acks = std::collections::VecDeque::with_capacity(in_flight);
    for payload in payloads {
        if acks.len() >= in_flight {
            if let Some(ack) = acks.pop_front() {
                ack.await?;
            }
        }
        acks.push_back(js.publish(subject.to_owned(), payload).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
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
/// stages: pull up to `batch` from `consumer`, publish each payload
/// unchanged to `to` with a `Nats-Msg-Id`, await the acks, then ack the
/// inputs. Returns once `n` inputs are done.
pub async fn republish(
    js: jetstream::Context,
    consumer: consumer::PullConsumer,
    to: String,
    batch: usize,
    n: usize,
) -> anyhow::Result<()> {
    let mut done = 0;
    let mut chunks = pull_chunks(&consumer, batch).await?;
    while done < n {
        let Some(msgs) = chunks.next().await else {
            anyhow::bail!("the hop's pull ended after {done} of {n}");
        };
        let mut acks = Vec::with_capacity(msgs.len());
        for msg in &msgs {
            let seq = msg.info().map_or(0, |i| i.stream_sequence);
            let message = PublishMessage::build()
                .payload(msg.payload.clone())
                .message_id(format!("{to}-{seq}"));
            acks.push(js.send_publish(to.clone(), message).await?);
        }
        for (msg, ack) in msgs.iter().zip(acks) {
            ack.await?;
            msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            done += 1;
        }
    }
    Ok(())
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
