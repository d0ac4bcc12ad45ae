//! ingest's throughput next to a raw JetStream baseline, measured in one run
//! against one fresh nats-server.
//!
//! `cargo bench -p talon-tests --bench ingest [-- --alerts N --http-alerts M]`
//!
//! 1. baseline: a durable pull consumer on `BENCH_IN` that republishes each
//!    payload unchanged to the work-queue stream `BENCH_OUT` with a
//!    `Nats-Msg-Id`, in the shape of ingest's `consume.rs` (batches of 512,
//!    publish all, await the acks, ack the inputs) but with no parsing;
//! 2. hop + decide(): the same hop, but each output is what ingest makes of
//!    the input (`process::decide`, then the Alert serialized): its distance
//!    to the baseline is ingest's per-alert work, its distance to ingest
//!    (NATS) ingest's plumbing;
//! 3. ingest (NATS): a backlog of N rows in `ALERTS`, then ingest started
//!    in-process, timed until `ACCEPTED` holds N;
//! 4. ingest (HTTP edge): 4 clients POST arrays of 500 alerts until M are
//!    202'd (ingest's consumer forwards them at the same time, as it would
//!    in production).
//!
//! The NATS measurements include creating the consumer (for ingest: starting
//! it) and stop when a 20 ms poll of the output stream sees all N messages;
//! CPU time of nats-server and of this process is read from /proc. Nothing
//! is asserted on timing: this prints numbers for a human to read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use clap::Parser;
use talon_ingest::process::{decide, Decision, Input, Settings};
use talon_kit::streams::{ensure_stream, Stream};
use talon_kit::Env;
use talon_proto::names::{DUPLICATE_WINDOW, STREAM_ACCEPTED, SUBJECT_ALERTS};
use talon_tests::bench::{
    at_least, cpu_model, log_to_stderr, nats_server_pid, publish_all, republish, watch, work_queue,
    Cpu, Progress,
};
use talon_tests::{parse_config, start_ingest, test_config_text, NatsServer};

/// Same batch size as ingest's `consume::BATCH`.
const BATCH: usize = 512;
/// Publish acks pending at once while a backlog is published.
const IN_FLIGHT: usize = 1_000;
/// Alerts per HTTP request.
const HTTP_BATCH: usize = 500;
/// Concurrent HTTP clients.
const HTTP_CLIENTS: usize = 4;
/// How often the output stream is polled.
const POLL: Duration = Duration::from_millis(20);
/// Give up on a measurement after this long (the bench should take far less).
const DEADLINE: Duration = Duration::from_secs(60);

const BENCH_IN: &str = "BENCH_IN";
const BENCH_IN_SUBJECT: &str = "bench.in";
const BENCH_OUT: &str = "BENCH_OUT";
const BENCH_OUT_SUBJECT: &str = "bench.out";
const BENCH_DECIDED: &str = "BENCH_DECIDED";
const BENCH_DECIDED_SUBJECT: &str = "bench.decided";
const TOKEN: &str = "bench-token-0123456789abcdef";
const INGEST: &str = "[ingest]\nhttp_listen = \"127.0.0.1:0\"\npartitions = 4\n";

/// ingest's throughput next to a raw JetStream baseline.
#[derive(Parser)]
#[command(bin_name = "cargo bench -p talon-tests --bench ingest --")]
struct Args {
    /// Alerts through the baseline hops and ingest's NATS consumer.
    #[arg(long, value_name = "N", default_value_t = 50_000, value_parser = at_least::<1>)]
    alerts: usize,
    /// Alerts POSTed to ingest's HTTP edge.
    #[arg(long, value_name = "M", default_value_t = 20_000, value_parser = at_least::<1>)]
    http_alerts: usize,
    #[command(flatten)]
    _cargo: talon_tests::bench::Cargo,
}

/// The `i`-th Velociraptor-style row: 1000 distinct names, varied pids and
/// files.
fn row(i: usize) -> serde_json::Value {
    serde_json::json!({
        "client_id": format!("C.{}", i % 50),
        "name": format!("alert-{}", i % 1000),
        "timestamp": "2026-01-01T00:00:00Z",
        "event_data": {
            "Pid": 1000 + i % 30_000,
            "FileName": format!("/home/user{}/honey-{}.docx", i % 20, i % 7),
        },
        "artifact": "Linux.Detection.Honeyfiles",
        "artifact_type": "CLIENT_EVENT",
    })
}

fn row_bytes(i: usize) -> bytes::Bytes {
    // A json! value always serializes.
    serde_json::to_vec(&row(i))
        .expect("a JSON value serializes")
        .into()
}

/// Publishes `n` rows to `subject`, up to `IN_FLIGHT` in flight, and waits
/// for every ack.
async fn publish_backlog(js: &jetstream::Context, subject: &str, n: usize) -> anyhow::Result<()> {
    let rows = (0..n).map(|i| PublishMessage::build().payload(row_bytes(i)));
    publish_all(js, subject, rows, IN_FLIGHT).await
}

