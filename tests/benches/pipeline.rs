//! The whole pipeline end to end, next to a raw JetStream baseline of the
//! same shape, in one run on one machine.
//!
//! `cargo bench -p talon-tests --bench pipeline [-- --alerts N --rate R --seconds S]`
//!
//! Twice, against a fresh nats-server each: with NATS's default sync, and
//! with `sync_interval: always` (every write fsynced before its ack).
//!
//! 1. baseline: four raw consume-and-republish hops, each a durable pull
//!    consumer (batches of 512, publish, await the acks, ack the inputs),
//!    `BENCH_0 → BENCH_1 → BENCH_2 → BENCH_3`, and a last hop that POSTs
//!    each message to a local web hook receiver (64 at once) and acks it;
//! 2. talon: ingest, dedup, enrich and notify, one replica each (in this
//!    process), one web hook channel to a local receiver, `rate_per_minute
//!    = 0`, `max_in_flight = 64`; every alert has its own name, so each
//!    opens a window and is delivered.
//!
//! Throughput: N alerts published as fast as acks allow (1,000 in flight),
//! timed from the first publish to the N-th receipt at the receiver, after
//! a warm-up of 2,000. Latency: R alerts/s offered for S seconds, each
//! carrying its publish time; latency is receipt minus publish, p50 and
//! p99. Nothing is asserted on timing: this prints numbers for a human.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream::{self, consumer, message::PublishMessage};
use clap::Parser;
use futures::StreamExt;
use talon_kit::Env;
use talon_proto::names::SUBJECT_ALERTS;
use talon_tests::bench::{
    at_least, cpu_model, nats_server_version, percentile, publish_all, pull_chunks, republish,
    work_queue,
};
use talon_tests::receiver::Receiver;
use talon_tests::{dedup_table, start_dedup, start_enrich, start_ingest, start_notify, NatsServer};

const HOPS: usize = 4;
/// The republishing hops' batch, as ingest's and enrich's.
const BATCH: usize = 512;
/// Deliveries at once, the baseline's sink and notify's `max_in_flight`.
const IN_FLIGHT: usize = 64;
const PUBLISH_IN_FLIGHT: usize = 1_000;
const WARM_UP: usize = 2_000;
const POLL: Duration = Duration::from_millis(20);
const DEADLINE: Duration = Duration::from_secs(180);

/// The whole pipeline end to end, next to a raw JetStream baseline.
#[derive(Parser)]
#[command(bin_name = "cargo bench -p talon-tests --bench pipeline --")]
struct Args {
    /// Alerts published as fast as acks allow, for throughput.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = at_least::<1>)]
    alerts: usize,
    /// Alerts per second offered for latency.
    #[arg(
        long,
        value_name = "R",
        default_value_t = 500.0,
        value_parser = positive,
        allow_negative_numbers = true
    )]
    rate: f64,
    /// Seconds the latency rate is offered for.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 20.0,
        value_parser = positive,
        allow_negative_numbers = true
    )]
    seconds: f64,
    #[command(flatten)]
    _cargo: talon_tests::bench::Cargo,
}

/// A positive number, as a flag's `value_parser`.
fn positive(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        Ok(_) => Err("must be positive".to_owned()),
        Err(_) => Err("needs a number".to_owned()),
    }
}

/// A raw alert named `name`, published `t` µs after the run's origin.
fn payload(name: &str, t: u128) -> bytes::Bytes {
    format!(
        r#"{{"client_id":"server","name":"{name}","event_data":{{"t":{t},"FileName":"/home/user/honey.docx","Pid":4120}},"artifact":"Linux.Detection.Honeyfiles","artifact_type":"CLIENT_EVENT"}}"#
    )
    .into_bytes()
    .into()
}

/// Where a run publishes and how its receipts are seen.
struct Target<'a> {
    js: &'a jetstream::Context,
    subject: &'a str,
    hook: &'a Receiver,
    origin: Instant,
}

