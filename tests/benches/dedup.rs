//! dedup's throughput, and its footprint at 1,000,000 live windows, measured
//! in one run against one fresh nats-server with the release binary.
//!
//! `cargo bench -p talon-tests --bench dedup [-- --alerts N --windows W --against M --fill service|direct]`
//!
//! 1. suppressions/s: N alerts over 10 names (default window, 7200 s) as a
//!    backlog in `ACCEPTED`, then `talon-dedup` started on an empty data dir,
//!    timed until `ACCEPTED` is empty: 10 open windows, the rest suppressed;
//! 2. fresh alerts/s: the same with N distinct names: every alert opens a
//!    window and goes on to `talon.alerts.unique`;
//! 3. W live windows (default 1,000,000): W distinct names through the
//!    service (a fresh-alerts run at scale; past `FILL_BUDGET` it falls back
//!    to writing the windows with `PartitionStore`, and says so). Then, on
//!    that data dir: restart-to-ready (spawn to `/readyz` 200, polled every
//!    10 ms), RSS once ready and idle, and again once dedup's sweep has
//!    walked every window (its first pass, about a minute at 1,000,000:
//!    the steady state of an idle dedup), M alerts (default 100,000)
//!    suppressed over M distinct existing keys spread over the W (a
//!    backlog, a new process) with its rate and the RSS after, and
//!    restart-to-ready again after a SIGKILL.
//!
//! Every backlog is published before dedup starts, with up to `IN_FLIGHT`
//! publish acks pending; timing starts at the spawn and stops when a 20 ms
//! poll of `ACCEPTED` sees it empty. CPU time of dedup and of nats-server
//! is read from /proc. Nothing is asserted on timing: this prints numbers
//! for a human to read next to the targets they answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream;
use clap::{CommandFactory as _, Parser};
use talon_dedup::store::{Commit, PartitionStore};
use talon_dedup::window::Window;
use talon_proto::names::metrics::DEDUP_LIVE_WINDOWS;
use talon_proto::names::{accepted_subject, STREAM_ACCEPTED, STREAM_UNIQUE};
use talon_proto::Alert;
use talon_tests::bench::{
    at_least, cpu_model, cpu_seconds, log_to_stderr, nats_server_pid, publish_alerts,
};
use talon_tests::{
    accepted_alert, binary, ports, stream_messages, test_config_text, NatsServer, ServiceProcess,
};

/// The partition every alert goes to, and the one dedup owns.
const PARTITION: u32 = 0;
/// Names of the suppressions run.
const NAMES: usize = 10;
/// A fixed `received_at` origin, ms; alert `i` of a run is received at
/// `T0 + i` ms, well inside the default window of 7200 s.
const T0: i64 = 1_790_000_000_000;
/// `[dedup].default_seconds`.
const WINDOW_SECONDS: i64 = 7200;
/// Publish acks pending at once while the backlog is published.
const IN_FLIGHT: usize = 2_000;
/// How often `ACCEPTED` is polled.
const POLL: Duration = Duration::from_millis(20);
/// How often `/readyz` is polled.
const READY_POLL: Duration = Duration::from_millis(10);
/// How long the service may take to fill the windows before the bench
/// writes them itself.
const FILL_BUDGET: Duration = Duration::from_secs(180);
/// Give up on any other drain after this long.
const DEADLINE: Duration = Duration::from_secs(120);
/// Windows per `Commit` when they are written directly.
const DIRECT_BATCH: usize = 10_000;
/// How long dedup is left alone after `/readyz` before its RSS is read.
const IDLE: Duration = Duration::from_secs(2);
/// How long the first sweep pass over the windows may take.
const SWEEP_DEADLINE: Duration = Duration::from_secs(150);
/// A prime to spread the keys of the suppressions against the W windows
/// (coprime with W unless W is a multiple of it).
const SPREAD: usize = 7_919;

const TARGET_SUPPRESSIONS: f64 = 20_000.0;
const TARGET_RSS_MB: f64 = 200.0;
const TARGET_READY: Duration = Duration::from_secs(2);

