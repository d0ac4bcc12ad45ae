//! The whole pipeline end to end, next to a raw JetStream baseline of the
//! same shape and to Prometheus Alertmanager, in one run on one machine.
//!
//! `cargo bench -p talon-tests --bench pipeline [-- --alerts N --rate R
//! --seconds S --sync default|always --no-alertmanager]`
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
//!    opens a window and is delivered. Fed by JetStream publishes, then
//!    over its HTTP edge (`POST /v1/alerts`, 1 and 100 alerts a request,
//!    16 requests at once).
//!
//! Then once, when installed (`scripts/setup --with-alertmanager`):
//! Alertmanager from Debian's package on loopback, in memory, one web hook
//! notification per alert (`group_by: ['...']`, `group_wait: 0s`), fed
//! over HTTP (`POST /api/v2/alerts`) the same way, to a receiver like
//! talon's.
//!
//! Throughput: N alerts sent as fast as acks or answers allow (1,000
//! publishes in flight, or 16 requests), timed from the first send to the
//! N-th receipt at the receiver, after a warm-up of 2,000; the CPU time of
//! the server (nats-server or Alertmanager) and of this process meanwhile.
//! Latency: R alerts/s offered for S seconds (one a publish or request),
//! each carrying its send time; latency is receipt minus send, p50 and
//! p99. Nothing is asserted on timing: this prints numbers for a human.

use std::time::{Duration, Instant};

use anyhow::bail;
use async_nats::jetstream::{self, consumer, message::PublishMessage};
use clap::Parser;
use futures::StreamExt;
use talon_kit::Env;
use talon_proto::names::SUBJECT_ALERTS;
use talon_tests::alertmanager::Alertmanager;
use talon_tests::bench::{
    at_least, cpu_model, nats_server_pid, nats_server_version, percentile, publish_all,
    pull_chunks, republish, work_queue, Cpu,
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
/// HTTP requests at once, to talon's edge and to Alertmanager.
const HTTP_CLIENTS: usize = 16;
/// ingest's bearer token in the bench.
const TOKEN: &str = "bench-token-0123456789abcdef";
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
    /// Leave Alertmanager out.
    #[arg(long)]
    no_alertmanager: bool,
    /// Only this sync mode (default: both).
    #[arg(long, value_enum)]
    sync: Option<Sync>,
    #[command(flatten)]
    _cargo: talon_tests::bench::Cargo,
}

/// NATS's sync modes the bench runs under.
#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Sync {
    /// NATS's default (`sync_interval` 2 min; the OS writes back).
    Default,
    /// `sync_interval: always`: every write fsynced before its ack.
    Always,
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

/// How alerts reach what is measured.
enum Feed<'a> {
    /// JetStream publishes to `subject`.
    Nats {
        js: &'a jetstream::Context,
        subject: &'a str,
    },
    /// `POST url` by [`HTTP_CLIENTS`] clients at once, `per_request` alerts
    /// a request.
    Http {
        url: String,
        token: Option<&'static str>,
        per_request: usize,
        shape: Shape,
    },
}

/// Whose alerts a body holds.
#[derive(Clone, Copy)]
enum Shape {
    /// talon's raw alerts (the Velociraptor row), an array of them.
    Talon,
    /// Alertmanager's `/api/v2/alerts`: labels and annotations.
    Alertmanager,
}

impl Shape {
    /// An array of `names`' alerts, each carrying `t`.
    fn body(self, names: &[String], t: u128) -> bytes::Bytes {
        let items: Vec<String> = names
            .iter()
            .map(|name| match self {
                Shape::Talon => String::from_utf8_lossy(&payload(name, t)).into_owned(),
                Shape::Alertmanager => format!(
                    r#"{{"labels":{{"alertname":"{name}","client_id":"server","artifact":"Linux.Detection.Honeyfiles"}},"annotations":{{"t":"{t}","FileName":"/home/user/honey.docx","Pid":"4120"}}}}"#
                ),
            })
            .collect();
        format!("[{}]", items.join(",")).into_bytes().into()
    }

