//! The console on a large history: how long a fresh replica takes to
//! rebuild its alert catalog from `HISTORY` and `TRIAGE`, how much memory
//! it then holds, and how long `GET /v1/alerts` takes for the filters
//! analysts use.
//!
//! `cargo bench -p talon-tests --bench console [-- --alerts N --queries Q]`
//!
//! 1. N enriched alerts (default 1,000,000: 200 rule names, 10,000 clients,
//!    five severities, four channels, context of four fields) are published
//!    to `talon.alerts.history`, and one triage event for every 20th alert
//!    to `talon.triage.<id>`, on a fresh nats-server.
//! 2. talon-console starts as its own process; "rebuild" runs from its
//!    start until `GET /v1/alerts` counts all N. Its resident memory (VmRSS)
//!    and peak (VmHWM) are read from /proc then.
//! 3. Each query kind runs Q times (default 50) one after another over
//!    HTTP with a session cookie; p50, p95 and the worst are printed, and the
//!    p95 over all of them.
//!
//! Nothing is asserted on timing: this prints numbers for a human to read.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use async_nats::jetstream::{self, message::PublishMessage};
use clap::Parser;
use serde_json::Value;
use talon_kit::streams::ensure_all;
use talon_proto::names::{SUBJECT_HISTORY, SUBJECT_TRIAGE_PREFIX};
use talon_proto::{Alert, ClientInfo, ContextEntry, DedupInfo, Links};
use talon_tests::bench::{at_least, cpu_model, log_to_stderr, percentile, publish_all};
use talon_tests::console::Console;
use talon_tests::{test_config_text, NatsServer, ServiceProcess};

#[derive(Parser, Debug)]
struct Args {
    /// Alerts in the history.
    #[arg(long, default_value_t = 1_000_000, value_parser = at_least::<100>)]
    alerts: usize,
    /// Runs of each query kind.
    #[arg(long, default_value_t = 50, value_parser = at_least::<1>)]
    queries: usize,
    #[command(flatten)]
    cargo: talon_tests::bench::Cargo,
}

const NAMES: usize = 200;
const CLIENTS: usize = 10_000;
const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];
const CHANNELS: [&str; 4] = ["email-soc", "inbox", "slack-secops", "pd"];
const WORDS: [&str; 16] = [
    "powershell",
    "rundll32",
    "mimikatz",
    "honey",
    "payroll",
    "lsass",
    "beacon",
    "cmd",
    "wmic",
    "schtasks",
    "certutil",
    "bitsadmin",
    "psexec",
    "vssadmin",
    "regsvr32",
    "mshta",
];
/// `received_at` of alert 0, ms; alert `i` 100 ms later than `i - 1`.
const T0: i64 = 1_790_000_000_000;
const IN_FLIGHT: usize = 4096;
const PASSWORD: &str = "bench-password";

fn alert(i: usize) -> Alert {
    let at = chrono::DateTime::from_timestamp_millis(T0 + i as i64 * 100).unwrap_or_default();
    let client = format!("C.{:016x}", (i * 7919) % CLIENTS);
    let name = format!("Sigma: rule {:03} fired", i % NAMES);
    let routed: Vec<String> = CHANNELS
        .iter()
        .enumerate()
        .filter(|(c, _)| !(i + c).is_multiple_of(3))
        .map(|(_, c)| (*c).to_owned())
        .collect();
    Alert {
        id: format!("{i:032x}"),
        received_at: at,
        timestamp: at,
        source: if i.is_multiple_of(10) {
            "http".into()
        } else {
            "nats".into()
        },
        name,
        client_id: Some(client.clone()),
        flow_id: Some(format!("F.{i:X}")),
        artifact: Some(format!("Windows.Detection.Rule{:02}", i % 20)),
        severity: Some(SEVERITIES[i % SEVERITIES.len()].to_owned()),
        context: Some(vec![
            ContextEntry {
                key: "CommandLine".into(),
                value: format!("{} -enc {i:x}", WORDS[i % WORDS.len()]),
            },
            ContextEntry {
                key: "User".into(),
                value: format!("CORP\\user{}", i % 500),
            },
            ContextEntry {
                key: "Image".into(),
                value: format!(
                    "C:\\Windows\\System32\\{}.exe",
                    WORDS[(i / 7) % WORDS.len()]
                ),
            },
            ContextEntry {
                key: "Pid".into(),
                value: (i % 65_536).to_string(),
            },
        ]),
        client: Some(ClientInfo {
            client_id: Some(client.clone()),
            hostname: Some(format!("ws-{:05}", (i * 7919) % CLIENTS)),
            ..Default::default()
        }),
        dedup: Some(DedupInfo {
            key: format!("rule {:03} | {client}", i % NAMES),
            window_start: at,
            window_end: at,
            suppressed_before: (i % 4) as u64,
        }),
        links: Some(Links {
            host: Some(format!(
                "https://vr.example.org/app/index.html?org_id=root#/host/{client}"
            )),
            ..Default::default()
        }),
        routed_to: Some(routed),
        ..Alert::sample()
    }
}