/// How run 3's windows are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Fill {
    /// By the service, consuming W alerts (falling back to direct past the
    /// budget).
    Service,
    /// Straight into the store with `PartitionStore`.
    Direct,
}

/// dedup's throughput, and its footprint at many live windows.
#[derive(Parser)]
#[command(bin_name = "cargo bench -p talon-tests --bench dedup --")]
struct Args {
    /// Alerts of the suppressions and the fresh-alerts runs.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = at_least::<NAMES>)]
    alerts: usize,
    /// Live windows of run 3.
    #[arg(long, value_name = "W", default_value_t = 1_000_000, value_parser = at_least::<NAMES>)]
    windows: usize,
    /// Suppressions over existing keys in run 3 (at most W).
    #[arg(long, value_name = "M", default_value_t = 100_000, value_parser = at_least::<NAMES>)]
    against: usize,
    /// How run 3's windows are written.
    #[arg(long, value_enum, default_value_t = Fill::Service)]
    fill: Fill,
    #[command(flatten)]
    _cargo: talon_tests::bench::Cargo,
}

impl Args {
    /// The arguments, checked against each other as well (one suppression
    /// per key, every key visited once); exits with usage if they are not
    /// right.
    fn checked() -> Args {
        let args = Args::parse();
        let wrong = |message: String| -> ! {
            Args::command()
                .error(clap::error::ErrorKind::ValueValidation, message)
                .exit()
        };
        if !coprime(args.windows, SPREAD) {
            wrong(format!("--windows must not be a multiple of {SPREAD}"));
        }
        if args.against > args.windows {
            wrong("--against must not exceed --windows (one suppression per key)".into());
        }
        args
    }
}

/// `i * SPREAD % w` visits every window once for `i` in `0..w` iff this
/// holds.
fn coprime(mut a: usize, mut b: usize) -> bool {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a == 1
}

/// The `i`-th alert of run `run`: named `name`, received at `T0 + at` ms,
/// with the default window.
fn alert(run: &str, i: usize, name: &str, at: usize) -> Alert {
    accepted_alert(&format!("{run}-{i}"), name, T0 + at as i64, 0)
}

/// Publishes `n` alerts (`make(i)`, each serialized once) on
/// `talon.alerts.accepted.0`, up to `IN_FLIGHT` acks pending, and waits for
/// every ack. Returns how long it took.
async fn publish_backlog(
    js: &jetstream::Context,
    n: usize,
    make: impl Fn(usize) -> Alert,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    publish_alerts(
        js,
        &accepted_subject(PARTITION),
        (0..n).map(make),
        IN_FLIGHT,
    )
    .await?;
    Ok(started.elapsed())
}

/// A temporary directory with the config of a dedup on a fixed port and
/// its data dir. The port is reserved until the first spawn (restarts are
/// timed to `/readyz` on it, so it cannot be port 0).
struct DedupDir {
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: String,
    reserved: std::sync::Mutex<Option<ports::Reserved>>,
}

impl DedupDir {
    fn new(nats: &NatsServer) -> anyhow::Result<DedupDir> {
        let dir = tempfile::tempdir()?;
        let reserved = ports::reserve();
        let addr = format!("127.0.0.1:{}", reserved.port());
        let config = dir.path().join("talon.toml");
        let text = test_config_text(
            nats,
            &format!(
                "[dedup]\nhttp_listen = \"{addr}\"\ndata_dir = {:?}\ndefault_seconds = \
                 {WINDOW_SECONDS}\npartitions = [{PARTITION}]\n",
                dir.path().join("data").display().to_string()
            ),
        );
        std::fs::write(&config, text)?;
        Ok(DedupDir {
            dir,
            config,
            addr,
            reserved: std::sync::Mutex::new(Some(reserved)),
        })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&self) -> ServiceProcess {
        binary("talon-dedup");
        if let Some(reserved) = self
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            reserved.release();
        }
        ServiceProcess::spawn("talon-dedup", &self.config, &[("RUST_LOG", "warn")])
    }
}