impl Target<'_> {
    /// Waits until the receiver has `n` requests.
    async fn wait_receipts(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while self.hook.count() < n {
            if Instant::now() > deadline {
                bail!("{} of {n} receipts after {DEADLINE:?}", self.hook.count());
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// Publishes `n` alerts (names `<tag>-<i>`) as fast as acks allow;
    /// returns alerts/s from the first publish to the last receipt.
    async fn throughput(&self, tag: &str, n: usize) -> anyhow::Result<f64> {
        let before = self.hook.count();
        let started = Instant::now();
        let t = self.origin.elapsed().as_micros();
        let messages =
            (0..n).map(|i| PublishMessage::build().payload(payload(&format!("{tag}-{i}"), t)));
        publish_all(self.js, self.subject, messages, PUBLISH_IN_FLIGHT).await?;
        self.wait_receipts(before + n).await?;
        let last = self.hook.hits()[before..]
            .iter()
            .map(|h| h.at)
            .max()
            .unwrap_or_else(Instant::now);
        Ok(n as f64 / (last - started).as_secs_f64())
    }

    /// Offers `rate` alerts/s for `seconds`; returns the sorted latencies.
    async fn latency(&self, tag: &str, rate: f64, seconds: f64) -> anyhow::Result<Vec<Duration>> {
        let n = (rate * seconds) as usize;
        let before = self.hook.count();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut acks = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            let t = self.origin.elapsed().as_micros();
            let ack = self
                .js
                .publish(self.subject.to_owned(), payload(&format!("{tag}-{i}"), t))
                .await?;
            acks.push(tokio::spawn(async move { ack.await }));
        }
        for ack in acks {
            ack.await??;
        }
        self.wait_receipts(before + n).await?;
        let mut latencies: Vec<Duration> = self.hook.hits()[before..]
            .iter()
            .map(|h| {
                let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap_or_default();
                let t = body["event_data"]["t"].as_u64().unwrap_or(0);
                (h.at - self.origin).saturating_sub(Duration::from_micros(t))
            })
            .collect();
        latencies.sort();
        Ok(latencies)
    }
}

/// The baseline's last hop: POST each message to `url` (a batch at once),
/// ack it once answered 2xx. Runs until `n` are done.
async fn sink(consumer: consumer::PullConsumer, url: String, n: usize) -> anyhow::Result<()> {
    let http = talon_kit::outbound::client();
    let mut chunks = pull_chunks(&consumer, IN_FLIGHT).await?;
    let mut done = 0;
    while done < n {
        let Some(msgs) = chunks.next().await else {
            bail!("the sink's pull ended after {done} of {n}");
        };
        let posts = msgs.iter().map(|m| {
            http.post(&url)
                .header("content-type", "application/json")
                .body(m.payload.clone())
                .send()
        });
        for (msg, answer) in msgs.iter().zip(futures::future::join_all(posts).await) {
            if answer?.status().is_success() {
                msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                done += 1;
            }
        }
    }
    Ok(())
}

struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(target: &Target<'_>, args: &Args, tag: &str) -> anyhow::Result<Measured> {
    target.throughput(&format!("{tag}-warm"), WARM_UP).await?;
    let per_second = target
        .throughput(&format!("{tag}-run"), args.alerts)
        .await?;
    let latencies = target
        .latency(&format!("{tag}-rate"), args.rate, args.seconds)
        .await?;
    Ok(Measured {
        per_second,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
    })
}

async fn baseline(nats: &NatsServer, args: &Args) -> anyhow::Result<Measured> {
    let js = jetstream::new(nats.client().await);
    let hook = Receiver::start(vec![]).await;
    let total = WARM_UP + args.alerts + (args.rate * args.seconds) as usize;
    let mut hops = Vec::new();
    for h in 0..HOPS {
        let stream = js
            .create_stream(work_queue(
                &format!("BENCH_{h}"),
                vec![format!("bench.hop.{h}")],
            ))
            .await?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(format!("hop-{h}")),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 10_000,
                ..Default::default()
            })
            .await?;
        hops.push(if h + 1 < HOPS {
            // Each payload unchanged to the next hop's stream.
            let to = format!("bench.hop.{}", h + 1);
            let outputs = move |msg: &jetstream::Message, seq: u64| {
                let message = PublishMessage::build()
                    .payload(msg.payload.clone())
                    .message_id(format!("{to}-{seq}"));
                [(to.clone(), message)]
            };
            tokio::spawn(republish(js.clone(), consumer, BATCH, total, outputs))
        } else {
            tokio::spawn(sink(consumer, hook.url("/sink"), total))
        });
    }
    let target = Target {
        js: &js,
        subject: "bench.hop.0",
        hook: &hook,
        origin: Instant::now(),
    };
    let measured = measure(&target, args, "raw").await?;
    for hop in hops {
        hop.await??;
    }
    Ok(measured)
}

