//! notify's delivery rate to a web hook, with 1 to 3 replicas (the release
//! binary `talon-notify`, one process each) sharing the channel's durable
//! consumer, each scenario on a fresh nats-server.
//!
//! `cargo bench -p talon-tests --bench notify [-- --alerts N --slow-alerts N2]`
//!
//! 1. fast receiver (answers 200 at once): N alerts (default 5000), 1, 2
//!    and 3 replicas, `max_in_flight = 16`;
//! 2. slow receiver (answers 200 after 50 ms): N2 alerts (default 600),
//!    one replica at `max_in_flight` 1, 4 and 16, then 2 and 3 replicas at
//!    `max_in_flight` 4. Ideal: max_in_flight × replicas / 50 ms.
//!
//! Every backlog is routed to `Server.Monitor.Alerts.hook` before the
//! replicas start (`rate_per_minute = 0`). The receiver runs in this
//! process and stamps each request on arrival; deliveries/s is the distinct
//! alerts accepted over the time from the first arrival to the end of the
//! last request (its arrival plus the receiver's delay), so process startup
//! is left out and shown on its own. A scenario stops when all N were
//! answered or after `DEADLINE`. Each also checks that every alert was
//! accepted exactly once, and prints duplicates and missing alerts instead
//! of asserting.
//! Nothing is asserted on timing: this prints numbers for a human to read.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use clap::Parser;
use futures::StreamExt;
use talon_proto::names::STREAM_NOTIFY;
use talon_tests::bench::{at_least, cpu_model, cpu_seconds, log_to_stderr, nats_server_pid};
use talon_tests::receiver::{Hit, Receiver, Reply};
use talon_tests::{
    accepted_alert, binary, ports, publish_routed, stream_messages, test_config_text, wait_ready,
    NatsServer, ServiceProcess,
};

/// The channel every alert is routed to.
const CHANNEL: &str = "hook";
/// The header each replica adds, so deliveries can be told apart.
const REPLICA_HEADER: &str = "x-bench-replica";
/// The slow receiver's delay per request.
const SLOW: Duration = Duration::from_millis(50);
/// `max_in_flight` of the fast scenarios.
const FAST_IN_FLIGHT: u32 = 16;
/// Publish acks pending at once while the backlog is published.
const PUBLISH_IN_FLIGHT: usize = 64;
/// How often the receiver's hits are counted (only for knowing when to
/// stop and for the CPU window: the rate comes from the hits' own
/// timestamps).
const POLL: Duration = Duration::from_millis(50);
/// How long to keep listening after the last expected delivery, so late
/// duplicates are seen.
const QUIET: Duration = Duration::from_millis(500);
/// Give up on a scenario after this long: the slowest (600 alerts, one at a
/// time, 50 ms each) needs 30 s at its ideal rate.
const DEADLINE: Duration = Duration::from_secs(45);
/// An alert's `received_at`, ms.
const T0: i64 = 1_790_000_000_000;

/// notify's delivery rate to a web hook, with 1 to 3 replicas.
#[derive(Parser)]
#[command(bin_name = "cargo bench -p talon-tests --bench notify --")]
struct Args {
    /// Alerts of each fast-receiver scenario.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = at_least::<1>)]
    alerts: usize,
    /// Alerts of each slow-receiver scenario.
    #[arg(long, value_name = "N2", default_value_t = 600, value_parser = at_least::<1>)]
    slow_alerts: usize,
    #[command(flatten)]
    _cargo: talon_tests::bench::Cargo,
}

/// One measurement: a fresh nats-server, a backlog, replicas started.
struct Scenario {
    name: &'static str,
    replicas: usize,
    max_in_flight: u32,
    alerts: usize,
    /// The receiver's delay per request.
    delay: Duration,
}

impl Scenario {
    /// max_in_flight × replicas requests of `delay` each at once; `None`
    /// for the fast receiver.
    fn ideal(&self) -> Option<f64> {
        (!self.delay.is_zero())
            .then(|| self.max_in_flight as f64 * self.replicas as f64 / self.delay.as_secs_f64())
    }
}

/// What a scenario measured.
struct Measured {
    /// Distinct alerts accepted.
    delivered: usize,
    /// Spawn of the replicas to the first request.
    startup: Duration,
    /// First request's arrival to the end of the last one.
    span: Duration,
    /// The longest time between two requests' arrivals.
    longest_gap: Duration,
    /// CPU time of nats-server, the replicas and this process over the
    /// wall time from the spawn to the last delivery being seen, as a share
    /// of all CPUs.
    cpu_busy: f64,
    /// Accepted requests per replica, in replica order.
    per_replica: Vec<usize>,
    duplicates: usize,
    missing: usize,
    /// Requests not answered 2xx (none are scripted).
    failed: usize,
    /// Messages left in `NOTIFY` at the end (acked ones leave it).
    left: u64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.span.as_secs_f64()
    }
}

fn alert_id(i: usize) -> String {
    format!("b{i}")
}

