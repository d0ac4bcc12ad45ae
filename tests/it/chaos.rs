//! The chaos run: the whole suite as real processes (ingest with its HTTP
//! edge, dedup on sled, enrich, notify with a web hook and an inbox, the console), alerts
//! published at a steady rate through NATS and HTTP, while every service is
//! SIGKILLed and restarted at random moments and nats-server is restarted
//! once with its store kept. The deliveries are then checked against a model
//! computed from the input.
//!
//! Short form by default (2,500 alerts over 500 names, about two minutes);
//! `TALON_CHAOS_LONG=1` runs the long form (20,000 alerts, 8 kills a
//! service). `TALON_CHAOS_SEED` replays a run.
//!
//! The model. Which alert of a key opens a window depends on the order
//! dedup sees them in, and an ingest crash changes that order: what it had
//! pulled comes back after the ack wait (30 s), behind newer alerts. So the
//! inputs are shaped for a model that does not depend on order, and the
//! received_at values JetStream stored are read back afterwards to check
//! that the shape held:
//!
//! - `every-*` names, `dedup = -1`: every alert is delivered.
//! - `long-*` names, the default window (a day here): exactly one alert of
//!   each name is delivered, with `suppressed_before` 0.
//! - `burst-*` (own `dedup = 12`) and `brief-*` (an override of 12 s) names
//!   get bursts: a few alerts within ~1.5 s, bursts of a name at least 50 s
//!   apart. Exactly one alert of each burst is delivered, and its
//!   `suppressed_before` is the size of the name's previous burst minus one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use talon_proto::names::{
    HEADER_ALERT_ID, STREAM_ACCEPTED, STREAM_ALERTS, STREAM_INBOX, STREAM_NOTIFY, STREAM_UNIQUE,
    SUBJECT_ALERTS,
};
use talon_tests::receiver::Receiver;
use talon_tests::*;

const TOKEN: &str = "chaos-token-0123456789abcdef";
const USER: &str = "alice";
const USER_PASSWORD: &str = "alice-secret";
const MAX_IN_FLIGHT: usize = 8;
/// The short windows of `burst-*` and `brief-*` names, seconds.
const SHORT_WINDOW: i64 = 12;
/// The least time between two bursts of a name: more than the short window
/// plus the longest reordering a crash causes (the 30 s ack wait).
const BURST_GAP: f64 = 50.0;
/// How long a burst lasts at most, seconds (as scheduled).
const BURST_SPAN: f64 = 1.5;

struct Shape {
    alerts: usize,
    names: usize,
    publish_seconds: f64,
    kills_each: usize,
}

