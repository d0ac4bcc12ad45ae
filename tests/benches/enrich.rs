//! enrich's throughput: its pure core on one thread, then the service
//! through one fresh nats-server next to a raw JetStream baseline of the
//! same shape, measured in one run.
//!
//! `cargo bench -p talon-tests --bench enrich [-- --iterations N --alerts M]`
//!
//! Every alert is the issue's Sysmon example (a PowerShell process with a
//! network connection, `Level: Warning`, `ClientId: C.42`), routed by six
//! channels (thresholds, a list, include and exclude) to exactly two of
//! them, with C.42 one of `CLIENTS` known clients.
//!
//! 1. transform, single-threaded, N iterations each (default 200,000):
//!    - parse: `serde_json::from_slice::<Alert>` of the input payload;
//!    - enrich(): `transform::enrich` alone (the clone of its input and the
//!      drop of its output are left out), the lookup a `HashMap` get;
//!    - serialize ×2: what `handle` does per routed channel once the alert
//!      is enriched (`channel` set, `to_vec`, subject and `Nats-Msg-Id`);
//!    - per message: the three in a row, as `handle` does for one input.
//! 2. through NATS, M alerts (default 50,000):
//!    - baseline: a durable pull consumer on the work-queue stream
//!      `BENCH_IN` that republishes each payload unchanged to two subjects
//!      of the work-queue stream `BENCH_OUT` with a `Nats-Msg-Id`, in the
//!      shape of `kit::pipeline` (batches of 512, publish all, await the
//!      acks, ack the inputs) but with no parsing;
//!    - enrich (NATS): M Alerts as dedup makes them as a backlog on
//!      `talon.alerts.unique`, then enrich started in-process, timed until
//!      `NOTIFY` holds 2M.
//!
//! The NATS measurements include creating the consumer (for enrich:
//! starting it) and stop when a 20 ms poll of the output stream sees every
//! message; CPU time of nats-server and of this process is read from /proc.
//! Nothing is asserted on timing: this prints numbers for a human to read.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use async_nats::jetstream::{self, consumer, message::PublishMessage};
use clap::Parser;
use talon_enrich::channel_msg_id;
use talon_enrich::transform::{enrich, Rules};
use talon_kit::streams::{ensure_all, ensure_clients_bucket};
use talon_kit::Env;
use talon_proto::key::alert_id_from_stream;
use talon_proto::names::{notify_subject, STREAM_ACCEPTED, STREAM_NOTIFY, SUBJECT_UNIQUE};
use talon_proto::{Alert, ClientInfo, DedupInfo};
use talon_tests::bench::{
    at_least, cpu_model, log_to_stderr, nats_server_pid, publish_alerts, republish, watch,
    work_queue, Cpu, Progress,
};
use talon_tests::{accepted_alert, parse_config, start_enrich, NatsServer};

/// Same batch size as enrich's (`kit::pipeline` batches).
const BATCH: usize = talon_enrich::BATCH;
/// Channels each alert is routed to.
const FAN_OUT: usize = 2;
/// Alerts per timed chunk of the enrich() measurement (their inputs are
/// cloned, and their outputs dropped, outside the clock).
const CHUNK: usize = 1024;
/// Untimed iterations before each transform measurement.
const WARM_UP: usize = 10_000;
/// Publish acks pending at once while a backlog is published.
const IN_FLIGHT: usize = 1_000;
/// How often the output stream is polled.
const POLL: Duration = Duration::from_millis(20);
/// Give up on a measurement after this long (the bench should take far less).
const DEADLINE: Duration = Duration::from_secs(60);
/// Clients in the inventory (the HashMap, and the `talon_clients` bucket).
const CLIENTS: usize = 1_000;
/// `received_at` of alert 0, ms; alert `i` is received `i` ms later.
const T0: i64 = 1_790_000_000_000;
/// The dedup window the alerts opened.
const WINDOW_SECONDS: i64 = 7200;