    /// The publish time (µs after the origin) a receipt carries: talon's
    /// web hook body is the alert; Alertmanager's lists the group's alerts.
    fn sent_at(self, body: &serde_json::Value) -> u64 {
        match self {
            Shape::Talon => body["event_data"]["t"].as_u64().unwrap_or(0),
            Shape::Alertmanager => body["alerts"][0]["annotations"]["t"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// Where a run sends and how its receipts are seen.
struct Target<'a> {
    feed: Feed<'a>,
    hook: &'a Receiver,
    origin: Instant,
    /// The processes whose CPU is counted: nats-server (or Alertmanager)
    /// and this one.
    server: Option<u32>,
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

    /// Sends `n` alerts (names `<tag>-<i>`) as fast as acks or answers
    /// allow; returns alerts/s from the first send to the last receipt, and
    /// the CPU used meanwhile.
    async fn throughput(&self, tag: &str, n: usize) -> anyhow::Result<(f64, Cpu)> {
        let before = self.hook.count();
        let names: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
        let t = self.origin.elapsed().as_micros();
        // Bodies are built before the clock starts.
        let bodies: Vec<bytes::Bytes> = match &self.feed {
            Feed::Nats { .. } => Vec::new(),
            Feed::Http {
                per_request, shape, ..
            } => names
                .chunks(*per_request)
                .map(|chunk| shape.body(chunk, t))
                .collect(),
        };
        let cpu = Cpu::now(self.server);
        let started = Instant::now();
        match &self.feed {
            Feed::Nats { js, subject } => {
                let messages = names
                    .iter()
                    .map(|name| PublishMessage::build().payload(payload(name, t)));
                publish_all(js, subject, messages, PUBLISH_IN_FLIGHT).await?;
            }
            Feed::Http { url, token, .. } => post_all(url, *token, bodies).await?,
        }
        self.wait_receipts(before + n).await?;
        let last = self.hook.hits()[before..]
            .iter()
            .map(|h| h.at)
            .max()
            .unwrap_or_else(Instant::now);
        let cpu = Cpu::now(self.server).since(cpu);
        Ok((n as f64 / (last - started).as_secs_f64(), cpu))
    }

    /// Offers `rate` alerts/s for `seconds`, one a publish or request;
    /// returns the sorted latencies.
    async fn latency(&self, tag: &str, rate: f64, seconds: f64) -> anyhow::Result<Vec<Duration>> {
        let n = (rate * seconds) as usize;
        let before = self.hook.count();
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut sent = Vec::with_capacity(n);
        let http = talon_kit::outbound::client();
        for i in 0..n {
            tick.tick().await;
            let t = self.origin.elapsed().as_micros();
            let name = format!("{tag}-{i}");
            match &self.feed {
                Feed::Nats { js, subject } => {
                    let ack = js.publish(subject.to_string(), payload(&name, t)).await?;
                    sent.push(tokio::spawn(async move {
                        ack.await.map(|_| ()).map_err(anyhow::Error::from)
                    }));
                }
                Feed::Http {
                    url, token, shape, ..
                } => {
                    let request = post(&http, url, *token, shape.body(&[name], t));
                    sent.push(tokio::spawn(request));
                }
            }
        }
        for done in sent {
            done.await??;
        }
        self.wait_receipts(before + n).await?;
        let shape = match &self.feed {
            Feed::Nats { .. } => Shape::Talon,
            Feed::Http { shape, .. } => *shape,
        };
        let mut latencies: Vec<Duration> = self.hook.hits()[before..]
            .iter()
            .map(|h| {
                let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap_or_default();
                let t = shape.sent_at(&body);
                (h.at - self.origin).saturating_sub(Duration::from_micros(t))
            })
            .collect();
        latencies.sort();
        Ok(latencies)
    }
}

/// POSTs `body`; an error unless the answer is 2xx.
fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: bytes::Bytes,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    async move {
        let answer = request.send().await?;
        let status = answer.status();
        if !status.is_success() {
            let text = answer.text().await.unwrap_or_default();
            bail!("POST answered {status}: {text}");
        }
        Ok(())
    }
}

/// POSTs every body, [`HTTP_CLIENTS`] at once.
async fn post_all(url: &str, token: Option<&str>, bodies: Vec<bytes::Bytes>) -> anyhow::Result<()> {
    let http = talon_kit::outbound::client();
    let mut requests =
        futures::stream::iter(bodies.into_iter().map(|body| post(&http, url, token, body)))
            .buffer_unordered(HTTP_CLIENTS);
    while let Some(done) = requests.next().await {
        done?;
    }
    Ok(())
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
    /// CPU of the throughput run: the server (nats-server or Alertmanager)
    /// and this process.
    cpu: Cpu,
    p50: Duration,
    p99: Duration,
}

/// Throughput over HTTP, 1 and 100 alerts a request.
struct Edge {
    one: f64,
    hundred: f64,
}

async fn measure(target: &Target<'_>, args: &Args, tag: &str) -> anyhow::Result<Measured> {
    target.throughput(&format!("{tag}-warm"), WARM_UP).await?;
    let (per_second, cpu) = target
        .throughput(&format!("{tag}-run"), args.alerts)
        .await?;
    let latencies = target
        .latency(&format!("{tag}-rate"), args.rate, args.seconds)
        .await?;
    Ok(Measured {
        per_second,
        cpu,
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
    })
}

/// Throughput through `url` with 1 and 100 alerts a request.
async fn edge(
    target: Target<'_>,
    url: String,
    token: Option<&'static str>,
    shape: Shape,
    args: &Args,
    tag: &str,
) -> anyhow::Result<Edge> {
    let mut per_second = [0.0; 2];
    for (slot, per_request) in per_second.iter_mut().zip([1, 100]) {
        let target = Target {
            feed: Feed::Http {
                url: url.clone(),
                token,
                per_request,
                shape,
            },
            ..target
        };
        let (rate, _) = target
            .throughput(&format!("{tag}-http{per_request}"), args.alerts)
            .await?;
        *slot = rate;
    }
    Ok(Edge {
        one: per_second[0],
        hundred: per_second[1],
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
        feed: Feed::Nats {
            js: &js,
            subject: "bench.hop.0",
        },
        hook: &hook,
        origin: Instant::now(),
        server: nats_server_pid(),
    };
    let measured = measure(&target, args, "raw").await?;
    for hop in hops {
        hop.await??;
    }
    Ok(measured)
}

async fn talon(nats: &NatsServer, args: &Args) -> anyhow::Result<(Measured, Edge)> {
    let hook = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir()?;
    let config = format!(
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n{}\n[enrich]\nhttp_listen = \"127.0.0.1:0\"\n\
         [notify]\nhttp_listen = \"127.0.0.1:0\"\n\n[[channels]]\nid = \"hook\"\nkind = \"webhook\"\n\
         url = \"{}\"\nrate_per_minute = 0\nmax_in_flight = {IN_FLIGHT}\n",
        dedup_table(dir.path()),
        hook.url("/talon")
    );
    let env = Env::default().with("TALON_INGEST_TOKENS", TOKEN);
    let ingest = start_ingest(nats, &config, env).await;
    let dedup = start_dedup(nats, &config).await;
    let enrich = start_enrich(nats, &config).await;
    let notify = start_notify(nats, &config, Env::default()).await;
    let js = jetstream::new(nats.client().await);
    let target = Target {
        feed: Feed::Nats {
            js: &js,
            subject: SUBJECT_ALERTS,
        },
        hook: &hook,
        origin: Instant::now(),
        server: nats_server_pid(),
    };
    let measured = measure(&target, args, "talon").await?;
    let url = format!("http://{}/v1/alerts", ingest.http_addr);
    let edge = edge(target, url, Some(TOKEN), Shape::Talon, args, "talon").await?;
    for service in [notify, enrich, dedup, ingest] {
        service.stop().await?;
    }
    Ok((measured, edge))
}

/// Alertmanager, HTTP in → web hook out: latency with one alert a request,
/// throughput with 1 and 100; `None` when it is not installed.
async fn alertmanager(args: &Args) -> anyhow::Result<Option<(String, Measured, Edge)>> {
    let Some(binary) = talon_tests::alertmanager::binary() else {
        println!(
            "Alertmanager: not installed (scripts/setup --with-alertmanager, or TALON_ALERTMANAGER); its column is left out"
        );
        return Ok(None);
    };
    let version = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .map(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            // "alertmanager, version 0.25.0 (branch: ...)": the number.
            let first = text.lines().next().unwrap_or("");
            first
                .split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let hook = Receiver::start(vec![]).await;
    let am = Alertmanager::start(&binary, &hook.url("/am")).await?;
    let url = am.url("/api/v2/alerts");
    let target = Target {
        feed: Feed::Http {
            url: url.clone(),
            token: None,
            per_request: 1,
            shape: Shape::Alertmanager,
        },
        hook: &hook,
        origin: Instant::now(),
        server: Some(am.pid()),
    };
    let measured = measure(&target, args, "am").await?;
    let edge = edge(target, url, None, Shape::Alertmanager, args, "am").await?;
    Ok(Some((version, measured, edge)))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One sync mode's figures.
struct Run {
    mode: &'static str,
    baseline: Measured,
    talon: Measured,
    edge: Edge,
}

fn print_table(args: &Args, runs: &[Run], am: Option<&(String, Measured, Edge)>) {
    let mut header: Vec<String> = runs.iter().map(|r| r.mode.to_owned()).collect();
    if let Some((version, _, _)) = am {
        header.push(format!("Alertmanager {version} (in memory)"));
    }
    println!("\n| | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(header.len()));
    let row = |what: &str,
               cell: &dyn Fn(&Run) -> String,
               am_cell: &dyn Fn(&Measured, &Edge) -> String| {
        let mut cells: Vec<String> = runs.iter().map(cell).collect();
        if let Some((_, m, e)) = am {
            cells.push(am_cell(m, e));
        }
        println!("| {what} | {} |", cells.join(" | "));
    };
    let none = |_: &Measured, _: &Edge| "—".to_owned();
    row(
        "baseline: 4 raw JetStream hops + web hook sink, msgs/s",
        &|r| format!("{:.0}", r.baseline.per_second),
        &none,
    );
    row(
        "talon, NATS publish → web hook, alerts/s",
        &|r| {
            format!(
                "{:.0} ({:.2}× baseline)",
                r.talon.per_second,
                r.talon.per_second / r.baseline.per_second
            )
        },
        &none,
    );
    let vs_am = |talon: f64, of: &dyn Fn(&Edge) -> f64| match am {
        Some((_, _, e)) => format!("{talon:.0} ({:.2}× Alertmanager)", talon / of(e)),
        None => format!("{talon:.0}"),
    };
    row(
        "HTTP in, 1 alert a request → web hook, alerts/s",
        &|r| vs_am(r.edge.one, &|e| e.one),
        &|_, e| format!("{:.0}", e.one),
    );
    row(
        "HTTP in, 100 alerts a request → web hook, alerts/s",
        &|r| vs_am(r.edge.hundred, &|e| e.hundred),
        &|_, e| format!("{:.0}", e.hundred),
    );
    let per_alert = |cpu: f64| cpu * 1e6 / args.alerts as f64;
    row(
        "CPU µs an alert (throughput run): server / the rest",
        &|r| {
            format!(
                "baseline {:.0} / {:.0}; talon {:.0} / {:.0}",
                per_alert(r.baseline.cpu.server),
                per_alert(r.baseline.cpu.bench),
                per_alert(r.talon.cpu.server),
                per_alert(r.talon.cpu.bench)
            )
        },
        &|m, _| {
            format!(
                "Alertmanager {:.0} / {:.0} (1 a request)",
                per_alert(m.cpu.server),
                per_alert(m.cpu.bench)
            )
        },
    );
    let at = format!("{:.0}/s", args.rate);
    row(
        &format!("baseline latency p50 / p99 at {at}"),
        &|r| format!("{} / {}", ms(r.baseline.p50), ms(r.baseline.p99)),
        &none,
    );
    row(
        &format!("talon (NATS) and Alertmanager (HTTP) latency p50 / p99 at {at}"),
        &|r| {
            format!(
                "{} / {} ({:.1}× / {:.1}× baseline)",
                ms(r.talon.p50),
                ms(r.talon.p99),
                r.talon.p50.as_secs_f64() / r.baseline.p50.as_secs_f64().max(1e-9),
                r.talon.p99.as_secs_f64() / r.baseline.p99.as_secs_f64().max(1e-9)
            )
        },
        &|m, _| format!("{} / {}", ms(m.p50), ms(m.p99)),
    );
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
    for (sync, mode, jetstream_conf) in [
        (Sync::Default, "NATS defaults", ""),
        (
            Sync::Always,
            "sync_interval: always",
            "sync_interval: always",
        ),
    ] {
        if args.sync.is_some_and(|only| only != sync) {
            continue;
        }
        let nats = NatsServer::start_jetstream_with(jetstream_conf).await;
        println!("{mode}: baseline …");
        let baseline = baseline(&nats, &args).await?;
        drop(nats);
        let nats = NatsServer::start_jetstream_with(jetstream_conf).await;
        println!("{mode}: talon …");
        let (talon, edge) = talon(&nats, &args).await?;
        runs.push(Run {
            mode,
            baseline,
            talon,
            edge,
        });
    }
    let am = if args.no_alertmanager {
        None
    } else {
        println!("Alertmanager …");
        alertmanager(&args).await?
    };
    print_table(&args, &runs, am.as_ref());
    Ok(())
}