impl Shape {
    fn from_env() -> Shape {
        if std::env::var_os("TALON_CHAOS_LONG").is_some_and(|v| v != "0") {
            Shape {
                alerts: 20_000,
                names: 500,
                publish_seconds: 400.0,
                kills_each: 8,
            }
        } else {
            Shape {
                alerts: 2_500,
                names: 500,
                publish_seconds: 65.0,
                kills_each: 3,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Every,
    Long,
    Burst,
    Brief,
}

fn class_of(name_index: usize) -> Class {
    [Class::Every, Class::Long, Class::Burst, Class::Brief][name_index % 4]
}

fn name_of(name_index: usize) -> String {
    let prefix = match class_of(name_index) {
        Class::Every => "every",
        Class::Long => "long",
        Class::Burst => "burst",
        Class::Brief => "brief",
    };
    format!("{prefix}-{name_index}")
}

/// One planned alert.
#[derive(Debug, Clone)]
struct Planned {
    /// Seconds after the start of publishing.
    at: f64,
    name: usize,
    /// For bursty names, which burst of the name (0, 1, …).
    burst: usize,
    via_http: bool,
}

/// The plan: alerts in publishing order (index = the alert's `i`).
fn plan(shape: &Shape, rng: &mut XorShift) -> Vec<Planned> {
    let mut out = Vec::with_capacity(shape.alerts);
    // Half of the alerts go to bursty names, in bursts of 1 to 6.
    let bursty: Vec<usize> = (0..shape.names)
        .filter(|n| matches!(class_of(*n), Class::Burst | Class::Brief))
        .collect();
    let mut next_start: BTreeMap<usize, f64> = bursty
        .iter()
        .map(|n| (*n, rng.unit() * shape.publish_seconds * 0.3))
        .collect();
    let mut burst_index: BTreeMap<usize, usize> = BTreeMap::new();
    let target_bursty = shape.alerts / 2;
    let mut count = 0;
    'fill: for _round in 0..1000 {
        let mut any = false;
        for &n in &bursty {
            let start = next_start[&n];
            if start + BURST_SPAN > shape.publish_seconds {
                continue;
            }
            any = true;
            let b = *burst_index.entry(n).or_default();
            let size = 1 + rng.below(6) as usize;
            for _ in 0..size {
                out.push(Planned {
                    at: start + rng.unit() * BURST_SPAN,
                    name: n,
                    burst: b,
                    via_http: rng.below(2) == 1,
                });
                count += 1;
                if count >= target_bursty {
                    break 'fill;
                }
            }
            burst_index.insert(n, b + 1);
            next_start.insert(n, start + BURST_SPAN + BURST_GAP + rng.unit() * 30.0);
        }
        if !any {
            break;
        }
    }
    let steady: Vec<usize> = (0..shape.names)
        .filter(|n| matches!(class_of(*n), Class::Every | Class::Long))
        .collect();
    while out.len() < shape.alerts {
        out.push(Planned {
            at: rng.unit() * shape.publish_seconds,
            name: steady[rng.below(steady.len() as u64) as usize],
            burst: 0,
            via_http: rng.below(2) == 1,
        });
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

fn raw_alert(i: usize, p: &Planned) -> String {
    let dedup = match class_of(p.name) {
        Class::Every => ",\"dedup\":-1",
        Class::Burst => ",\"dedup\":12",
        Class::Long | Class::Brief => "",
    };
    format!(
        r#"{{"name":"{}","client_id":"server","event_data":{{"i":{i},"burst":{}}}{dedup}}}"#,
        name_of(p.name),
        p.burst
    )
}

/// Publishes alert `i` until it is accepted: through JetStream (acked;
/// a retry keeps the `Nats-Msg-Id`) or the HTTP edge (202; a retry keeps
/// the `Idempotency-Key`). Returns the attempts it took.
async fn publish_until_accepted(
    js: jetstream::Context,
    http: reqwest::Client,
    edge: String,
    i: usize,
    p: Planned,
    deadline: Instant,
) -> Result<u32, String> {
    let body = raw_alert(i, &p);
    let key = format!("chaos-{i}");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let accepted = if p.via_http {
            let sent = http
                .post(&edge)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .timeout(Duration::from_secs(10))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().as_u16() == 202 => true,
                Ok(r) if r.status().as_u16() == 503 => false,
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(format!("alert {i}: HTTP {status}: {text}"));
                }
                Err(_) => false, // ingest is down: retry
            }
        } else {
            let publish = async {
                js.send_publish(
                    SUBJECT_ALERTS,
                    PublishMessage::build()
                        .payload(body.clone().into())
                        .message_id(&key),
                )
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
            };
            matches!(
                tokio::time::timeout(Duration::from_secs(5), publish).await,
                Ok(Ok(_))
            )
        };
        if accepted {
            return Ok(attempts);
        }
        if Instant::now() > deadline {
            return Err(format!("alert {i} not accepted after {attempts} attempts"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One service of the suite as a process, respawned after each kill.
struct Service {
    name: &'static str,
    process: ServiceProcess,
    kills: usize,
}

fn spawn(name: &'static str, config: &Path, env: &[(&str, &str)]) -> ServiceProcess {
    ServiceProcess::spawn(name, config, env)
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Kill(usize),
    RestartNats,
}

/// The kills: each service `kills_each` times, one in each equal part of
/// the run (at a random moment in it), and nats-server once, mid-run. A
/// notify kill is kept 8 s from the NATS restart where its part allows (so
/// a duplicate can be told from one the restart caused).
fn kill_schedule(shape: &Shape, services: usize, rng: &mut XorShift) -> Vec<(f64, Event)> {
    let first = 5.0;
    let last = shape.publish_seconds - 5.0;
    let part = (last - first) / shape.kills_each as f64;
    let nats_at = first + (last - first) * (0.4 + 0.2 * rng.unit());
    let mut events = vec![(nats_at, Event::RestartNats)];
    for s in 0..services {
        for k in 0..shape.kills_each {
            let mut at = first + part * (k as f64 + rng.unit());
            for _ in 0..100 {
                if s != 3 || (at - nats_at).abs() > 8.0 {
                    break;
                }
                at = first + part * (k as f64 + rng.unit());
            }
            events.push((at, Event::Kill(s)));
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events
}

/// Waits until the pipeline holds nothing in flight: ACCEPTED, UNIQUE and
/// NOTIFY empty (work queues: a message leaves when it is acked), and
/// ingest's consumer has nothing pending.
async fn wait_drained(js: &jetstream::Context, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut stable = 0;
    loop {
        let mut left = Vec::new();
        for stream in [STREAM_ACCEPTED, STREAM_UNIQUE, STREAM_NOTIFY] {
            let n = stream_messages(js, stream).await;
            if n > 0 {
                left.push(format!("{stream}: {n}"));
            }
        }
        match js
            .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                talon_proto::names::CONSUMER_INGEST,
                STREAM_ALERTS,
            )
            .await
        {
            Ok(mut c) => match c.info().await {
                Ok(i) if i.num_pending == 0 && i.num_ack_pending == 0 => {}
                Ok(i) => left.push(format!(
                    "ingest: {} pending, {} unacked",
                    i.num_pending, i.num_ack_pending
                )),
                Err(e) => left.push(format!("ingest consumer: {e}")),
            },
            Err(e) => left.push(format!("ingest consumer: {e}")),
        }
        if left.is_empty() {
            stable += 1;
            if stable >= 3 {
                return Ok(());
            }
        } else {
            stable = 0;
        }
        if Instant::now() > deadline {
            return Err(left.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the model expects: groups of alerts (by `i`) of which exactly one
/// is delivered, with that `suppressed_before`.
struct Group {
    what: String,
    members: Vec<usize>,
    suppressed_before: u64,
}

/// The model, from the plan and the received_at (ms) JetStream stored for
/// each alert. Checks the shape the model relies on and says where it broke.
fn model(planned: &[Planned], received_ms: &[i64]) -> Result<(Vec<Group>, i64), String> {
    let mut groups = Vec::new();
    let mut widest = 0;
    let mut by_name: BTreeMap<usize, BTreeMap<usize, Vec<usize>>> = BTreeMap::new();
    for (i, p) in planned.iter().enumerate() {
        match class_of(p.name) {
            Class::Every => groups.push(Group {
                what: format!("alert {i} of {}", name_of(p.name)),
                members: vec![i],
                suppressed_before: 0,
            }),
            _ => by_name
                .entry(p.name)
                .or_default()
                .entry(p.burst)
                .or_default()
                .push(i),
        }
    }
    let window_ms = SHORT_WINDOW * 1000;
    for (name, bursts) in by_name {
        if class_of(name) == Class::Long {
            let members: Vec<usize> = bursts.into_values().flatten().collect();
            groups.push(Group {
                what: name_of(name),
                members,
                suppressed_before: 0,
            });
            continue;
        }
        let mut previous: Option<(i64, usize)> = None; // (last received_at, size)
        for (b, members) in bursts {
            let first = members.iter().map(|i| received_ms[*i]).min().unwrap_or(0);
            let last = members.iter().map(|i| received_ms[*i]).max().unwrap_or(0);
            widest = widest.max(last - first);
            if last - first >= window_ms {
                return Err(format!(
                    "burst {b} of {} spread over {} ms, not inside one window",
                    name_of(name),
                    last - first
                ));
            }
            if let Some((previous_last, _)) = previous {
                if first < previous_last + window_ms {
                    return Err(format!(
                        "burst {b} of {} came {} ms after the previous one",
                        name_of(name),
                        first - previous_last
                    ));
                }
            }
            groups.push(Group {
                what: format!("burst {b} of {}", name_of(name)),
                suppressed_before: previous.map_or(0, |(_, size)| size as u64 - 1),
                members: members.clone(),
            });
            previous = Some((last, members.len()));
        }
    }
    Ok((groups, widest))
}

#[tokio::test]
async fn chaos_kills_every_service_and_nats_and_deliveries_match_the_model() {
    let shape = Shape::from_env();
    let seed = std::env::var("TALON_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("chaos seed {seed} (TALON_CHAOS_SEED={seed} replays the plan)");
    let mut rng = XorShift(seed);
    let test_started = Instant::now();
    let planned = plan(&shape, &mut rng);

    let mut nats = NatsServer::start().await;
    let hook = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    // The producers post to ingest's edge and the console is read from
    // notify at the end, through every restart: those two keep one address
    // for the whole run, reserved until the first start. dedup and enrich
    // bind any free port.
    let (ingest_port, console_port) = (ports::reserve(), ports::reserve());
    let ports = [ingest_port.port(), console_port.port()];
    let config = dir.path().join("talon.toml");
    std::fs::write(
        &config,
        test_config_text(
            &nats,
            &format!(
                r#"[ingest]
http_listen = "127.0.0.1:{ingest}"
partitions = 2

[dedup]
http_listen = "127.0.0.1:0"
data_dir = {data:?}
partitions = [0, 1]
default_seconds = 86400
[[dedup.override]]
name = "^brief-"
seconds = {SHORT_WINDOW}

[enrich]
http_listen = "127.0.0.1:0"

[notify]
http_listen = "127.0.0.1:0"

[console]
http_listen = "127.0.0.1:{console}"
[[console.users]]
name = "{USER}"
roles = ["administrator"]
password_hash_env = "ALICE_HASH"

[[channels]]
id = "hook"
kind = "webhook"
url = "{url}"
rate_per_minute = 0
max_in_flight = {MAX_IN_FLIGHT}

[[channels]]
id = "inbox"
kind = "inbox"
rate_per_minute = 0
max_in_flight = {MAX_IN_FLIGHT}
"#,
                ingest = ports[0],
                console = ports[1],
                data = dir.path().join("dedup").display().to_string(),
                url = hook.url("/chaos"),
            ),
        ),
    )
    .unwrap();
    let hash = talon_kit::password::hash(USER_PASSWORD).unwrap();
    let env = [
        ("TALON_INGEST_TOKENS", TOKEN),
        ("ALICE_HASH", hash.as_str()),
    ];
    let names = [
        "talon-ingest",
        "talon-dedup",
        "talon-enrich",
        "talon-notify",
        "talon-console",
    ];
    // Build them all before the reserved ports are let go of.
    for name in names {
        binary(name);
    }
    ingest_port.release();
    console_port.release();
    let mut services: Vec<Service> = names
        .iter()
        .map(|name| Service {
            name,
            process: spawn(name, &config, &env),
            kills: 0,
        })
        .collect();
    for service in &mut services {
        service.process.ready_addr(Duration::from_secs(120)).await;
    }
    let schedule = kill_schedule(&shape, services.len(), &mut rng);
    println!(
        "services ready after {:.0} s (building the binaries if needed)",
        test_started.elapsed().as_secs_f64()
    );

    // The producers: each alert at its moment, retried until accepted.
    let client = nats.service_client_as("producer", "chaos-producer").await;
    let js = jetstream::new(client.clone());
    let http = talon_kit::outbound::client();
    let edge = format!("http://127.0.0.1:{}/v1/alerts", ports[0]);
    let started = Instant::now();
    let publish_deadline =
        started + Duration::from_secs_f64(shape.publish_seconds) + Duration::from_secs(120);
    let producer = {
        let planned = planned.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::with_capacity(planned.len());
            for (i, p) in planned.into_iter().enumerate() {
                tokio::time::sleep_until((started + Duration::from_secs_f64(p.at)).into()).await;
                tasks.push(tokio::spawn(publish_until_accepted(
                    js.clone(),
                    http.clone(),
                    edge.clone(),
                    i,
                    p,
                    publish_deadline,
                )));
            }
            let mut attempts = Vec::with_capacity(tasks.len());
            for t in tasks {
                attempts.push(t.await.map_err(|e| e.to_string()).and_then(|r| r));
            }
            attempts
        })
    };

    // The chaos, on schedule.
    let mut notify_kills: Vec<Instant> = Vec::new();
    let mut nats_restarts = 0;
    for (at, event) in &schedule {
        tokio::time::sleep_until((started + Duration::from_secs_f64(*at)).into()).await;
        match *event {
            Event::Kill(s) => {
                let service = &mut services[s];
                service.process.kill9();
                service.kills += 1;
                if service.name == "talon-notify" {
                    notify_kills.push(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
                service.process = spawn(service.name, &config, &env);
            }
            Event::RestartNats => {
                nats.kill();
                tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
                nats.restart().await;
                nats_restarts += 1;
            }
        }
    }
    let attempts = producer.await.unwrap();
    let published_in = started.elapsed();
    println!("all accepted after {:.0} s", published_in.as_secs_f64());
    let failures: Vec<&String> = attempts.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "not accepted: {failures:?}");
    let retried = attempts
        .iter()
        .filter(|r| matches!(r, Ok(n) if *n > 1))
        .count();

    let check_js = jetstream::new(nats.client().await);
    if let Err(left) = wait_drained(&check_js, Duration::from_secs(150)).await {
        for s in &services {
            let lines = s.process.stderr_lines();
            for line in &lines[lines.len().saturating_sub(20)..] {
                println!("{}: {line}", s.name);
            }
        }
        for channel in ["hook", "inbox"] {
            let info = check_js
                .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(
                    talon_proto::names::notify_consumer(channel),
                    STREAM_NOTIFY,
                )
                .await;
            if let Ok(mut c) = info {
                println!(
                    "{channel}: {:?}",
                    c.info().await.map(|i| (
                        i.num_pending,
                        i.num_ack_pending,
                        i.num_redelivered,
                        i.num_waiting
                    ))
                );
            }
        }
        panic!("the pipeline did not drain: {left}");
    }

    // What JetStream stored: each planned alert exactly once, and when.
    let stored = collect(
        &check_js,
        STREAM_ALERTS,
        SUBJECT_ALERTS,
        planned.len() + 1,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let mut received_ms = vec![None; planned.len()];
    for m in &stored {
        let i = json(m)["event_data"]["i"].as_u64().unwrap() as usize;
        let at = m.info().unwrap().published.timestamp_millis();
        assert!(
            received_ms[i].replace(at).is_none(),
            "alert {i} stored twice in ALERTS"
        );
    }
    let received_ms: Vec<i64> = received_ms
        .iter()
        .enumerate()
        .map(|(i, at)| at.unwrap_or_else(|| panic!("accepted alert {i} is not in ALERTS")))
        .collect();
    let (groups, widest) = model(&planned, &received_ms).unwrap_or_else(|e| panic!("model: {e}"));

    // The web hook: deliveries per alert.
    let mut deliveries: BTreeMap<usize, Vec<(Instant, u64)>> = BTreeMap::new();
    for h in hook.hits().iter().filter(|h| h.status == 200) {
        let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
        let i = body["event_data"]["i"].as_u64().unwrap() as usize;
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(body["received_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis(),
            received_ms[i],
            "alert {i}'s received_at is when JetStream stored it"
        );
        let before = body["dedup"]["suppressed_before"].as_u64().unwrap();
        deliveries.entry(i).or_default().push((h.at, before));
    }
    // The inbox: what INBOX holds for the user, per alert id.
    let inbox = collect(
        &check_js,
        STREAM_INBOX,
        &talon_proto::names::inbox_subject(USER),
        planned.len() + 1,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let mut inbox_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut inbox_i: BTreeSet<usize> = BTreeSet::new();
    for m in &inbox {
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_ALERT_ID))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        *inbox_ids.entry(id).or_default() += 1;
        inbox_i.insert(json(m)["event_data"]["i"].as_u64().unwrap() as usize);
    }

    // Against the model.
    let mut problems = Vec::new();
    let mut expected: BTreeSet<usize> = BTreeSet::new();
    for g in &groups {
        let delivered: Vec<usize> = g
            .members
            .iter()
            .copied()
            .filter(|i| deliveries.contains_key(i))
            .collect();
        match delivered.as_slice() {
            [i] => {
                expected.insert(*i);
                let befores: BTreeSet<u64> = deliveries[i].iter().map(|(_, b)| *b).collect();
                if befores != BTreeSet::from([g.suppressed_before]) {
                    problems.push(format!(
                        "{}: alert {i} delivered with suppressed_before {befores:?}, expected {}",
                        g.what, g.suppressed_before
                    ));
                }
                if !inbox_i.contains(i) {
                    problems.push(format!("{}: alert {i} is not in the inbox", g.what));
                }
            }
            [] => problems.push(format!("{}: nothing delivered (lost)", g.what)),
            more => problems.push(format!(
                "{}: {} alerts delivered: {more:?}",
                g.what,
                more.len()
            )),
        }
    }
    for i in deliveries.keys() {
        if !expected.contains(i) && !groups.iter().any(|g| g.members.contains(i)) {
            problems.push(format!("alert {i} delivered but never planned"));
        }
    }
    let inbox_extra: Vec<&usize> = inbox_i.difference(&expected).take(10).collect();
    if !inbox_extra.is_empty() {
        problems.push(format!("in the inbox but not expected: {inbox_extra:?}"));
    }
    let inbox_dups: Vec<(&String, &usize)> = inbox_ids.iter().filter(|(_, n)| **n > 1).collect();
    if !inbox_dups.is_empty() {
        problems.push(format!("inbox duplicates: {inbox_dups:?}"));
    }

    // Web hook duplicates: only a notify crash between the receiver's
    // answer and the ledger's record may cause one (at most max_in_flight a
    // crash): its first delivery came shortly before a notify kill.
    let duplicates: Vec<(usize, usize)> = deliveries
        .iter()
        .filter(|(_, d)| d.len() > 1)
        .map(|(i, d)| (*i, d.len()))
        .collect();
    for (i, _) in &duplicates {
        let first = deliveries[i][0].0;
        let before_a_kill = notify_kills
            .iter()
            .any(|k| *k >= first && *k - first < Duration::from_secs(20));
        println!(
            "duplicate on the web hook: alert {i}, {} deliveries{}",
            deliveries[i].len(),
            if before_a_kill {
                ", the first shortly before a notify kill"
            } else {
                ""
            }
        );
        if !before_a_kill {
            problems.push(format!(
                "alert {i} delivered twice, its first delivery not followed by a notify kill"
            ));
        }
    }
    let extra_deliveries: usize = duplicates.iter().map(|(_, n)| n - 1).sum();
    if extra_deliveries > MAX_IN_FLIGHT * notify_kills.len() {
        problems.push(format!(
            "{extra_deliveries} duplicate deliveries, more than max_in_flight × notify kills = {}",
            MAX_IN_FLIGHT * notify_kills.len()
        ));
    }

    // The console agrees with the stream.
    let console = talon_tests::console::Console::login(
        format!("127.0.0.1:{}", ports[1]),
        USER,
        USER_PASSWORD,
    )
    .await
    .unwrap_or_else(|e| panic!("login: {e:?}"));
    let unread = console.messages().await["unread"].as_u64().unwrap_or(0);
    if unread != expected.len() as u64 {
        problems.push(format!(
            "the console counts {unread} unread, expected {}",
            expected.len()
        ));
    }

    let delivered_total: usize = deliveries.values().map(Vec::len).sum();
    let via_http = planned.iter().filter(|p| p.via_http).count();
    println!(
        "\nchaos run ({} form, seed {seed})",
        if shape.kills_each > 3 {
            "long"
        } else {
            "short"
        }
    );
    println!("| what | value |\n|---|---|");
    println!(
        "| published (NATS / HTTP) | {} ({} / {via_http}) |",
        planned.len(),
        planned.len() - via_http
    );
    println!(
        "| accepted (retried before accepted) | {} ({retried}) |",
        attempts.len()
    );
    println!("| names | {} |", shape.names);
    println!("| expected deliveries (model) | {} |", groups.len());
    println!(
        "| expected suppressed (model) | {} |",
        planned.len() - groups.len()
    );
    println!(
        "| web hook deliveries (distinct alerts) | {delivered_total} ({}) |",
        deliveries.len()
    );
    println!(
        "| web hook duplicates (alerts / extra deliveries) | {} / {extra_deliveries} |",
        duplicates.len()
    );
    println!(
        "| inbox messages (distinct alerts) | {} ({}) |",
        inbox.len(),
        inbox_ids.len()
    );
    for s in &services {
        println!("| SIGKILLs of {} | {} |", s.name, s.kills);
    }
    println!("| nats-server restarts | {nats_restarts} |");
    println!("| widest burst as stored (window {SHORT_WINDOW} s) | {widest} ms |");
    println!("| publishing took | {:.0} s |", published_in.as_secs_f64());
    println!("| whole run | {:.0} s |", started.elapsed().as_secs_f64());
    println!("| problems | {} |", problems.len());
    for p in problems.iter().take(30) {
        println!("problem: {p}");
    }
    assert!(
        problems.is_empty(),
        "{} problems, first: {}",
        problems.len(),
        problems[0]
    );
    assert!(services.iter().all(|s| s.kills >= 3) && nats_restarts == 1);
    for s in &mut services {
        assert_eq!(
            s.process
                .terminate(Duration::from_secs(20))
                .and_then(|st| st.code()),
            Some(0),
            "{} exits 0 on SIGTERM",
            s.name
        );
    }
    println!("whole test {:.0} s", test_started.elapsed().as_secs_f64());
}