const NAME: &str = "Sysmon: PowerShell opened a network connection";
const BENCH_IN: &str = "BENCH_IN";
const BENCH_IN_SUBJECT: &str = "bench.in";
const BENCH_OUT: &str = "BENCH_OUT";
const BENCH_OUT_SUBJECTS: [&str; FAN_OUT] = ["bench.out.a", "bench.out.b"];

/// Six channels; `NAME` at severity medium goes to `soc` (no filter) and
/// `triage` (the list), not to `pager` (high and up), `honey` (include),
/// `sysmon-quiet` (exclude) or `lsass` (include, severity required).
const CHANNELS: &str = r#"
[enrich]
http_listen = "127.0.0.1:0"

[[channels]]
id = "soc"
kind = "webhook"
url = "http://127.0.0.1:9/soc"

[[channels]]
id = "pager"
kind = "webhook"
url = "http://127.0.0.1:9/pager"
severity_threshold = "high"

[[channels]]
id = "triage"
kind = "webhook"
url = "http://127.0.0.1:9/triage"
severity_threshold = ["medium", "critical"]

[[channels]]
id = "honey"
kind = "webhook"
url = "http://127.0.0.1:9/honey"
alert_include = "^Honey"

[[channels]]
id = "sysmon-quiet"
kind = "webhook"
url = "http://127.0.0.1:9/sysmon"
alert_include = "^Sysmon"
alert_exclude = "(?i)powershell"

[[channels]]
id = "lsass"
kind = "webhook"
url = "http://127.0.0.1:9/lsass"
alert_include = "(?i)lsass|mimikatz"
severity_threshold = "low"
require_severity = true
"#;

/// The channels `NAME` is routed to, in config order.
const ROUTED: [&str; FAN_OUT] = ["soc", "triage"];

/// enrich's throughput: its pure core on one thread, then the service
/// through NATS next to a raw JetStream baseline.
#[derive(Parser)]
#[command(bin_name = "cargo bench -p talon-tests --bench enrich --")]
struct Args {
    /// Iterations of each single-threaded transform measurement.
    #[arg(long, value_name = "N", default_value_t = 200_000, value_parser = at_least::<1>)]
    iterations: usize,
    /// Alerts through the baseline hop and enrich over NATS.
    #[arg(long, value_name = "M", default_value_t = 50_000, value_parser = at_least::<1>)]
    alerts: usize,
    #[command(flatten)]
    _cargo: talon_tests::bench::Cargo,
}