/// What ingest's `start_one` does to an input before publishing it: its pure
/// core (`process::decide`) and the Alert's serialization.
fn decided(msg: &jetstream::Message, settings: &Settings) -> bytes::Bytes {
    let info = msg.info().expect("a pulled message has JetStream info");
    let input = Input {
        subject: msg.subject.as_str(),
        payload: &msg.payload,
        msg_id: None,
        source: None,
        stream_seq: info.stream_sequence,
        published: info.published,
    };
    match decide(&input, settings) {
        Decision::Forward { alert, .. } => serde_json::to_vec(&alert)
            .expect("an Alert serializes")
            .into(),
        other => panic!("every bench row is a valid alert, got {other:?}"),
    }
}

struct Measured {
    alerts: usize,
    /// From the start to the last output.
    elapsed: Duration,
    /// From the start to the first output seen; `None` for the HTTP edge.
    startup: Option<Duration>,
    /// Outputs after the first poll that saw any, and the time they took.
    steady: Option<(u64, Duration)>,
    cpu: Cpu,
}

impl Measured {
    fn of(alerts: usize, started: Instant, progress: &Progress, cpu: Cpu) -> Measured {
        Measured {
            alerts,
            elapsed: progress.done - started,
            startup: Some(progress.first - started),
            steady: Some((
                (alerts as u64).saturating_sub(progress.first_count),
                progress.done - progress.first,
            )),
            cpu,
        }
    }

    fn rate(&self) -> f64 {
        self.alerts as f64 / self.elapsed.as_secs_f64()
    }

    fn steady_rate(&self) -> Option<f64> {
        self.steady
            .filter(|(n, d)| *n > 0 && !d.is_zero())
            .map(|(n, d)| n as f64 / d.as_secs_f64())
    }
}

/// The baseline hop on a new durable consumer of `BENCH_IN`: one output
/// per input to the work-queue stream `out_stream` (the payload unchanged,
/// or with `decide` the Alert ingest would make of it), timed until it
/// holds `n`.
async fn hop(
    js: &jetstream::Context,
    server: Option<u32>,
    durable: &str,
    out_stream: &'static str,
    out_subject: &'static str,
    decide: Option<Settings>,
    n: usize,
) -> anyhow::Result<Measured> {
    js.create_stream(work_queue(out_stream, vec![out_subject.to_owned()]))
        .await?;
    let cpu = Cpu::now(server);
    let started = Instant::now();
    let progress = tokio::spawn(watch(js.clone(), out_stream, n as u64, POLL, DEADLINE));
    let consumer: consumer::PullConsumer = js
        .get_stream(BENCH_IN)
        .await?
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let outputs = move |msg: &jetstream::Message, seq: u64| {
        let payload = match &decide {
            None => msg.payload.clone(),
            Some(settings) => decided(msg, settings),
        };
        let message = PublishMessage::build()
            .payload(payload)
            .message_id(format!("bench-{seq}"));
        [(out_subject, message)]
    };
    let hop = republish(js.clone(), consumer, BATCH, n, outputs);
    let task = tokio::spawn(async move {
        if let Err(e) = hop.await {
            eprintln!("baseline: {e:#}");
        }
    });
    let progress = progress.await;
    let cpu = Cpu::now(server).since(cpu);
    task.abort();
    Ok(Measured::of(n, started, &progress??, cpu))
}