/// SIGTERM, so sled is flushed and closed as in a rolling restart.
fn stop(mut dedup: ServiceProcess) -> anyhow::Result<Duration> {
    let started = Instant::now();
    match dedup.terminate(Duration::from_secs(60)) {
        Some(status) if status.success() => Ok(started.elapsed()),
        other => bail!(
            "dedup did not stop cleanly ({other:?}): {:?}",
            dedup.stderr_lines()
        ),
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let kb: f64 = l
            .strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    })
}

/// Bytes of the files under `path`: apparent and allocated.
fn dir_size(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

/// One timed drain of a backlog.
struct Measured {
    alerts: usize,
    /// From the spawn until `ACCEPTED` was empty.
    elapsed: Duration,
    /// From the spawn until a poll first saw the backlog shrink.
    startup: Duration,
    /// Alerts after that first poll, and the time they took.
    steady: (usize, Duration),
    /// Outputs in `UNIQUE` afterwards.
    unique: u64,
    dedup_cpu: f64,
    nats_cpu: f64,
    /// RSS and peak RSS of dedup at the end, MB.
    rss_mb: f64,
    hwm_mb: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.alerts as f64 / self.elapsed.as_secs_f64()
    }

    fn steady_rate(&self) -> f64 {
        let (n, d) = self.steady;
        n as f64 / d.as_secs_f64().max(1e-9)
    }
}

/// How a drain ended.
enum Drained {
    Done(Measured, ServiceProcess),
    /// Past the budget: how many were done by then.
    OverBudget(usize, Duration, ServiceProcess),
}

/// Spawns dedup on `dir` with `n` alerts waiting in `ACCEPTED` and polls
/// until it is empty. Leaves dedup running.
async fn drain(
    js: &jetstream::Context,
    dir: &DedupDir,
    nats_pid: Option<u32>,
    n: usize,
    budget: Duration,
) -> anyhow::Result<Drained> {
    let have = stream_messages(js, STREAM_ACCEPTED).await;
    if have != n as u64 {
        bail!("{STREAM_ACCEPTED} holds {have} messages, expected {n}");
    }
    let nats_before = nats_pid.and_then(cpu_seconds).unwrap_or(f64::NAN);
    let started = Instant::now();
    let dedup = dir.spawn();
    let pid = dedup.child.id();
    let mut first: Option<(Instant, usize)> = None;
    loop {
        tokio::time::sleep(POLL).await;
        let left = stream_messages(js, STREAM_ACCEPTED).await as usize;
        let now = Instant::now();
        let done = n.saturating_sub(left);
        if done > 0 && first.is_none() {
            first = Some((now, done));
        }
        if left == 0 {
            let dedup_cpu = cpu_seconds(pid).unwrap_or(f64::NAN);
            let nats_cpu = nats_pid.and_then(cpu_seconds).unwrap_or(f64::NAN) - nats_before;
            let (first, first_count) = first.unwrap_or((now, n));
            // Let the last batch's publishes settle before UNIQUE is counted.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let measured = Measured {
                alerts: n,
                elapsed: now - started,
                startup: first - started,
                steady: (n - first_count, now - first),
                unique: stream_messages(js, STREAM_UNIQUE).await,
                dedup_cpu,
                nats_cpu,
                rss_mb: status_mb(pid, "VmRSS").unwrap_or(f64::NAN),
                hwm_mb: status_mb(pid, "VmHWM").unwrap_or(f64::NAN),
            };
            return Ok(Drained::Done(measured, dedup));
        }
        if now - started > budget {
            return Ok(Drained::OverBudget(done, now - started, dedup));
        }
    }
}