/// The issue's example context.
fn event_data() -> serde_json::Map<String, serde_json::Value> {
    let value = serde_json::json!({
        "Details": {
            "EventID": 1,
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "Hashes": {"SHA256": "A1B2C3D4E5F60718293A4B5C6D7E8F90123456789ABCDEF0011223344556677"},
            "Parent": {"Image": "C:\\Windows\\explorer.exe", "ProcessId": 4120},
            "Connections": [{"DestinationIp": "198.51.100.42", "DestinationPort": 443}],
        },
        "Level": "Warning",
        "ClientId": "C.42",
        "Artifact": "Windows.Sysmon",
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a json! object literal is an object"),
    }
}

/// The `i`-th alert as dedup puts it on `talon.alerts.unique`: ingest's
/// fields (a server rule speaking for C.42), and the window it opened.
fn alert(i: usize) -> Alert {
    let mut alert = accepted_alert(
        &alert_id_from_stream(STREAM_ACCEPTED, i as u64 + 1),
        NAME,
        T0 + i as i64,
        0,
    );
    alert.source = "rule:Server.Monitor.Sysmon".into();
    alert.event_data = event_data();
    alert.dedup = Some(DedupInfo {
        key: NAME.to_owned(),
        window_start: alert.received_at,
        window_end: alert.received_at + chrono::Duration::seconds(WINDOW_SECONDS),
        suppressed_before: 0,
    });
    alert
}

fn payload(i: usize) -> bytes::Bytes {
    serde_json::to_vec(&alert(i))
        .expect("an Alert serializes")
        .into()
}

/// The `i`-th client of the inventory: `C.<i>`.
fn client(i: usize) -> ClientInfo {
    ClientInfo {
        client_id: Some(format!("C.{i}")),
        hostname: Some(format!("ws-{i:04}")),
        fqdn: Some(format!("ws-{i:04}.corp.example.org")),
        os: Some("windows".into()),
        labels: vec!["workstation".into(), format!("site-{}", i % 7)],
    }
}

/// One transform measurement.
struct Timed {
    iterations: usize,
    elapsed: Duration,
}

impl Timed {
    fn rate(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64()
    }

    fn micros(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.iterations as f64
    }
}

/// Runs `step` `WARM_UP` times, then times `n` runs.
fn time_each(n: usize, mut step: impl FnMut()) -> Timed {
    for _ in 0..WARM_UP {
        step();
    }
    let started = Instant::now();
    for _ in 0..n {
        step();
    }
    Timed {
        iterations: n,
        elapsed: started.elapsed(),
    }
}

/// What `handle` does for each channel of an enriched alert before the
/// publish: set `channel`, serialize, build the subject and the message id.
fn serialize_for(alert: &mut Alert, channels: &[String]) {
    for channel in channels {
        alert.channel = Some(channel.clone());
        let body = serde_json::to_vec(&*alert).expect("an Alert serializes");
        black_box((
            body,
            notify_subject(channel),
            channel_msg_id(&alert.id, channel),
        ));
    }
}

struct Transform {
    parse: Timed,
    enrich: Timed,
    serialize: Timed,
    per_message: Timed,
    input_bytes: usize,
    output_bytes: usize,
}

/// The four single-threaded measurements, after checking the alert is
/// enriched and routed as intended.
fn transform(n: usize) -> anyhow::Result<Transform> {
    let config = parse_config(CHANNELS, &Env::default());
    let rules = Rules::new(&config).context("compiling the rules")?;
    let clients: HashMap<String, ClientInfo> = (0..CLIENTS)
        .map(|i| (format!("C.{i}"), client(i)))
        .collect();
    let lookup = |id: &str| clients.get(id).cloned();
    let input = payload(0);
    let parsed: Alert = serde_json::from_slice(&input).context("parsing the input")?;

    let (mut enriched, channels) = enrich(parsed.clone(), &rules, lookup);
    ensure!(
        channels == ROUTED,
        "routed to {channels:?}, expected {ROUTED:?}"
    );
    ensure!(
        enriched.severity.as_deref() == Some("medium") && enriched.client.is_some(),
        "severity {:?}, client {:?}: not the intended enrichment",
        enriched.severity,
        enriched.client
    );
    enriched.channel = Some(channels[0].clone());
    let output_bytes = serde_json::to_vec(&enriched)?.len();

    let parse = time_each(n, || {
        let alert: Alert = serde_json::from_slice(black_box(&input)).expect("the input parses");
        black_box(alert);
    });

    // Inputs are cloned, and outputs dropped, chunk by chunk outside the clock.
    let chunk_run = |count: usize| {
        let inputs: Vec<Alert> = (0..count).map(|_| parsed.clone()).collect();
        let started = Instant::now();
        let outputs: Vec<(Alert, Vec<String>)> = inputs
            .into_iter()
            .map(|a| enrich(black_box(a), &rules, lookup))
            .collect();
        let elapsed = started.elapsed();
        black_box(outputs);
        elapsed
    };
    chunk_run(WARM_UP);
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < n {
        let count = CHUNK.min(n - done);
        elapsed += chunk_run(count);
        done += count;
    }
    let enrich_only = Timed {
        iterations: n,
        elapsed,
    };

    let serialize = time_each(n, || serialize_for(&mut enriched, &channels));

    let per_message = time_each(n, || {
        let alert: Alert = serde_json::from_slice(black_box(&input)).expect("the input parses");
        let (mut alert, channels) = enrich(alert, &rules, lookup);
        serialize_for(&mut alert, &channels);
    });

    Ok(Transform {
        parse,
        enrich: enrich_only,
        serialize,
        per_message,
        input_bytes: input.len(),
        output_bytes,
    })
}

struct Measured {
    alerts: usize,
    /// From the start to the last output.
    elapsed: Duration,
    /// From the start to the first output seen.
    startup: Duration,
    /// Alerts done after the first poll that saw any output, and the time
    /// they took.
    steady: (u64, Duration),
    cpu: Cpu,
}

impl Measured {
    fn of(alerts: usize, started: Instant, progress: &Progress, cpu: Cpu) -> Measured {
        // The poll counts channel messages; FAN_OUT of them per alert.
        let first_alerts = progress.first_count / FAN_OUT as u64;
        Measured {
            alerts,
            elapsed: progress.done - started,
            startup: progress.first - started,
            steady: (
                (alerts as u64).saturating_sub(first_alerts),
                progress.done - progress.first,
            ),
            cpu,
        }
    }

    fn rate(&self) -> f64 {
        self.alerts as f64 / self.elapsed.as_secs_f64()
    }

    fn steady_rate(&self) -> Option<f64> {
        let (n, d) = self.steady;
        (n > 0 && !d.is_zero()).then(|| n as f64 / d.as_secs_f64())
    }
}

/// Publishes the backlog to `BENCH_IN`, then times the hop on a new durable
/// consumer until `BENCH_OUT` holds `FAN_OUT` × `n`; removes both streams.
async fn baseline(nats: &NatsServer, server: Option<u32>, n: usize) -> anyhow::Result<Measured> {
    let js = talon_kit::nats::jetstream(nats.service_client("talon-bench-baseline").await);
    let input = js
        .create_stream(work_queue(BENCH_IN, vec![BENCH_IN_SUBJECT.to_owned()]))
        .await?;
    js.create_stream(work_queue(BENCH_OUT, vec!["bench.out.*".to_owned()]))
        .await?;
    publish_alerts(&js, BENCH_IN_SUBJECT, (0..n).map(alert), IN_FLIGHT).await?;

    let cpu = Cpu::now(server);
    let started = Instant::now();
    let progress = tokio::spawn(watch(
        js.clone(),
        BENCH_OUT,
        (FAN_OUT * n) as u64,
        POLL,
        DEADLINE,
    ));
    // enrich's consumer settings (`ConsumerSpec::enrich`).
    let consumer: consumer::PullConsumer = input
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench".to_owned()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: talon_kit::streams::ACK_WAIT,
            max_ack_pending: 10_000,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    // Each payload unchanged to every subject of `BENCH_OUT_SUBJECTS`.
    let outputs = |msg: &jetstream::Message, seq: u64| {
        BENCH_OUT_SUBJECTS.map(|subject| {
            let message = PublishMessage::build()
                .payload(msg.payload.clone())
                .message_id(format!("bench-{seq}:{subject}"));
            (subject, message)
        })
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
    let measured = Measured::of(n, started, &progress??, cpu);
    // Leave the server as empty for enrich as it was for the baseline.
    js.delete_stream(BENCH_IN).await?;
    js.delete_stream(BENCH_OUT).await?;
    Ok(measured)
}

/// Creates the suite's streams and the inventory, publishes the backlog on
/// `talon.alerts.unique`, starts enrich and times it until `NOTIFY` holds
/// `FAN_OUT` × `n`.
async fn enrich_nats(nats: &NatsServer, server: Option<u32>, n: usize) -> anyhow::Result<Measured> {
    let js = talon_kit::nats::jetstream(nats.client().await);
    ensure_all(&js, 1).await?;
    let bucket = ensure_clients_bucket(&js, 1).await?;
    for i in 0..CLIENTS {
        bucket
            .put(format!("C.{i}"), serde_json::to_vec(&client(i))?.into())
            .await?;
    }
    publish_alerts(&js, SUBJECT_UNIQUE, (0..n).map(alert), IN_FLIGHT).await?;

    let cpu = Cpu::now(server);
    let started = Instant::now();
    let progress = tokio::spawn(watch(
        js.clone(),
        STREAM_NOTIFY,
        (FAN_OUT * n) as u64,
        POLL,
        DEADLINE,
    ));
    let enrich = start_enrich(nats, CHANNELS).await;
    let progress = progress.await??;
    let cpu = Cpu::now(server).since(cpu);
    enrich.stop().await.context("stopping enrich")?;
    Ok(Measured::of(n, started, &progress, cpu))
}

fn print_transform(t: &Transform) {
    println!(
        "{:<19} {:>10} {:>7} {:>9} {:>8}",
        "transform (1 core)", "iterations", "seconds", "alerts/s", "µs/alert"
    );
    for (label, m) in [
        ("parse", &t.parse),
        ("enrich()", &t.enrich),
        ("serialize ×2", &t.serialize),
        ("per message", &t.per_message),
    ] {
        println!(
            "{label:<19} {:>10} {:>7.2} {:>9.0} {:>8.2}",
            m.iterations,
            m.elapsed.as_secs_f64(),
            m.rate(),
            m.micros()
        );
    }
}

fn print_nats(rows: &[(&str, &Measured)]) {
    let base = rows[0].1;
    println!(
        "{:<19} {:>6} {:>7} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "through NATS",
        "alerts",
        "seconds",
        "alerts/s",
        "msgs/s",
        "vs base",
        "startup",
        "steady/s",
        "vs base",
        "nats µs/a",
        "proc µs/a",
    );
    for (label, m) in rows {
        let (steady, steady_ratio) = match (m.steady_rate(), base.steady_rate()) {
            (Some(r), Some(b)) => (format!("{r:.0}"), format!("{:.2}x", r / b)),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        let per_alert = |cpu: f64| cpu * 1e6 / m.alerts as f64;
        println!(
            "{label:<19} {:>6} {:>7.2} {:>9.0} {:>9.0} {:>8} {:>8} {:>9} {:>8} {:>9.1} {:>9.1}",
            m.alerts,
            m.elapsed.as_secs_f64(),
            m.rate(),
            m.rate() * FAN_OUT as f64,
            format!("{:.2}x", m.rate() / base.rate()),
            format!("{:.2}s", m.startup.as_secs_f64()),
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

    // Before the server starts: nothing else runs on the machine's cores.
    let transform = transform(args.iterations).context("transform")?;

    let nats = NatsServer::start().await;
    let version = nats.client().await.server_info().version;
    let server = nats_server_pid();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} CPUs ({}); nats-server {version}, default sync, file storage; \
         N = {} (transform), M = {} (NATS); each alert to {FAN_OUT} of 6 channels; \
         input {} B, each channel message {} B",
        cpu_model(),
        args.iterations,
        args.alerts,
        transform.input_bytes,
        transform.output_bytes,
    );

    let base = baseline(&nats, server, args.alerts)
        .await
        .context("baseline")?;
    let via_nats = enrich_nats(&nats, server, args.alerts)
        .await
        .context("enrich (NATS)")?;

    println!();
    print_transform(&transform);
    println!();
    print_nats(&[("baseline", &base), ("enrich (NATS)", &via_nats)]);
    println!(
        "\nparse: from_slice of the input; enrich(): transform::enrich alone; serialize ×2: \
         per routed channel, channel set + to_vec + subject + msg id; per message: the three, \
         as enrich's handle() does.\nalerts/s: M over the time from the start (consumer \
         created, or enrich started) to the last output; msgs/s: channel messages, {FAN_OUT} \
         per alert.\nstartup: until a {}ms poll of the output stream first saw a message; \
         steady/s: the rest over the rest of the time.\nnats/proc µs/a: CPU time per alert of \
         nats-server and of this process (enrich or the baseline hop, and the pollers).",
        POLL.as_millis()
    );
    Ok(())
}