async fn talon(nats: &NatsServer, args: &Args) -> anyhow::Result<Measured> {
    let hook = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n{}\n[enrich]\nhttp_listen = \"127.0.0.1:0\"\n\
         [notify]\nhttp_listen = \"127.0.0.1:0\"\n\n[[channels]]\nid = \"hook\"\nkind = \"webhook\"\n\
         url = \"{}\"\nrate_per_minute = 0\nmax_in_flight = {IN_FLIGHT}\n",
        dedup_table(dir.path()),
        hook.url("/talon")
    );
    let ingest = start_ingest(nats, &config, Env::default()).await;
    let dedup = start_dedup(nats, &config).await;
    let enrich = start_enrich(nats, &config).await;
    let notify = start_notify(nats, &config, Env::default()).await;
    let js = jetstream::new(nats.client().await);
    let target = Target {
        js: &js,
        subject: SUBJECT_ALERTS,
        hook: &hook,
        origin: Instant::now(),
    };
    let measured = measure(&target, args, "talon").await?;
    for service in [notify, enrich, dedup, ingest] {
        service.stop().await?;
    }
    Ok(measured)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn print_table(args: &Args, runs: &[(&str, Measured, Measured)]) {
    let header: Vec<&str> = runs.iter().map(|(mode, _, _)| *mode).collect();
    println!("\n| | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(runs.len()));
    let row = |what: &str, cell: &dyn Fn(&Measured, &Measured) -> String| {
        let cells: Vec<String> = runs.iter().map(|(_, b, t)| cell(b, t)).collect();
        println!("| {what} | {} |", cells.join(" | "));
    };
    row("baseline: 4 raw hops + web hook sink, msgs/s", &|b, _| {
        format!("{:.0}", b.per_second)
    });
    row("talon, publish → web hook, alerts/s", &|b, t| {
        format!(
            "{:.0} ({:.2}× baseline)",
            t.per_second,
            t.per_second / b.per_second
        )
    });
    let at = format!("{:.0}/s", args.rate);
    row(&format!("baseline latency p50 / p99 at {at}"), &|b, _| {
        format!("{} / {}", ms(b.p50), ms(b.p99))
    });
    row(&format!("talon latency p50 / p99 at {at}"), &|b, t| {
        format!(
            "{} / {} ({:.1}× / {:.1}× baseline)",
            ms(t.p50),
            ms(t.p99),
            t.p50.as_secs_f64() / b.p50.as_secs_f64().max(1e-9),
            t.p99.as_secs_f64() / b.p99.as_secs_f64().max(1e-9)
        )
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "pipeline bench: {} alerts for throughput, {:.0} alerts/s for {:.0} s for latency",
        args.alerts, args.rate, args.seconds
    );
    println!(
        "machine: {} ({cores} cores), {}, load average at start {}",
        cpu_model(),
        nats_server_version(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut runs = Vec::new();
    for (mode, jetstream_conf) in [
        ("NATS defaults", ""),
        ("sync_interval: always", "sync_interval: always"),
    ] {
        let nats = NatsServer::start_jetstream_with(jetstream_conf).await;
        println!("{mode}: baseline …");
        let b = baseline(&nats, &args).await?;
        drop(nats);
        let nats = NatsServer::start_jetstream_with(jetstream_conf).await;
        println!("{mode}: talon …");
        let t = talon(&nats, &args).await?;
        runs.push((mode, b, t));
    }
    print_table(&args, &runs);
    Ok(())
}