/// `drain` that must finish within `DEADLINE`.
async fn drain_all(
    js: &jetstream::Context,
    dir: &DedupDir,
    nats_pid: Option<u32>,
    n: usize,
) -> anyhow::Result<(Measured, ServiceProcess)> {
    match drain(js, dir, nats_pid, n, DEADLINE).await? {
        Drained::Done(m, dedup) => Ok((m, dedup)),
        Drained::OverBudget(done, after, dedup) => bail!(
            "dedup did {done} of {n} alerts in {after:?}; its stderr: {:?}",
            dedup.stderr_lines()
        ),
    }
}

/// Empties `UNIQUE`, so each run counts its own outputs.
async fn purge(js: &jetstream::Context, stream: &str) -> anyhow::Result<()> {
    js.get_stream(stream)
        .await?
        .purge()
        .await
        .map_err(|e| anyhow::anyhow!("purging {stream}: {e}"))?;
    Ok(())
}

/// Runs 1 and 2: a backlog of `n` alerts from `make`, drained by a new dedup
/// on an empty data dir.
async fn backlog_run(
    js: &jetstream::Context,
    nats: &NatsServer,
    nats_pid: Option<u32>,
    n: usize,
    make: impl Fn(usize) -> Alert,
) -> anyhow::Result<Measured> {
    purge(js, STREAM_UNIQUE).await?;
    let dir = DedupDir::new(nats)?;
    publish_backlog(js, n, make).await?;
    let (m, dedup) = drain_all(js, &dir, nats_pid, n).await?;
    stop(dedup)?;
    Ok(m)
}

/// Writes windows `0..w` of run 3 straight into the store, as dedup would
/// have after consuming them; its last applied sequence is `ACCEPTED`'s.
async fn fill_direct(js: &jetstream::Context, data: &Path, w: usize) -> anyhow::Result<Duration> {
    let last_seq = js
        .get_stream(STREAM_ACCEPTED)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let started = Instant::now();
    let store = PartitionStore::open(data, PARTITION, talon_dedup::CACHE_BYTES)?;
    let mut start = 0;
    while start < w {
        let end = (start + DIRECT_BATCH).min(w);
        let windows = (start..end)
            .map(|i| {
                let at = T0 + i as i64;
                let window = Window {
                    start_ms: at,
                    end_ms: at + WINDOW_SECONDS * 1000,
                    suppressed: 0,
                    suppressed_before: 0,
                    opener_seq: i as u64 + 1,
                };
                (fill_name(i), window)
            })
            .collect();
        store
            .commit(&Commit {
                windows,
                last_seq,
                ..Commit::default()
            })
            .await?;
        start = end;
    }
    drop(store);
    Ok(started.elapsed())
}

fn fill_name(i: usize) -> String {
    format!("window-{i}")
}

/// How run 3's windows came to be.
enum Filled {
    Service(Measured),
    /// The service's rate over the budget, then how long the direct write
    /// took.
    Direct {
        service: Option<(usize, Duration)>,
        took: Duration,
    },
}

/// What run 3 found.
struct AtScale {
    windows: usize,
    filled: Filled,
    ready: Duration,
    ready_after_kill: Duration,
    ready_rss_mb: f64,
    idle_rss_mb: f64,
    /// From the spawn to the end of the first sweep pass, the live windows
    /// it counted, and the RSS then.
    sweep_pass: Duration,
    swept_live: i64,
    swept_rss_mb: f64,
    suppressions: Measured,
    disk_filled: (u64, u64),
    disk_after: (u64, u64),
}