fn rss_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    log_to_stderr();
    let n = args.alerts;
    let nats = NatsServer::start().await;
    let js = jetstream::new(nats.client().await);
    ensure_all(&js, 1).await?;

    println!(
        "# console catalog bench: {n} alerts, {} runs per query; {}",
        args.queries,
        cpu_model()
    );
    let started = Instant::now();
    publish_all(
        &js,
        SUBJECT_HISTORY,
        (0..n).map(|i| {
            let a = alert(i);
            PublishMessage::build()
                .payload(serde_json::to_vec(&a).expect("serializes").into())
                .message_id(a.id)
        }),
        IN_FLIGHT,
    )
    .await?;
    // Every 20th alert triaged once, as the console writes it.
    let mut acks = std::collections::VecDeque::new();
    for i in (0..n).step_by(20) {
        let id = format!("{i:032x}");
        let after = if i.is_multiple_of(40) {
            serde_json::json!({"state": "resolved", "assignee": "alice", "verdict": "false_positive"})
        } else {
            serde_json::json!({"state": "acknowledged", "assignee": "alice", "verdict": null})
        };
        let event = serde_json::json!({
            "alert_id": id, "action": if i.is_multiple_of(40) { "resolve" } else { "ack" }, "by": "alice",
            "at": "2026-12-05T00:00:00Z", "before": {"state": "open", "assignee": null, "verdict": null},
            "after": after,
        });
        if acks.len() >= IN_FLIGHT {
            if let Some(ack) = acks.pop_front() {
                let _ = ack.await?;
            }
        }
        acks.push_back(
            js.publish(
                format!("{SUBJECT_TRIAGE_PREFIX}.{id}"),
                serde_json::to_vec(&event)?.into(),
            )
            .await?,
        );
    }
    for ack in acks {
        let _ = ack.await?;
    }
    println!(
        "published {n} alerts and {} triage events in {:.1} s",
        n.div_ceil(20),
        started.elapsed().as_secs_f64()
    );

    // A fresh console replica rebuilds its catalog.
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("talon.toml");
    std::fs::write(
        &config,
        test_config_text(
            &nats,
            "[console]\nhttp_listen = \"127.0.0.1:0\"\n[[console.users]]\nname = \"alice\"\nroles = [\"analyst\"]\npassword_hash_env = \"ALICE_HASH\"\n",
        ),
    )?;
    let hash = talon_kit::password::hash(PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Built (if need be) before the clock starts.
    talon_tests::binary("talon-console");
    let started = Instant::now();
    let mut process = ServiceProcess::spawn("talon-console", &config, &[("ALICE_HASH", &hash)]);
    let addr = process.ready_addr(Duration::from_secs(120)).await;
    let console = Console::login(&addr, "alice", PASSWORD)
        .await
        .map_err(|(s, b)| anyhow::anyhow!("login: {s} {b}"))?;
    loop {
        let (status, page) = console.get("/v1/alerts?limit=1").await;
        if status == 200 && page["counts"]["total"] == n as u64 {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "no rebuild within 30 min: {status} {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rebuild = started.elapsed();
    for line in process
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("caught up"))
    {
        eprintln!("{line}");
    }
    let pid = process.child.id();
    let rss = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
    println!(
        "rebuild: {:.1} s ({:.0} alerts/s); console RSS {:.0} MiB (peak {:.0} MiB)",
        rebuild.as_secs_f64(),
        n as f64 / rebuild.as_secs_f64(),
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    // The queries.
    let (_, first) = console.get("/v1/alerts?limit=50").await;
    let cursor = first["next_cursor"]
        .as_str()
        .context("a next page")?
        .to_owned();
    let from =
        chrono::DateTime::from_timestamp_millis(T0 + (n as i64 / 2) * 100).unwrap_or_default();
    let to = from + chrono::Duration::hours(1);
    let kinds: Vec<(&str, String)> = vec![
        ("newest 50, counts", "/v1/alerts?limit=50".into()),
        (
            "next page (cursor)",
            format!("/v1/alerts?limit=50&cursor={cursor}"),
        ),
        ("severity=critical", "/v1/alerts?severity=critical".into()),
        ("state=open", "/v1/alerts?state=open".into()),
        ("state=resolved", "/v1/alerts?state=resolved".into()),
        ("assignee=alice", "/v1/alerts?assignee=alice".into()),
        ("client=<hostname>", "/v1/alerts?client=ws-00042".into()),
        ("client=<id>", format!("/v1/alerts?client=C.{:016x}", 4242)),
        ("channel=pd", "/v1/alerts?channel=pd".into()),
        ("q=mimikatz", "/v1/alerts?q=mimikatz".into()),
        ("q=<a rare word>", format!("/v1/alerts?q={:x}", n / 3)),
        (
            "q + severity + state",
            "/v1/alerts?q=lsass&severity=high&state=open".into(),
        ),
        (
            "an hour (from, to)",
            format!(
                "/v1/alerts?from={}&to={}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        ("one alert, whole", format!("/v1/alerts/{:032x}", n / 2)),
    ];
    println!("\n| query | p50 ms | p95 ms | worst ms | matched |\n|---|---|---|---|---|");
    let mut all = Vec::new();
    for (what, path) in &kinds {
        let mut times = Vec::with_capacity(args.queries);
        let mut matched = Value::Null;
        for _ in 0..args.queries {
            let t = Instant::now();
            let (status, body) = console.get(path).await;
            times.push(t.elapsed());
            ensure!(status == 200, "{what}: {status} {body}");
            matched = body["counts"]["total"].clone();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {what} | {:.1} | {:.1} | {:.1} | {} |",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 95.0)),
            ms(*times.last().unwrap_or(&Duration::ZERO)),
            if matched.is_null() {
                "-".to_owned()
            } else {
                matched.to_string()
            }
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "\nall queries: p50 {:.1} ms, p95 {:.1} ms over {} requests",
        percentile(&all, 50.0).as_secs_f64() * 1000.0,
        percentile(&all, 95.0).as_secs_f64() * 1000.0,
        all.len()
    );
    process.kill9();
    Ok(())
}
