//! Rules with state end to end (DESIGN §14): monitoring rows on
//! `Monitoring.<Artifact>` through real ingest replicas (in-process, and a
//! process killed with SIGKILL) to the alerts they raise on
//! `Server.Internal.Alerts`, counted exactly once, across replicas and
//! restarts; the counts live in KV `talon_rules`.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use serde_json::{json, Value};
use talon_kit::Env;
use talon_proto::names::{
    monitoring_subject, CONSUMER_RULES, STREAM_ALERTS, STREAM_MONITORING, SUBJECT_ALERTS,
};
use talon_tests::*;

const LOGONS: &str = "Windows.Events.FailedLogons";

/// 10 failed logons per host within 60 s.
const THRESHOLD: &str = r#"
[[rules]]
name = "Logons"
watch = "Windows.Events.FailedLogons"
kind = "threshold"
by = ["ClientId"]
count = 10
within = 60
samples = 3
alert.name = "{Count} failed logons on {ClientId}"
alert.fields = ["TargetUserName"]
"#;

/// Seconds since the epoch at a fixed start, so rows carry their own time.
const T0: i64 = 1_790_000_000;

fn logon(client: &str, at: i64, user: &str) -> Value {
    json!({"ClientId": client, "TargetUserName": user, "EventID": 4625, "_ts": at})
}

/// Publishes `row` on `Monitoring.<artifact>` and waits for the ack.
async fn publish(js: &jetstream::Context, artifact: &str, row: &Value) -> u64 {
    js.send_publish(
        monitoring_subject(artifact),
        PublishMessage::build().payload(serde_json::to_vec(row).unwrap().into()),
    )
    .await
    .expect("publish")
    .await
    .expect("ack")
    .sequence
}