/// Spawns dedup on `dir` and polls `/readyz` every `READY_POLL` until it
/// answers 200: how long that took.
async fn restart(dir: &DedupDir) -> anyhow::Result<(Duration, ServiceProcess)> {
    let http = talon_kit::outbound::client();
    let url = format!("http://{}/readyz", dir.addr);
    let started = Instant::now();
    let dedup = dir.spawn();
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok((started.elapsed(), dedup));
            }
        }
        if started.elapsed() > DEADLINE {
            bail!(
                "dedup not ready after {DEADLINE:?}: {:?}",
                dedup.stderr_lines()
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// Waits until dedup's sweep has finished its first pass over the windows
/// (it walks them all, `SWEEP_STEP` every 500 ms, and sets the live-windows
/// gauge at the end of a pass): how long since `since`, and the gauge.
async fn first_sweep_pass(dir: &DedupDir, since: Instant) -> anyhow::Result<(Duration, i64)> {
    let http = talon_kit::outbound::client();
    let url = format!("http://{}/metrics", dir.addr);
    let gauge = format!("{DEDUP_LIVE_WINDOWS}{{partition=\"{PARTITION}\"}} ");
    loop {
        let text = http.get(&url).send().await?.text().await?;
        let live = text
            .lines()
            .find_map(|l| l.strip_prefix(&gauge)?.trim().parse::<i64>().ok());
        if let Some(live) = live.filter(|n| *n > 0) {
            return Ok((since.elapsed(), live));
        }
        if since.elapsed() > SWEEP_DEADLINE {
            bail!("no sweep pass ended within {SWEEP_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Run 3: `w` live windows, then restart-to-ready, RSS, and `n`
/// suppressions over existing keys.
async fn at_scale(
    js: &jetstream::Context,
    nats: &NatsServer,
    nats_pid: Option<u32>,
    args: &Args,
) -> anyhow::Result<AtScale> {
    let (w, n) = (args.windows, args.against);
    purge(js, STREAM_UNIQUE).await?;
    let dir = DedupDir::new(nats)?;
    let filled = match args.fill {
        Fill::Direct => Filled::Direct {
            service: None,
            took: fill_direct(js, &dir.data(), w).await?,
        },
        Fill::Service => {
            let took = publish_backlog(js, w, |i| alert("w", i, &fill_name(i), i)).await?;
            println!(
                "run 3: {w} alerts published in {:.1}s ({:.0}/s)",
                took.as_secs_f64(),
                w as f64 / took.as_secs_f64()
            );
            match drain(js, &dir, nats_pid, w, FILL_BUDGET).await? {
                Drained::Done(m, dedup) => {
                    stop(dedup)?;
                    Filled::Service(m)
                }
                Drained::OverBudget(done, after, dedup) => {
                    stop(dedup)?;
                    println!(
                        "run 3: dedup filled {done} of {w} windows in {:.0}s ({:.0}/s): over \
                         the {}s budget, writing them directly instead",
                        after.as_secs_f64(),
                        done as f64 / after.as_secs_f64(),
                        FILL_BUDGET.as_secs()
                    );
                    purge(js, STREAM_ACCEPTED).await?;
                    std::fs::remove_dir_all(dir.data())?;
                    Filled::Direct {
                        service: Some((done, after)),
                        took: fill_direct(js, &dir.data(), w).await?,
                    }
                }
            }
        }
    };
    let disk_filled = dir_size(&dir.data());

    // (a) restart-to-ready and (b) RSS, on an empty ACCEPTED.
    let started_at = Instant::now();
    let (ready, dedup) = restart(&dir).await?;
    let pid = dedup.child.id();
    let ready_rss_mb = status_mb(pid, "VmRSS").unwrap_or(f64::NAN);
    tokio::time::sleep(IDLE).await;
    let idle_rss_mb = status_mb(pid, "VmRSS").unwrap_or(f64::NAN);
    // Idle, but not untouched: the sweep reads every window once a pass.
    let (sweep_pass, swept_live) = first_sweep_pass(&dir, started_at).await?;
    let swept_rss_mb = status_mb(pid, "VmRSS").unwrap_or(f64::NAN);
    stop(dedup)?;

    // (c) n suppressions over n distinct existing keys spread over the w,
    // each received after every fill alert and inside its window.
    purge(js, STREAM_UNIQUE).await?;
    publish_backlog(js, n, |i| alert("x", i, &fill_name(i * SPREAD % w), w + i)).await?;
    let (suppressions, mut dedup) = drain_all(js, &dir, nats_pid, n).await?;
    // (d) restart-to-ready after a crash: sled recovers from its log.
    dedup.kill9();
    let (ready_after_kill, dedup) = restart(&dir).await?;
    stop(dedup)?;
    Ok(AtScale {
        ready_after_kill,
        windows: w,
        filled,
        ready,
        ready_rss_mb,
        idle_rss_mb,
        sweep_pass,
        swept_live,
        swept_rss_mb,
        suppressions,
        disk_filled,
        disk_after: dir_size(&dir.data()),
    })
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / (1024.0 * 1024.0))
}

fn print_runs(rows: &[(&str, &Measured)]) {
    println!(
        "{:<26} {:>8} {:>7} {:>9} {:>8} {:>9} {:>8} {:>10} {:>9}",
        "run",
        "alerts",
        "seconds",
        "alerts/s",
        "startup",
        "steady/s",
        "unique",
        "dedup µs/a",
        "nats µs/a",
    );
    for (label, m) in rows {
        let per_alert = |cpu: f64| cpu * 1e6 / m.alerts as f64;
        println!(
            "{label:<26} {:>8} {:>7.2} {:>9.0} {:>7.2}s {:>9.0} {:>8} {:>10.1} {:>9.1}",
            m.alerts,
            m.elapsed.as_secs_f64(),
            m.rate(),
            m.startup.as_secs_f64(),
            m.steady_rate(),
            m.unique,
            per_alert(m.dedup_cpu),
            per_alert(m.nats_cpu),
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn print_targets(args: &Args, suppress: &Measured, fresh: &Measured, scale: &AtScale) {
    let w = scale.windows;
    let mut rows: Vec<(String, String, String, &str)> = vec![
        (
            format!("suppressions/s ({NAMES} names)"),
            format!("{:.0}", suppress.rate()),
            format!(">= {TARGET_SUPPRESSIONS:.0}"),
            verdict(suppress.rate() >= TARGET_SUPPRESSIONS),
        ),
        (
            "fresh alerts/s (distinct names)".into(),
            format!("{:.0}", fresh.rate()),
            "-".into(),
            "",
        ),
    ];
    match &scale.filled {
        Filled::Service(m) => rows.push((
            format!("fresh alerts/s filling {w}"),
            format!("{:.0}", m.rate()),
            "-".into(),
            "",
        )),
        Filled::Direct { service, took } => {
            if let Some((done, after)) = service {
                rows.push((
                    format!("fresh alerts/s filling {w}"),
                    format!(
                        "{:.0} ({done} in {:.0}s)",
                        *done as f64 / after.as_secs_f64(),
                        after.as_secs_f64()
                    ),
                    "-".into(),
                    "over budget",
                ));
            }
            rows.push((
                format!("{w} windows written directly"),
                format!("{:.1} s", took.as_secs_f64()),
                "-".into(),
                "",
            ));
        }
    }
    let s = &scale.suppressions;
    rows.extend([
        (
            format!("restart-to-ready at {w}"),
            format!("{:.3} s", scale.ready.as_secs_f64()),
            format!("< {} s", TARGET_READY.as_secs()),
            verdict(scale.ready < TARGET_READY),
        ),
        (
            "restart-to-ready after SIGKILL".into(),
            format!("{:.3} s", scale.ready_after_kill.as_secs_f64()),
            format!("< {} s", TARGET_READY.as_secs()),
            verdict(scale.ready_after_kill < TARGET_READY),
        ),
        (
            format!("RSS at ready ({w})"),
            format!("{:.0} MB", scale.ready_rss_mb),
            format!("< {TARGET_RSS_MB:.0} MB"),
            verdict(scale.ready_rss_mb < TARGET_RSS_MB),
        ),
        (
            format!("RSS ready + {}s idle ({w})", IDLE.as_secs()),
            format!("{:.0} MB", scale.idle_rss_mb),
            format!("< {TARGET_RSS_MB:.0} MB"),
            verdict(scale.idle_rss_mb < TARGET_RSS_MB),
        ),
        (
            format!(
                "RSS after sweep pass ({:.0}s, {})",
                scale.sweep_pass.as_secs_f64(),
                scale.swept_live
            ),
            format!("{:.0} MB", scale.swept_rss_mb),
            format!("< {TARGET_RSS_MB:.0} MB"),
            verdict(scale.swept_rss_mb < TARGET_RSS_MB),
        ),
        (
            format!("suppressions/s against {w}"),
            format!("{:.0}", s.rate()),
            format!(">= {TARGET_SUPPRESSIONS:.0}"),
            verdict(s.rate() >= TARGET_SUPPRESSIONS),
        ),
        (
            format!("RSS after {} suppressions", args.against),
            format!("{:.0} MB (peak {:.0})", s.rss_mb, s.hwm_mb),
            format!("< {TARGET_RSS_MB:.0} MB"),
            verdict(s.rss_mb < TARGET_RSS_MB && s.hwm_mb < TARGET_RSS_MB),
        ),
        (
            format!("data dir, {w} windows"),
            format!(
                "{} ({} allocated)",
                mb(scale.disk_filled.0),
                mb(scale.disk_filled.1)
            ),
            "-".into(),
            "",
        ),
        (
            "data dir after suppressions".into(),
            format!(
                "{} ({} allocated)",
                mb(scale.disk_after.0),
                mb(scale.disk_after.1)
            ),
            "-".into(),
            "",
        ),
    ]);
    println!("{:<34} {:>28} {:>12}", "figure", "value", "target");
    for (figure, value, target, verdict) in rows {
        println!("{figure:<34} {value:>28} {target:>12}  {verdict}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::checked();
    log_to_stderr();

    // Built (or found) before any clock starts.
    let bin = binary("talon-dedup");
    let began = Instant::now();
    let nats = NatsServer::start().await;
    let version = nats.client().await.server_info().version;
    let nats_pid = nats_server_pid();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpus} CPUs ({}); nats-server {version}, default sync, file storage\n\
         dedup: {}; N = {}, W = {}, M = {}",
        cpu_model(),
        bin.display(),
        args.alerts,
        args.windows,
        args.against,
    );
    let js = talon_kit::nats::jetstream(nats.client().await);
    talon_kit::streams::ensure_all(&js, 1).await?;

    let n = args.alerts;
    let suppress = backlog_run(&js, &nats, nats_pid, n, |i| {
        alert("s", i, &format!("name-{}", i % NAMES), i)
    })
    .await
    .context("run 1: suppressions")?;
    let fresh = backlog_run(&js, &nats, nats_pid, n, |i| {
        alert("f", i, &format!("fresh-{i}"), i)
    })
    .await
    .context("run 2: fresh alerts")?;
    let scale = at_scale(&js, &nats, nats_pid, &args)
        .await
        .context("run 3: live windows")?;

    println!();
    let fill_label = format!("fresh, filling {}", scale.windows);
    let against_label = format!("suppress vs {}", scale.windows);
    let mut rows = vec![
        ("suppressions (10 names)", &suppress),
        ("fresh (distinct names)", &fresh),
    ];
    if let Filled::Service(m) = &scale.filled {
        rows.push((&fill_label, m));
    }
    rows.push((&against_label, &scale.suppressions));
    print_runs(&rows);
    println!();
    print_targets(&args, &suppress, &fresh, &scale);
    println!(
        "\nalerts/s: alerts over the time from spawning the release binary (backlog already \
         in ACCEPTED) until a {}ms poll saw ACCEPTED empty.\nstartup: until a poll first saw \
         it shrink; steady/s: the rest over the rest of the time. unique: outputs in UNIQUE.\n\
         dedup/nats µs/a: CPU time per alert of talon-dedup and of nats-server.\n\
         restart-to-ready: spawn to /readyz 200, polled every {}ms, after a SIGTERM'd run \
         (or a SIGKILL'd one).\nwhole run: {:.0}s",
        POLL.as_millis(),
        READY_POLL.as_millis(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