/// Publishes the backlog to `BENCH_IN`, then times the plain hop and the
/// hop with ingest's `decide()`, each with its own consumer and output.
async fn baseline(
    nats: &NatsServer,
    server: Option<u32>,
    n: usize,
) -> anyhow::Result<(Measured, Measured)> {
    let js = talon_kit::nats::jetstream(nats.service_client("talon-bench-baseline").await);
    js.create_stream(stream::Config {
        name: BENCH_IN.to_owned(),
        subjects: vec![BENCH_IN_SUBJECT.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await?;
    publish_backlog(&js, BENCH_IN_SUBJECT, n).await?;
    let plain = hop(&js, server, "bench", BENCH_OUT, BENCH_OUT_SUBJECT, None, n).await?;
    // The settings ingest derives from INGEST, as `talon_ingest::start` does.
    let config = parse_config(&test_config_text(nats, INGEST), &Env::default());
    let settings = Settings {
        max_bytes: config.ingest.max_body_bytes,
        key: config.dedup.key.clone(),
        partitions: config.ingest.partitions,
    };
    let with_decide = hop(
        &js,
        server,
        "bench-decide",
        BENCH_DECIDED,
        BENCH_DECIDED_SUBJECT,
        Some(settings),
        n,
    )
    .await?;
    Ok((plain, with_decide))
}

/// Creates ingest's streams, publishes the backlog, starts ingest and times
/// it until `ACCEPTED` holds `n`. Returns the running ingest for the HTTP
/// measurement.
async fn ingest_nats(
    nats: &NatsServer,
    server: Option<u32>,
    n: usize,
) -> anyhow::Result<(Measured, talon_tests::InProcess)> {
    let js = talon_kit::nats::jetstream(nats.client().await);
    for which in [Stream::Alerts, Stream::Accepted, Stream::Dlq] {
        ensure_stream(&js, which, 1).await?;
    }
    publish_backlog(&js, SUBJECT_ALERTS, n).await?;

    let cpu = Cpu::now(server);
    let started = Instant::now();
    let progress = tokio::spawn(watch(js, STREAM_ACCEPTED, n as u64, POLL, DEADLINE));
    let env = Env::default().with("TALON_INGEST_TOKENS", TOKEN);
    let ingest = start_ingest(nats, INGEST, env).await;
    let progress = progress.await??;
    let cpu = Cpu::now(server).since(cpu);
    Ok((Measured::of(n, started, &progress, cpu), ingest))
}

/// `HTTP_CLIENTS` clients POST arrays of `HTTP_BATCH` rows until `m` alerts
/// are 202'd.
async fn ingest_http(
    ingest: &talon_tests::InProcess,
    server: Option<u32>,
    m: usize,
) -> anyhow::Result<Measured> {
    let url = format!("http://{}/v1/alerts", ingest.http_addr);
    let requests = m.div_ceil(HTTP_BATCH);
    // Bodies are built before the clock starts: the bench measures the edge,
    // not the client's JSON.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..requests)
            .map(|r| {
                let rows: Vec<_> = (r * HTTP_BATCH..((r + 1) * HTTP_BATCH).min(m))
                    .map(row)
                    .collect();
                serde_json::to_vec(&rows).expect("a JSON value serializes")
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = Cpu::now(server);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..HTTP_CLIENTS {
        let (url, bodies, next) = (url.clone(), bodies.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let http = talon_kit::outbound::client();
            let mut accepted = 0usize;
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(r) else {
                    return Ok::<_, anyhow::Error>(accepted);
                };
                let resp = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = resp.status();
                let answer: serde_json::Value = resp.json().await?;
                if status.as_u16() != 202 {
                    bail!("POST /v1/alerts answered {status}: {answer}");
                }
                accepted += answer["accepted"].as_array().map_or(0, Vec::len);
            }
        }));
    }
    let mut accepted = 0;
    for c in clients {
        accepted += c.await??;
    }
    let elapsed = started.elapsed();
    let cpu = Cpu::now(server).since(cpu);
    if accepted != m {
        bail!("{accepted} of {m} alerts were accepted");
    }
    Ok(Measured {
        alerts: accepted,
        elapsed,
        startup: None,
        steady: None,
        cpu,
    })
}

fn print_table(rows: &[(&str, &Measured)]) {
    let base = rows[0].1;
    println!(
        "{:<19} {:>6} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "",
        "alerts",
        "seconds",
        "alerts/s",
        "vs base",
        "startup",
        "steady/s",
        "vs base",
        "nats µs/a",
        "proc µs/a",
    );
    let dash = "-";
    for (label, m) in rows {
        let startup = m
            .startup
            .map_or_else(|| dash.to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
        let (steady, steady_ratio) = match (m.steady_rate(), base.steady_rate()) {
            (Some(r), Some(b)) => (format!("{r:.0}"), format!("{:.2}x", r / b)),
            _ => (dash.to_owned(), dash.to_owned()),
        };
        let per_alert = |cpu: f64| cpu * 1e6 / m.alerts as f64;
        println!(
            "{label:<19} {:>6} {:>7.2} {:>9.0} {:>8} {:>8} {:>9} {:>8} {:>9.1} {:>9.1}",
            m.alerts,
            m.elapsed.as_secs_f64(),
            m.rate(),
            format!("{:.2}x", m.rate() / base.rate()),
            startup,
            steady,
            steady_ratio,
            per_alert(m.cpu.server),
            per_alert(m.cpu.bench),
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    log_to_stderr();

    let nats = NatsServer::start().await;
    let version = nats.client().await.server_info().version;
    let server = nats_server_pid();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} CPUs ({}); nats-server {version}, default sync, file storage; \
         N = {} (NATS), M = {} (HTTP)",
        cpu_model(),
        args.alerts,
        args.http_alerts
    );

    let (base, decided) = baseline(&nats, server, args.alerts)
        .await
        .context("baseline")?;
    let (via_nats, ingest) = ingest_nats(&nats, server, args.alerts)
        .await
        .context("ingest (NATS)")?;
    let via_http = ingest_http(&ingest, server, args.http_alerts)
        .await
        .context("ingest (HTTP edge)")?;
    ingest.stop().await.context("stopping ingest")?;

    println!();
    print_table(&[
        ("baseline", &base),
        ("hop + decide()", &decided),
        ("ingest (NATS)", &via_nats),
        ("ingest (HTTP edge)", &via_http),
    ]);
    println!(
        "\nalerts/s: N (or M) over the time from the start (consumer created, or ingest \
         started) to the last output.\nstartup: until a {}ms poll of the output stream first \
         saw a message; steady/s: the rest over the rest of the time.\nnats/proc µs/a: CPU \
         time per alert of nats-server and of this process (ingest, the baseline hop, the \
         pollers, and for HTTP the clients).",
        POLL.as_millis()
    );
    Ok(())
}