/// Waits until the rules' consumer has acked every row published so far.
async fn all_counted(js: &jetstream::Context) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let last = stream_last_seq(js, STREAM_MONITORING).await;
        let floor = match js.get_stream(STREAM_MONITORING).await {
            Ok(stream) => match stream
                .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER_RULES)
                .await
            {
                Ok(mut c) => c
                    .info()
                    .await
                    .map(|i| i.ack_floor.stream_sequence)
                    .unwrap_or(0),
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        if floor >= last {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rows acked through {floor} of {last} after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stream_last_seq(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
        Err(_) => 0,
    }
}

/// The alerts the rules raised so far (waits 3 s of quiet).
async fn raised(js: &jetstream::Context) -> Vec<Value> {
    collect_as(js, STREAM_ALERTS, SUBJECT_ALERTS, 1_000).await
}

fn summary(alerts: &[Value]) -> Vec<(String, u64)> {
    let mut got: Vec<(String, u64)> = alerts
        .iter()
        .map(|a| {
            (
                a["client_id"].as_str().unwrap_or("").to_owned(),
                a["event_data"]["Count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    got.sort();
    got
}

fn config(rules: &str) -> String {
    format!("[ingest]\nhttp_listen = \"127.0.0.1:0\"\n{rules}")
}

#[tokio::test]
async fn a_threshold_counts_per_key_within_its_window_from_the_rows_own_time() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, &config(THRESHOLD), Env::default()).await;
    let js = jetstream::new(nats.client().await);

    // Host A: 9 rows in 60 s raise nothing.
    for i in 0..9 {
        publish(&js, LOGONS, &logon("C.a", T0 + i * 6, &format!("user{i}"))).await;
    }
    // Host B: 10 rows over 2 minutes never make 10 within 60 s.
    for i in 0..10 {
        publish(&js, LOGONS, &logon("C.b", T0 + i * 13, "admin")).await;
    }
    all_counted(&js).await;
    assert_eq!(summary(&raised(&js).await), []);

    // A's tenth, 59 s after its first: one alert counting 10.
    publish(&js, LOGONS, &logon("C.a", T0 + 59, "user9")).await;
    all_counted(&js).await;
    let alerts = raised(&js).await;
    assert_eq!(summary(&alerts), [("C.a".to_owned(), 10)]);
    let a = &alerts[0];
    assert_eq!(a["name"], "10 failed logons on C.a");
    assert_eq!(a["event_data"]["FirstRowTime"], "2026-09-21T14:13:20Z");
    assert_eq!(a["event_data"]["LastRowTime"], "2026-09-21T14:14:19Z");
    let samples: Vec<&str> = a["event_data"]["SampleRows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["TargetUserName"].as_str().unwrap())
        .collect();
    assert_eq!(samples, ["user7", "user8", "user9"], "the newest 3 rows");

    // The count starts over: 9 more of A raise nothing, the 10th raises.
    for i in 0..9 {
        publish(&js, LOGONS, &logon("C.a", T0 + 100 + i, "x")).await;
    }
    all_counted(&js).await;
    assert_eq!(raised(&js).await.len(), 1);
    publish(&js, LOGONS, &logon("C.a", T0 + 110, "x")).await;
    all_counted(&js).await;
    assert_eq!(
        summary(&raised(&js).await),
        [("C.a".to_owned(), 10), ("C.a".to_owned(), 10)]
    );
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_counting_one_key_raise_each_alert_once() {
    let nats = NatsServer::start().await;
    let a = start_ingest(&nats, &config(THRESHOLD), Env::default()).await;
    let b = start_ingest(&nats, &config(THRESHOLD), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    // 30 rows of one host within a minute, all at once: both replicas
    // pull them and write the one key's entry concurrently.
    let mut acks = Vec::new();
    for i in 0..30 {
        let row = serde_json::to_vec(&logon("C.a", T0 + i, "admin")).unwrap();
        acks.push(
            js.publish(monitoring_subject(LOGONS), row.into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    all_counted(&js).await;
    assert_eq!(
        summary(&raised(&js).await),
        vec![("C.a".to_owned(), 10); 3],
        "30 rows, 3 alerts of 10"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_sigkilled_ingest_continues_its_count_exactly_after_restart() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("talon.toml");
    std::fs::write(&path, test_config_text(&nats, &config(THRESHOLD))).unwrap();
    let js = jetstream::new(nats.client().await);
    let mut ingest = ServiceProcess::spawn("talon-ingest", &path, &[]);
    ingest.ready_addr(Duration::from_secs(60)).await;

    // 1000 rows over 10 hosts, 100 each within the window: 10 alerts a
    // host. Killed while it works through them.
    let mut acks = Vec::new();
    for i in 0..1000 {
        let row = serde_json::to_vec(&logon(&format!("C.{}", i % 10), T0 + i / 20, "u")).unwrap();
        acks.push(
            js.publish(monitoring_subject(LOGONS), row.into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while raised_count(&js).await < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "no alerts within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ingest.kill9();
    let at_kill = raised_count(&js).await;
    assert!(
        at_kill < 100,
        "killed after the run ended ({at_kill}); nothing was tested"
    );

    let mut ingest = ServiceProcess::spawn("talon-ingest", &path, &[]);
    ingest.ready_addr(Duration::from_secs(60)).await;
    all_counted(&js).await;
    let alerts = raised(&js).await;
    let mut per_host = std::collections::BTreeMap::new();
    for (host, count) in summary(&alerts) {
        assert_eq!(count, 10, "{host}: an alert of {count}");
        *per_host.entry(host).or_insert(0) += 1;
    }
    println!("killed after {at_kill} alerts; {} in all", alerts.len());
    // Every row counted once: no key holds a row left over, and rows came
    // back to the restarted ingest (the kill left some unacked).
    let kv = js
        .get_key_value(talon_proto::names::BUCKET_RULES)
        .await
        .unwrap();
    let mut keys = kv.keys().await.unwrap();
    let mut entries = 0;
    while let Some(key) = futures::StreamExt::next(&mut keys).await {
        let value = kv.get(key.unwrap()).await.unwrap().expect("an entry");
        let entry: Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(entry["state"]["rows"], Value::Null, "left over: {entry}");
        assert_eq!(
            entry["pending"],
            Value::Null,
            "an alert left pending: {entry}"
        );
        entries += 1;
    }
    assert_eq!(entries, 10);
    let mut consumer = js
        .get_stream(STREAM_MONITORING)
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>(CONSUMER_RULES)
        .await
        .unwrap();
    let deliveries = consumer.info().await.unwrap().delivered.consumer_sequence;
    println!("{} rows delivered again after the kill", deliveries - 1000);
    assert!(
        deliveries > 1000,
        "no row was redelivered: the kill tested nothing"
    );
    assert_eq!(per_host.len(), 10);
    assert!(per_host.values().all(|n| *n == 10), "{per_host:?}");
    ingest.kill9();
}

async fn raised_count(js: &jetstream::Context) -> u64 {
    stream_last_seq(js, STREAM_ALERTS).await
}

#[tokio::test]
async fn first_seen_raises_for_a_new_value_and_again_after_the_lookback() {
    let rules = r#"
[[rules]]
name = "NewHash"
watch = "Generic.Client.Stats"
kind = "first_seen"
by = ["Hash"]
lookback = 3600
alert.name = "New executable {Hash} on {ClientId}"
alert.fields = ["Hash", "Path"]
"#;
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, &config(rules), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    let row = |hash: &str, client: &str, at: i64| json!({"Hash": hash, "Path": "C:\\x.exe", "ClientId": client, "_ts": at});
    for r in [
        row("aa", "C.1", T0),
        // Seen again within the hour, on another host: nothing.
        row("aa", "C.2", T0 + 10),
        row("bb", "C.1", T0 + 20),
        // An hour and more after its last sighting: again.
        row("aa", "C.3", T0 + 10 + 3601),
        // A late row from before: nothing.
        row("bb", "C.9", T0 + 5),
    ] {
        publish(&js, "Generic.Client.Stats", &r).await;
    }
    all_counted(&js).await;
    let names: Vec<String> = raised(&js)
        .await
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "New executable aa on C.1",
            "New executable bb on C.1",
            "New executable aa on C.3"
        ]
    );
    ingest.stop().await.unwrap();
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Sends a row for `client` every second until dropped.
fn keep_sending(js: &jetstream::Context, client: &'static str) -> tokio::task::JoinHandle<()> {
    let js = js.clone();
    tokio::spawn(async move {
        loop {
            let row = json!({"ClientId": client, "Uptime": 1, "_ts": now_secs()});
            publish(&js, STATS, &row).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

const STATS: &str = "Generic.Client.Stats";

/// Silent for 4 s per client.
const ABSENT: &str = r#"
[[rules]]
name = "Silent"
watch = "Generic.Client.Stats"
kind = "absent"
by = ["ClientId"]
after = 4
alert.name = "Generic.Client.Stats silent on {ClientId}"
alert.fields = ["ClientId"]
"#;

fn silent(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            a["event_data"]["ClientId"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn absent_raises_once_per_silence_clears_on_a_row_and_not_after_a_restart() {
    let nats = NatsServer::start().await;
    let mut ingest = start_ingest(&nats, &config(ABSENT), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    let a = keep_sending(&js, "C.a");
    let b = keep_sending(&js, "C.b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // B stops: one alert after `after` (and the clock's tick), however long
    // it stays silent; A never.
    b.abort();
    tokio::time::sleep(Duration::from_secs(16)).await;
    let alerts = raised(&js).await;
    assert_eq!(silent(&alerts), ["C.b"]);
    let b_alert = &alerts[0];
    assert!(b_alert["event_data"]["SilentSeconds"].as_i64().unwrap() >= 4);
    assert_eq!(b_alert["client_id"], "C.b");
    // The clock's metrics: two keys followed, one raise, a recent look.
    let text = metrics_of(&ingest).await;
    let value = |line: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    assert_eq!(value("talon_ingest_absent_keys{rule=\"Silent\"}"), 2);
    assert_eq!(
        value("talon_ingest_rules_total{outcome=\"raised\",rule=\"Silent\"}"),
        1
    );
    let look = value("talon_ingest_absent_last_look_seconds");
    assert!((now_secs() - look).abs() <= 10, "last look {look}");

    // B comes back, then stops again: a second silence, a second alert.
    publish(&js, STATS, &json!({"ClientId": "C.b", "_ts": now_secs()})).await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(silent(&raised(&js).await), ["C.b", "C.b"]);

    // ingest stops for longer than `after` while A keeps sending: its rows
    // wait in MONITORING and are counted before any silence is judged.
    ingest.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    ingest = start_ingest(&nats, &config(ABSENT), Env::default()).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    all_counted(&js).await;
    assert_eq!(
        silent(&raised(&js).await),
        ["C.b", "C.b"],
        "A kept sending: no alert for it after the restart"
    );
    a.abort();
    ingest.stop().await.unwrap();
}

/// The text of `ingest`'s /metrics.
async fn metrics_of(ingest: &InProcess) -> String {
    talon_kit::outbound::client()
        .get(format!("http://{}/metrics", ingest.http_addr))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text")
}

/// A key near NATS's largest message: counted apart from a key that differs
/// in its last character, raised once, its KV entry small (the key hashed
/// into the entry's name, shown cut to 1,024 characters).
#[tokio::test]
async fn a_huge_key_is_counted_hashed_and_kept_small() {
    const HUGE: &str = r#"
[[rules]]
name = "Huge"
watch = "Windows.Events.FailedLogons"
kind = "threshold"
by = ["TargetUserName"]
count = 2
within = 60
alert.name = "two failed logons of one long user name"
alert.fields = ["TargetUserName"]
"#;
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, &config(HUGE), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    // 900 KB: the row fits in the default 1 MB max_payload.
    let name = |last: char| format!("{}{last}", "A".repeat(900 * 1024));
    publish(&js, LOGONS, &logon("C.a", T0, &name('x'))).await;
    publish(&js, LOGONS, &logon("C.a", T0 + 1, &name('y'))).await;
    all_counted(&js).await;
    assert_eq!(raised(&js).await.len(), 0, "two keys, one row each");
    publish(&js, LOGONS, &logon("C.a", T0 + 2, &name('x'))).await;
    all_counted(&js).await;
    let alerts = raised(&js).await;
    assert_eq!(summary(&alerts), [("C.a".to_owned(), 2)]);

    let kv = js
        .get_key_value(talon_proto::names::BUCKET_RULES)
        .await
        .unwrap();
    let mut keys = kv.keys().await.unwrap();
    let mut sizes = Vec::new();
    while let Some(key) = futures::StreamExt::next(&mut keys).await {
        let key = key.unwrap();
        assert!(key.len() < 200, "a hashed entry name: {key}");
        let value = kv.get(&key).await.unwrap().unwrap();
        let entry: Value = serde_json::from_slice(&value).unwrap();
        assert!(entry["key"].as_str().unwrap().chars().count() <= 1_030);
        sizes.push(value.len());
    }
    assert_eq!(sizes.len(), 2, "one entry per key");
    assert!(
        sizes.iter().all(|s| *s < 64 * 1024),
        "entries of {sizes:?} bytes"
    );
    ingest.stop().await.unwrap();
}

/// A row whose alert cannot be kept (its entry would be larger than a NATS
/// message) is dead-lettered at once with the reason, not retried; the rule
/// goes on counting the next rows.
#[tokio::test]
async fn a_row_whose_alert_is_too_large_to_keep_is_dead_lettered_at_once() {
    const ONE: &str = r#"
[[rules]]
name = "Every"
watch = "Windows.Events.FailedLogons"
kind = "threshold"
by = ["ClientId"]
count = 1
within = 60
alert.name = "a failed logon"
alert.fields = ["TargetUserName"]
"#;
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, &config(ONE), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    // The row fits a NATS message (1 MiB); the key's entry keeping the
    // alert that copies its column until it is published would not.
    let seq = publish(&js, LOGONS, &logon("C.a", T0, &"B".repeat(1_046_000))).await;
    publish(&js, LOGONS, &logon("C.a", T0 + 1, "alice")).await;
    all_counted(&js).await;
    let letters: Vec<talon_proto::DeadLetter> = collect_as(
        &js,
        talon_proto::names::STREAM_DLQ,
        &talon_proto::names::Stage::Rules.dlq_subject(),
        10,
    )
    .await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].stream_seq, Some(seq));
    assert!(
        letters[0]
            .reason
            .starts_with("rule \"Every\": rule state: the entry with its alert is ")
            && letters[0].reason.contains("over the"),
        "{}",
        letters[0].reason
    );
    let alerts = raised(&js).await;
    assert_eq!(alerts.len(), 1, "the next row raised");
    assert_eq!(alerts[0]["event_data"]["TargetUserName"], "alice");
    ingest.stop().await.unwrap();
}