/// Routes `n` alerts to `CHANNEL`, up to `PUBLISH_IN_FLIGHT` at once.
async fn publish_backlog(js: &jetstream::Context, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(PUBLISH_IN_FLIGHT, |i| async move {
            let alert = accepted_alert(&alert_id(i), "Bench", T0 + i as i64, 0);
            publish_routed(js, CHANNEL, &alert).await;
        })
        .await;
}

/// Replica `index`'s config: its own `http_listen` port, and a header
/// naming it on every delivery.
fn write_config(
    dir: &Path,
    nats: &NatsServer,
    receiver: &Receiver,
    scenario: &Scenario,
    index: usize,
    port: u16,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(format!("notify-{index}.toml"));
    let text = test_config_text(
        nats,
        &format!(
            "[notify]\nhttp_listen = \"127.0.0.1:{port}\"\n\n[[channels]]\nid = \"{CHANNEL}\"\n\
             kind = \"webhook\"\nurl = \"{url}\"\nrate_per_minute = 0\nmax_in_flight = {mif}\n\
             headers = {{ \"{REPLICA_HEADER}\" = \"{index}\" }}\n",
            url = receiver.url("/hook"),
            mif = scenario.max_in_flight,
        ),
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Waits until the receiver has answered `n` requests (or `DEADLINE`).
async fn wait_hits(receiver: &Receiver, n: usize, started: Instant) -> bool {
    while started.elapsed() < DEADLINE {
        if receiver.hits().len() >= n {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// Whether every alert was accepted once, and who sent how many.
fn check(hits: &[Hit], scenario: &Scenario) -> (usize, usize, usize, Vec<usize>) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_replica = vec![0; scenario.replicas];
    let mut failed = 0;
    for hit in hits {
        if !(200..300).contains(&hit.status) {
            failed += 1;
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap_or_default();
        let id = body["id"].as_str().unwrap_or("<no id>").to_owned();
        *counts.entry(id).or_default() += 1;
        let replica = hit
            .headers
            .get(REPLICA_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(slot) = replica.and_then(|r| per_replica.get_mut(r)) {
            *slot += 1;
        }
    }
    let duplicates: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    if !duplicates.is_empty() {
        eprintln!(
            "{} ×{} mif {}: {} alerts delivered more than once: {:?}",
            scenario.name,
            scenario.replicas,
            scenario.max_in_flight,
            duplicates.len(),
            duplicates.iter().take(20).collect::<Vec<_>>()
        );
    }
    let missing = (0..scenario.alerts)
        .filter(|i| !counts.contains_key(&alert_id(*i)))
        .count();
    let extra = duplicates.iter().map(|(_, c)| **c - 1).sum();
    (extra, missing, failed, per_replica)
}

async fn run(scenario: &Scenario) -> anyhow::Result<Measured> {
    let nats = NatsServer::start().await;
    let receiver = Receiver::start(vec![Reply::status(200).delay(scenario.delay)]).await;
    let js = jetstream::new(nats.client().await);
    talon_kit::streams::ensure_all(&js, 1)
        .await
        .context("creating the streams")?;
    publish_backlog(&js, scenario.alerts).await;

    let dir = tempfile::tempdir().context("temp dir")?;
    // Held until the replicas are spawned.
    let reserved: Vec<ports::Reserved> = (0..scenario.replicas).map(|_| ports::reserve()).collect();
    let ports: Vec<u16> = reserved.iter().map(ports::Reserved::port).collect();
    let mut configs = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        configs.push(write_config(
            dir.path(),
            &nats,
            &receiver,
            scenario,
            index,
            *port,
        )?);
    }

    binary("talon-notify");
    let server_pid = nats_server_pid();
    let cpu_before = cpu_of(server_pid.into_iter().chain([std::process::id()]));
    let started = Instant::now();
    let replicas: Vec<ServiceProcess> = configs
        .iter()
        .zip(reserved)
        .map(|(c, reserved)| {
            reserved.release();
            ServiceProcess::spawn("talon-notify", c, &[("RUST_LOG", "warn")])
        })
        .collect();
    for port in &ports {
        if let Err(e) = wait_ready(&format!("127.0.0.1:{port}"), Duration::from_secs(30)).await {
            for (i, r) in replicas.iter().enumerate() {
                eprintln!("replica {i} stderr:\n{}", r.stderr_lines().join("\n"));
            }
            return Err(e);
        }
    }
    if !wait_hits(&receiver, scenario.alerts, started).await {
        eprintln!(
            "{} ×{} mif {}: only {} of {} requests after {DEADLINE:?}",
            scenario.name,
            scenario.replicas,
            scenario.max_in_flight,
            receiver.hits().len(),
            scenario.alerts
        );
    }
    let window = started.elapsed();
    let pids = replicas.iter().map(|r| r.child.id());
    let cpu = cpu_of(pids.chain(server_pid).chain([std::process::id()])) - cpu_before;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::time::sleep(QUIET + scenario.delay).await;
    let hits = receiver.hits();
    let left = stream_messages(&js, STREAM_NOTIFY).await;
    for (i, r) in replicas.iter().enumerate() {
        let warnings: Vec<String> = r
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        if !warnings.is_empty() {
            eprintln!(
                "{} ×{} mif {}: replica {i} logged {} warnings, first: {}",
                scenario.name,
                scenario.replicas,
                scenario.max_in_flight,
                warnings.len(),
                warnings[0]
            );
        }
    }
    drop(replicas);

    let (duplicates, missing, failed, per_replica) = check(&hits, scenario);
    let mut arrivals: Vec<Instant> = hits.iter().map(|h| h.at).collect();
    arrivals.sort();
    let (Some(first), Some(last)) = (arrivals.first().copied(), arrivals.last().copied()) else {
        bail!("no delivery at all");
    };
    let longest_gap = arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    Ok(Measured {
        delivered: scenario.alerts - missing,
        startup: first - started,
        span: last - first + scenario.delay,
        longest_gap,
        cpu_busy: cpu / (window.as_secs_f64() * cpus as f64),
        per_replica,
        duplicates,
        missing,
        failed,
        left,
    })
}

/// CPU seconds used so far by all of `pids` (a replica not started yet
/// counts 0).
fn cpu_of(pids: impl Iterator<Item = u32>) -> f64 {
    pids.filter_map(cpu_seconds).sum()
}

fn print_table(rows: &[(Scenario, Measured)]) {
    println!(
        "{:<10} {:>8} {:>13} {:>6} {:>7} {:>6} {:>12} {:>5} {:>8} {:>7} {:>4} {:<14} {:>12}",
        "scenario",
        "replicas",
        "max_in_flight",
        "alerts",
        "startup",
        "span",
        "deliveries/s",
        "ideal",
        "of ideal",
        "max gap",
        "cpu",
        "per replica",
        "dup/miss/err",
    );
    for (s, m) in rows {
        let (ideal, share) = match s.ideal() {
            Some(i) => (format!("{i:.0}"), format!("{:.0}%", 100.0 * m.rate() / i)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let per_replica = m
            .per_replica
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("/");
        println!(
            "{:<10} {:>8} {:>13} {:>6} {:>6.2}s {:>5.2}s {:>12.1} {:>5} {:>8} {:>6.2}s {:>4} {:<14} {:>12}",
            s.name,
            s.replicas,
            s.max_in_flight,
            s.alerts,
            m.startup.as_secs_f64(),
            m.span.as_secs_f64(),
            m.rate(),
            ideal,
            share,
            m.longest_gap.as_secs_f64(),
            format!("{:.0}%", 100.0 * m.cpu_busy),
            per_replica,
            format!("{}/{}/{}", m.duplicates, m.missing, m.failed),
        );
        if m.left > 0 {
            println!("  ({} messages still in {STREAM_NOTIFY})", m.left);
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    log_to_stderr();

    // Built (in the bench's profile) before any clock starts.
    let bin = binary("talon-notify");
    let profile = bin
        .parent()
        .and_then(Path::file_name)
        .map_or_else(String::new, |p| p.to_string_lossy().into_owned());
    if profile != "release" {
        eprintln!("warning: {} is not a release build", bin.display());
    }
    let version = NatsServer::start()
        .await
        .client()
        .await
        .server_info()
        .version;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} CPUs ({}); nats-server {version}, default sync, file storage; \
         {}; receiver in this process",
        cpu_model(),
        bin.display()
    );

    let fast = |replicas| Scenario {
        name: "fast",
        replicas,
        max_in_flight: FAST_IN_FLIGHT,
        alerts: args.alerts,
        delay: Duration::ZERO,
    };
    let slow = |replicas, max_in_flight| Scenario {
        name: "slow 50ms",
        replicas,
        max_in_flight,
        alerts: args.slow_alerts,
        delay: SLOW,
    };
    let scenarios = [
        fast(1),
        fast(2),
        fast(3),
        slow(1, 1),
        slow(1, 4),
        slow(1, 16),
        slow(2, 4),
        slow(3, 4),
    ];
    let mut rows = Vec::new();
    for s in scenarios {
        let m = run(&s).await.with_context(|| {
            format!(
                "{} ×{} max_in_flight {}",
                s.name, s.replicas, s.max_in_flight
            )
        })?;
        eprintln!(
            "{} ×{} mif {}: {:.0} deliveries/s",
            s.name,
            s.replicas,
            s.max_in_flight,
            m.rate()
        );
        rows.push((s, m));
    }

    println!();
    print_table(&rows);
    println!(
        "\ndeliveries/s: distinct alerts accepted over the time from the first request's \
         arrival to the end of the last one (startup: replicas spawned to the first request).\n\
         ideal: max_in_flight × replicas / {} ms. max gap: longest time between two requests' \
         arrivals. cpu: CPU time of nats-server, the replicas and this process (the receiver) \
         over spawn-to-done wall time, as a share of all CPUs.\nper replica: accepted requests \
         by replica. dup/miss/err: extra deliveries, alerts not accepted within {} s, non-2xx \
         answers.",
        SLOW.as_millis(),
        DEADLINE.as_secs()
    );
    Ok(())
}
