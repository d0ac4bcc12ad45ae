//! No message can stop talon: poison on every stage's input subject,
//! hostile producers, hostile receivers. Every test runs a real nats-server
//! and checks that the stages went on, that each good alert arrived once,
//! and that each bad message is in `talon.dlq.<stage>` with a reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use serde_json::{json, Value};
use talon_proto::names::{
    accepted_subject, notify_subject, STREAM_DLQ, STREAM_NOTIFY, SUBJECT_ALERTS, SUBJECT_UNIQUE,
};
use talon_proto::{Alert, DeadLetter};
use talon_tests::receiver::{Receiver, Reply};
use talon_tests::*;

/// A webhook channel `id` to `url`, unpaced.
fn hook_channel(id: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[channels]]\nid = \"{id}\"\nkind = \"webhook\"\nurl = \"{url}\"\nrate_per_minute = 0\n\
         max_in_flight = 8\n{extra}\n"
    )
}

/// An Alert between stages, as JSON, that passes every stage: never
/// suppressed (`dedup_seconds` -1), received now.
fn good(name: &str) -> Value {
    let now = chrono::Utc::now().to_rfc3339();
    json!({
        "id": format!("id-{}", name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")),
        "received_at": now, "source": "nats", "name": name, "timestamp": now,
        "dedup_seconds": -1, "channel": "hook",
    })
}

/// Publishes `payload` on `subject` (no `Nats-Msg-Id`) and waits for the ack.
async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) {
    js.send_publish(
        subject.to_owned(),
        PublishMessage::build().payload(payload.into()),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
}

/// The dead letters of `stage` so far.
async fn dead_letters(js: &jetstream::Context, stage: &str, at_most: usize) -> Vec<DeadLetter> {
    collect_as(
        js,
        STREAM_DLQ,
        &talon_proto::names::dlq_subject(stage),
        at_most,
    )
    .await
}

/// The names of the alerts `hook` accepted, with how often each came.
fn delivered_names(hook: &Receiver) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for body in hook.accepted() {
        let name = body["name"].as_str().unwrap_or("<no name>").to_owned();
        *names.entry(name).or_insert(0) += 1;
    }
    names
}

/// Waits until `hook` accepted `n` requests, then a little more for extras.
async fn settle(hook: &Receiver, n: usize, within: Duration) {
    hook.wait_accepted(n, within)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", delivered_names(hook)));
    tokio::time::sleep(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------------------
// The three reports, as regression tests.

/// A message whose id holds a line break, on the input of dedup, enrich and
/// notify: each stage dead-letters it (the id would be a `Nats-Msg-Id`, and
/// publishing it panicked) and goes on with the next.
#[tokio::test]
async fn an_id_with_a_line_break_is_dead_lettered_by_every_stage_which_goes_on() {
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![Reply::status(200)]).await;
    let dir = tempfile::tempdir().unwrap();
    let channel = hook_channel("hook", &hook.url("/hook"), "");
    let dedup = start_dedup(&nats, &dedup_table(&dir.path().join("dedup"))).await;
    let enrich = start_enrich(
        &nats,
        &format!("[enrich]\nhttp_listen = \"127.0.0.1:0\"\n{channel}"),
    )
    .await;
    let notify = start_notify(
        &nats,
        &format!("[notify]\nhttp_listen = \"127.0.0.1:0\"\n{channel}"),
        Default::default(),
    )
    .await;
    let js = jetstream::new(nats.client().await);
    let inputs = [
        ("dedup", accepted_subject(0)),
        ("enrich", SUBJECT_UNIQUE.to_owned()),
        ("notify", notify_subject("hook")),
    ];
    for (stage, subject) in &inputs {
        let mut poison = good(&format!("poison-{stage}"));
        poison["id"] = "p\nq".into();
        publish(&js, subject, poison.to_string().into_bytes()).await;
        let after = good(&format!("after-{stage}"));
        publish(&js, subject, after.to_string().into_bytes()).await;
    }

    settle(&hook, 3, Duration::from_secs(30)).await;
    let names = delivered_names(&hook);
    assert_eq!(
        names,
        BTreeMap::from([
            ("after-dedup".to_owned(), 1),
            ("after-enrich".to_owned(), 1),
            ("after-notify".to_owned(), 1)
        ])
    );
    for (stage, subject) in &inputs {
        let letters = dead_letters(&js, stage, 10).await;
        assert_eq!(letters.len(), 1, "{stage}: {letters:#?}");
        assert_eq!(&letters[0].subject, subject);
        assert!(
            letters[0].reason.contains("id cannot be used"),
            "{stage}: {}",
            letters[0].reason
        );
        assert!(letters[0].raw.as_deref().unwrap().contains("p\\nq"));
    }
    for service in [dedup, enrich, notify] {
        assert!(!service.task.is_finished(), "a stage stopped");
        service.stop().await.unwrap();
    }
}

/// ingest and dedup in-process, dedup's sled under `dir` and `dedup_extra`
/// in its `[dedup]` table.
async fn ingest_and_dedup(
    nats: &NatsServer,
    dir: &Path,
    dedup_extra: &str,
) -> (InProcess, InProcess) {
    let ingest = start_ingest(
        nats,
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n",
        Default::default(),
    )
    .await;
    let dedup = start_dedup(
        nats,
        &format!("{}{dedup_extra}", dedup_table(&dir.join("dedup"))),
    )
    .await;
    (ingest, dedup)
}

/// `dedup: i64::MAX` from a producer opened a window to 9999-12-31: the name
/// was muted for ever. Now it is cut to `[dedup].max_seconds`, a day by
/// default.
#[tokio::test]
async fn a_producer_window_is_cut_to_a_day() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ingest, dedup) = ingest_and_dedup(&nats, dir.path(), "").await;
    let js = jetstream::new(nats.client().await);
    let perma = br#"{"name":"probe-perma","dedup":9223372036854775807}"#;
    publish(&js, SUBJECT_ALERTS, perma.to_vec()).await;
    let unique: Vec<Alert> = collect_as(&js, "UNIQUE", SUBJECT_UNIQUE, 2).await;
    assert_eq!(unique.len(), 1, "{unique:#?}");
    let window = unique[0].dedup.as_ref().expect("dedup info");
    assert_eq!(
        window.window_end - window.window_start,
        chrono::Duration::seconds(86_400),
        "the window is cut to the default max_seconds"
    );
    ingest.stop().await.unwrap();
    dedup.stop().await.unwrap();
}

/// With a short `max_seconds`, the name alerts again once it has passed,
/// carrying the count of what its first window suppressed.
#[tokio::test]
async fn a_producer_cannot_mute_a_name_past_max_seconds() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (ingest, dedup) = ingest_and_dedup(&nats, dir.path(), "max_seconds = 2\n").await;
    let js = jetstream::new(nats.client().await);
    let perma = br#"{"name":"probe-perma","dedup":9223372036854775807}"#;
    publish(&js, SUBJECT_ALERTS, perma.to_vec()).await;
    publish(&js, SUBJECT_ALERTS, perma.to_vec()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish(&js, SUBJECT_ALERTS, perma.to_vec()).await;

    let unique: Vec<Alert> = collect_as(&js, "UNIQUE", SUBJECT_UNIQUE, 3).await;
    assert_eq!(unique.len(), 2, "{unique:#?}");
    for alert in &unique {
        let window = alert.dedup.as_ref().expect("dedup info");
        assert_eq!(
            window.window_end - window.window_start,
            chrono::Duration::seconds(2),
            "the window is cut to max_seconds"
        );
    }
    assert_eq!(unique[1].dedup.as_ref().unwrap().suppressed_before, 1);
    ingest.stop().await.unwrap();
    dedup.stop().await.unwrap();
}

/// One message on dedup's input from the year 9999 used to move the sweep's
/// watermark there, and the sweep then dropped every live window: the next
/// alert of a suppressed name was sent again.
#[tokio::test]
async fn a_message_from_the_year_9999_does_not_sweep_live_windows() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dedup = start_dedup(&nats, &dedup_table(&dir.path().join("dedup"))).await;
    let js = jetstream::new(nats.client().await);
    let now = chrono::Utc::now().timestamp_millis();
    publish_accepted(&js, 0, &accepted_alert("k1", "kept", now, 3600)).await;
    publish_accepted(
        &js,
        0,
        &accepted_alert("f1", "future", 253_402_300_799_000, 3600),
    )
    .await;
    // Several sweep steps (one each 500 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    publish_accepted(&js, 0, &accepted_alert("k2", "kept", now + 1000, 3600)).await;
    let unique: Vec<Alert> = collect_as(&js, "UNIQUE", SUBJECT_UNIQUE, 4).await;
    let names: Vec<&str> = unique.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["kept", "future"], "the second 'kept' is suppressed");
    dedup.stop().await.unwrap();
}

/// A 30 KB alert — one 10,000-character key over 10,000 zeros — made enrich
/// build 10,000 keys of 10,000 bytes before any limit applied. Now keys are
/// cut while they are built and only `context_field_limit` are kept.
#[tokio::test]
async fn a_wide_alert_is_bounded_before_enrich_flattens_it() {
    let nats = NatsServer::start().await;
    let enrich = start_enrich(
        &nats,
        "[enrich]\nhttp_listen = \"127.0.0.1:0\"\n[[channels]]\nid = \"all\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:9/all\"\n",
    )
    .await;
    let js = jetstream::new(nats.client().await);
    let mut alert = good("flat");
    alert["event_data"] = json!({ "k".repeat(10_000): vec![0; 10_000] });
    let body = alert.to_string().into_bytes();
    assert!(body.len() > 30_000 && body.len() < 35_000, "{}", body.len());
    publish(&js, SUBJECT_UNIQUE, body).await;

    let routed: Vec<Alert> = collect_as(&js, STREAM_NOTIFY, &notify_subject("all"), 2).await;
    assert_eq!(routed.len(), 1);
    let context = routed[0].context.as_ref().expect("a context");
    assert_eq!(context.len(), 101, "100 fields and the '…' entry");
    assert_eq!(context[100].value, "9900 more fields");
    for entry in &context[..100] {
        assert!(
            entry.key.len() <= 256 + '…'.len_utf8(),
            "a key of {} bytes",
            entry.key.len()
        );
        assert!(entry.key.ends_with('…'));
    }
    enrich.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// The hostile corpus, against the suite as processes.

/// Whether a shape should come out at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Delivered once (its name is its label).
    Delivered,
    /// In the stage's dead letters.
    Dead,
}

/// One hostile message for a stage's input.
struct Shape {
    label: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn shape(label: &str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Shape {
    Shape {
        label: label.to_owned(),
        bytes: bytes.into(),
        expect,
    }
}

/// `good(label)` with `field` set to `value` (or removed, for `None`).
fn alert_with(label: &str, field: &str, value: Option<Value>) -> Vec<u8> {
    let mut a = good(label);
    match value {
        Some(v) => a[field] = v,
        None => {
            a.as_object_mut().unwrap().remove(field);
        }
    }
    a.to_string().into_bytes()
}

/// `good(label)` with the raw JSON text `value` in place of `field`'s.
fn alert_with_text(label: &str, field: &str, value: &str) -> Vec<u8> {
    let mut a = good(label);
    a[field] = "@@".into();
    a.to_string().replace("\"@@\"", value).into_bytes()
}

fn deep(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Bad and hostile Alerts for the stages after ingest (`stage` names them).
fn alert_shapes(stage: &str) -> Vec<Shape> {
    use Expect::*;
    let l = |what: &str| format!("{stage}-{what}");
    let mut shapes = vec![
        shape(&l("empty"), "", Dead),
        shape(&l("null"), "null", Dead),
        shape(&l("list"), "[]", Dead),
        shape(&l("number"), "42", Dead),
        shape(&l("string"), "\"text\"", Dead),
        shape(&l("not-utf8"), b"\xff\xfe{\"id\":1}".to_vec(), Dead),
        shape(&l("cut"), "{\"id\":", Dead),
        shape(
            &l("id-lf"),
            alert_with(&l("id-lf"), "id", Some("p\nq".into())),
            Dead,
        ),
        shape(
            &l("id-cr"),
            alert_with(&l("id-cr"), "id", Some("p\rq".into())),
            Dead,
        ),
        shape(
            &l("id-nul"),
            alert_with(&l("id-nul"), "id", Some("a\0b".into())),
            Dead,
        ),
        shape(
            &l("id-64k"),
            alert_with(&l("id-64k"), "id", Some("a".repeat(65_536).into())),
            Dead,
        ),
        shape(
            &l("id-empty"),
            alert_with(&l("id-empty"), "id", Some("".into())),
            Dead,
        ),
        shape(
            &l("id-number"),
            alert_with(&l("id-number"), "id", Some(7.into())),
            Dead,
        ),
        shape(
            &l("id-null"),
            alert_with(&l("id-null"), "id", Some(Value::Null)),
            Dead,
        ),
        shape(
            &l("id-missing"),
            alert_with(&l("id-missing"), "id", None),
            Dead,
        ),
        shape(
            &l("name-empty"),
            alert_with(&l("name-empty"), "name", Some("".into())),
            Dead,
        ),
        shape(
            &l("name-missing"),
            alert_with(&l("name-missing"), "name", None),
            Dead,
        ),
        shape(
            &l("name-number"),
            alert_with(&l("name-number"), "name", Some(5.into())),
            Dead,
        ),
        shape(
            &l("name-64k"),
            alert_with(&l("name-64k"), "name", Some("n".repeat(65_536).into())),
            Dead,
        ),
        shape(
            &l("received-text"),
            alert_with(&l("received-text"), "received_at", Some("yesterday".into())),
            Dead,
        ),
        shape(
            &l("received-number"),
            alert_with(&l("received-number"), "received_at", Some(5.into())),
            Dead,
        ),
        shape(
            &l("timestamp-list"),
            alert_with(&l("timestamp-list"), "timestamp", Some(json!([]))),
            Dead,
        ),
        shape(
            &l("event-data-list"),
            alert_with(&l("event-data-list"), "event_data", Some(json!([1]))),
            Dead,
        ),
        shape(
            &l("event-data-text"),
            alert_with(&l("event-data-text"), "event_data", Some("s".into())),
            Dead,
        ),
        shape(
            &l("dedup-text"),
            alert_with(&l("dedup-text"), "dedup_seconds", Some("300".into())),
            Dead,
        ),
        shape(
            &l("dedup-fraction"),
            alert_with(&l("dedup-fraction"), "dedup_seconds", Some(1.5.into())),
            Dead,
        ),
        shape(
            &l("dedup-1e400"),
            alert_with_text(&l("dedup-1e400"), "dedup_seconds", "1e400"),
            Dead,
        ),
        shape(
            &l("dedup-u64-overflow"),
            alert_with_text(
                &l("dedup-u64-overflow"),
                "dedup_seconds",
                "18446744073709551616",
            ),
            Dead,
        ),
        shape(
            &l("unknown-field"),
            alert_with(&l("unknown-field"), "extra", Some(1.into())),
            Dead,
        ),
        shape(
            &l("channel-crlf"),
            alert_with(&l("channel-crlf"), "channel", Some("a\r\nb".into())),
            Dead,
        ),
        shape(
            &l("deep-1000"),
            alert_with_text(
                &l("deep-1000"),
                "event_data",
                &format!("{{\"x\":{}}}", deep(1000)),
            ),
            Dead,
        ),
        shape(
            &l("client-number"),
            alert_with(&l("client-number"), "client_id", Some(5.into())),
            Dead,
        ),
        shape(
            &l("dedup-info-wrong"),
            alert_with(&l("dedup-info-wrong"), "dedup", Some(json!({"key": 5}))),
            Dead,
        ),
        shape(
            &l("context-text"),
            alert_with(&l("context-text"), "context", Some("x".into())),
            Dead,
        ),
        // Hostile but valid: they go through, bounded.
        shape(
            &l("received-year-9999"),
            alert_with(
                &l("received-year-9999"),
                "received_at",
                Some("9999-12-31T23:59:59Z".into()),
            ),
            Delivered,
        ),
        shape(
            &l("received-year-0"),
            alert_with(
                &l("received-year-0"),
                "received_at",
                Some("0000-01-01T00:00:00Z".into()),
            ),
            Delivered,
        ),
        shape(
            &l("timestamp-year-9999"),
            alert_with(
                &l("timestamp-year-9999"),
                "timestamp",
                Some("9999-12-31T23:59:59Z".into()),
            ),
            Delivered,
        ),
        shape(
            &l("window-max"),
            alert_with(&l("window-max"), "dedup_seconds", Some(i64::MAX.into())),
            Delivered,
        ),
        shape(
            &l("window-min"),
            alert_with(&l("window-min"), "dedup_seconds", Some(i64::MIN.into())),
            Delivered,
        ),
        shape(
            &l("list-100000"),
            alert_with(
                &l("list-100000"),
                "event_data",
                Some(json!({"x": vec![0; 100_000]})),
            ),
            Delivered,
        ),
        shape(
            &l("wide-key"),
            alert_with(
                &l("wide-key"),
                "event_data",
                Some(json!({"k".repeat(10_000): vec![0; 10_000]})),
            ),
            Delivered,
        ),
        shape(
            &l("crlf-values"),
            alert_with(
                &l("crlf-values"),
                "event_data",
                Some(json!({"a\r\nb": "c\u{0}d\r\n"})),
            ),
            Delivered,
        ),
        shape(
            &l("client-crlf"),
            alert_with(&l("client-crlf"), "client_id", Some("C.1\r\nX: y".into())),
            Delivered,
        ),
        shape(
            &l("deep-100"),
            alert_with_text(
                &l("deep-100"),
                "event_data",
                &format!("{{\"x\":{}}}", deep(100)),
            ),
            Delivered,
        ),
    ];
    // Valid shapes keep their label as name, so their delivery is told apart.
    for s in &mut shapes {
        if s.expect == Delivered {
            let mut v: Value = serde_json::from_slice(&s.bytes).unwrap();
            v["name"] = s.label.clone().into();
            s.bytes = v.to_string().into_bytes();
        }
    }
    shapes
}

/// Bad and hostile raw alerts for ingest (on `Server.Internal.Alerts`).
fn raw_shapes() -> Vec<Shape> {
    use Expect::*;
    let raw = |v: Value| v.to_string().into_bytes();
    vec![
        shape("raw-empty", "", Dead),
        shape("raw-null", "null", Dead),
        shape("raw-list", "[1,2]", Dead),
        shape("raw-not-utf8", b"{\"name\":\"\xff\"}".to_vec(), Dead),
        shape("raw-cut", "{\"name\":", Dead),
        shape("raw-no-name", "{}", Dead),
        shape("raw-name-empty", raw(json!({"name": ""})), Dead),
        shape("raw-name-blank", raw(json!({"name": "  \r\n "})), Dead),
        shape("raw-name-number", raw(json!({"name": 5})), Dead),
        shape(
            "raw-name-64k",
            raw(json!({"name": "n".repeat(65_536)})),
            Dead,
        ),
        shape(
            "raw-timestamp-text",
            raw(json!({"name": "x", "timestamp": "yesterday"})),
            Dead,
        ),
        shape(
            "raw-timestamp-1e400",
            "{\"name\":\"x\",\"timestamp\":1e400}",
            Dead,
        ),
        shape(
            "raw-event-data-list",
            raw(json!({"name": "x", "event_data": [1]})),
            Dead,
        ),
        shape(
            "raw-dedup-text",
            raw(json!({"name": "x", "dedup": "300"})),
            Dead,
        ),
        shape(
            "raw-dedup-fraction",
            raw(json!({"name": "x", "dedup": 1.5})),
            Dead,
        ),
        shape(
            "raw-condition-text",
            raw(json!({"name": "x", "condition": "no"})),
            Dead,
        ),
        shape(
            "raw-client-number",
            raw(json!({"name": "x", "client_id": 5})),
            Dead,
        ),
        shape(
            "raw-deep-1000",
            format!("{{\"name\":\"x\",\"event_data\":{{\"x\":{}}}}}", deep(1000)),
            Dead,
        ),
        shape(
            "raw-key-2mb",
            raw(json!({"name": "x", "event_data": {"k".repeat(2 << 20): 1}})),
            Dead,
        ),
        shape("raw-true", "true", Dead),
        shape("raw-string", "\"Server alert\"", Dead),
        shape("raw-number", "42", Dead),
        shape(
            "raw-artifact-number",
            raw(json!({"name": "x", "artifact": 5})),
            Dead,
        ),
        shape(
            "raw-flow-list",
            raw(json!({"name": "x", "flow_id": []})),
            Dead,
        ),
        shape(
            "raw-org-object",
            raw(json!({"name": "x", "org_id": {}})),
            Dead,
        ),
        shape(
            "raw-type-number",
            raw(json!({"name": "x", "artifact_type": 5})),
            Dead,
        ),
        shape(
            "raw-timestamp-bool",
            raw(json!({"name": "x", "timestamp": true})),
            Dead,
        ),
        shape(
            "raw-timestamp-bad-date",
            raw(json!({"name": "x", "timestamp": "2020-13-45T99:00:00Z"})),
            Dead,
        ),
        shape("raw-dedup-1e400", "{\"name\":\"x\",\"dedup\":1e400}", Dead),
        shape(
            "raw-dedup-u64-overflow",
            "{\"name\":\"x\",\"dedup\":18446744073709551616}",
            Dead,
        ),
        shape(
            "raw-event-data-text",
            raw(json!({"name": "x", "event_data": "s"})),
            Dead,
        ),
        shape(
            "raw-timestamp-before-year-0",
            raw(json!({"name": "x", "timestamp": -62_167_219_201i64})),
            Dead,
        ),
        shape(
            "raw-timestamp-i64-max",
            raw(json!({"name": "x", "timestamp": i64::MAX})),
            Dead,
        ),
        shape(
            "raw-timestamp-negative",
            raw(json!({"name": "raw-timestamp-negative", "timestamp": -1})),
            Delivered,
        ),
        shape(
            "raw-window-max",
            raw(json!({"name": "raw-window-max", "dedup": i64::MAX})),
            Delivered,
        ),
        shape(
            "raw-window-min",
            raw(json!({"name": "raw-window-min", "dedup": i64::MIN})),
            Delivered,
        ),
        shape(
            "raw-list-100000",
            raw(json!({"name": "raw-list-100000", "event_data": {"x": vec![0; 100_000]}})),
            Delivered,
        ),
        shape(
            "raw-crlf",
            raw(
                json!({"name": "raw-crlf", "client_id": "C.1\r\nX", "event_data": {"a\r\nb": "c\u{0}"}}),
            ),
            Delivered,
        ),
    ]
}

/// Peak resident memory of `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn suite_config(nats: &NatsServer, dir: &Path, hook: &Receiver, grumpy: &Receiver) -> String {
    test_config_text(
        nats,
        &format!(
            "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n\n{}\n[enrich]\nhttp_listen = \"127.0.0.1:0\"\n\n\
             [notify]\nhttp_listen = \"127.0.0.1:0\"\n{}{}",
            dedup_table(&dir.join("dedup")),
            hook_channel("hook", &hook.url("/hook"), "alert_exclude = \"^grumpy\""),
            hook_channel(
                "grumpy",
                &grumpy.url("/grumpy"),
                "alert_include = \"^grumpy\"\nretry_deadline_seconds = 4"
            ),
        ),
    )
}

const SERVICES: [&str; 4] = [
    "talon-ingest",
    "talon-dedup",
    "talon-enrich",
    "talon-notify",
];

/// At least 30 bad shapes on each stage's input subject, each followed by a
/// good alert, and a receiver that answers `Retry-After: 2^64-1`: no
/// process exits, each good and each hostile-but-valid alert is delivered
/// once, each bad one is in its stage's dead letters, the receiver's pause
/// is cut to its channel's deadline, and no service's peak memory reaches
/// 200 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_outlives_a_hostile_corpus() {
    let nats = NatsServer::start_with("max_payload: 8MB").await;
    let hook = Receiver::start(vec![Reply::status(200)]).await;
    let grumpy =
        Receiver::start(vec![Reply::status(503).retry_after("18446744073709551615")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(&config, suite_config(&nats, dir.path(), &hook, &grumpy)).unwrap();
    let mut services: Vec<ServiceProcess> = SERVICES
        .iter()
        .map(|name| ServiceProcess::spawn(name, &config, &[]))
        .collect();
    let mut addrs = Vec::new();
    for s in &mut services {
        addrs.push(s.ready_addr(Duration::from_secs(60)).await);
    }
    let js = jetstream::new(nats.client().await);

    let inputs: Vec<(&str, String, Vec<Shape>)> = vec![
        ("ingest", SUBJECT_ALERTS.to_owned(), raw_shapes()),
        ("dedup", accepted_subject(0), alert_shapes("dedup")),
        ("enrich", SUBJECT_UNIQUE.to_owned(), alert_shapes("enrich")),
        ("notify", notify_subject("hook"), alert_shapes("notify")),
    ];
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut dead_expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (stage, subject, shapes) in &inputs {
        let bad = shapes.iter().filter(|s| s.expect == Expect::Dead).count();
        assert!(bad >= 30, "{stage}: {bad} bad shapes");
        for (i, s) in shapes.iter().enumerate() {
            publish(&js, subject, s.bytes.clone()).await;
            match s.expect {
                Expect::Delivered => *expected.entry(s.label.clone()).or_default() += 1,
                Expect::Dead => dead_expected
                    .entry(stage)
                    .or_default()
                    .push(s.label.clone()),
            }
            // A good alert after each.
            let name = format!("good-{stage}-{i}");
            let body = if *stage == "ingest" {
                json!({"name": name, "dedup": -1}).to_string()
            } else {
                good(&name).to_string()
            };
            publish(&js, subject, body.into_bytes()).await;
            expected.insert(name, 1);
        }
    }
    // A delivery whose receiver asks for a pause of 2^64-1 seconds.
    publish(
        &js,
        SUBJECT_ALERTS,
        br#"{"name":"grumpy-1","dedup":-1}"#.to_vec(),
    )
    .await;

    let total: usize = expected.values().sum();
    settle(&hook, total, Duration::from_secs(120)).await;
    assert_eq!(
        delivered_names(&hook),
        expected,
        "each good alert exactly once"
    );

    for (stage, subject, shapes) in &inputs {
        let want = &dead_expected[stage];
        let mut letters = dead_letters(&js, stage, want.len() + 10).await;
        if *stage == "notify" {
            // grumpy-1, past its channel's deadline.
            let (grumpy_letters, rest): (Vec<_>, Vec<_>) = letters
                .into_iter()
                .partition(|l| l.channel.as_deref() == Some("grumpy"));
            assert_eq!(grumpy_letters.len(), 1, "{grumpy_letters:#?}");
            assert!(
                grumpy_letters[0].reason.contains("deadline")
                    || grumpy_letters[0].reason.contains("still failing"),
                "{}",
                grumpy_letters[0].reason
            );
            letters = rest;
        }
        assert_eq!(
            letters.len(),
            want.len(),
            "{stage}: expected dead letters for {want:?}, got reasons {:#?}",
            letters.iter().map(|l| &l.reason).collect::<Vec<_>>()
        );
        for l in &letters {
            assert!(!l.reason.is_empty());
            if *stage != "ingest" {
                assert_eq!(&l.subject, subject);
            }
        }
        let _ = shapes;
    }
    assert!(grumpy.count() >= 1, "the grumpy receiver was tried");
    // Every service reports the DLQ's size.
    let dead_total: usize = dead_expected.values().map(Vec::len).sum::<usize>() + 1;
    for addr in &addrs {
        let text = talon_kit::outbound::client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let gauge = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{addr}: no {name} in\n{text}"))
        };
        assert_eq!(gauge("talon_dlq_messages"), dead_total as u64, "{addr}");
        assert!(gauge("talon_dlq_bytes") > 0);
    }

    for (name, s) in SERVICES.iter().zip(&mut services) {
        assert!(
            matches!(s.child.try_wait(), Ok(None)),
            "{name} exited:\n{}",
            s.stderr_lines().join("\n")
        );
        let rss = peak_rss(s.child.id());
        println!("{name}: peak RSS {} MB", rss >> 20);
        assert!(
            rss > 0 && rss < 200 << 20,
            "{name}: peak RSS {} MB",
            rss >> 20
        );
    }
    for s in &mut services {
        assert_eq!(
            s.terminate(Duration::from_secs(20))
                .and_then(|st| st.code()),
            Some(0)
        );
    }
}

/// The suite stopped with a poison message waiting in each stream comes up
/// again, dead-letters the poison and drains every work queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_waiting_in_every_stream_does_not_keep_the_suite_down() {
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![Reply::status(200)]).await;
    let grumpy = Receiver::start(vec![Reply::status(200)]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(&config, suite_config(&nats, dir.path(), &hook, &grumpy)).unwrap();
    let start = || async {
        let mut services: Vec<ServiceProcess> = SERVICES
            .iter()
            .map(|name| ServiceProcess::spawn(name, &config, &[]))
            .collect();
        for s in &mut services {
            s.ready_addr(Duration::from_secs(60)).await;
        }
        services
    };
    let js = jetstream::new(nats.client().await);

    // Up once, then stopped.
    let mut services = start().await;
    publish(
        &js,
        SUBJECT_ALERTS,
        br#"{"name":"before","dedup":-1}"#.to_vec(),
    )
    .await;
    settle(&hook, 1, Duration::from_secs(60)).await;
    for s in &mut services {
        assert_eq!(
            s.terminate(Duration::from_secs(20))
                .and_then(|st| st.code()),
            Some(0)
        );
    }

    // Poison, then a good alert, in every stream.
    let inputs = [
        ("dedup", accepted_subject(0)),
        ("enrich", SUBJECT_UNIQUE.to_owned()),
        ("notify", notify_subject("hook")),
    ];
    for (stage, subject) in &inputs {
        for (i, id) in ["p\nq", "x\r\n", "a\u{0}b"].iter().enumerate() {
            let mut poison = good(&format!("poison-{stage}-{i}"));
            poison["id"] = (*id).into();
            publish(&js, subject, poison.to_string().into_bytes()).await;
        }
        publish(
            &js,
            subject,
            good(&format!("after-{stage}")).to_string().into_bytes(),
        )
        .await;
    }
    publish(&js, SUBJECT_ALERTS, b"{\"name\":".to_vec()).await;
    publish(
        &js,
        SUBJECT_ALERTS,
        br#"{"name":"after-ingest","dedup":-1}"#.to_vec(),
    )
    .await;

    let begun = Instant::now();
    let mut services = start().await;
    settle(&hook, 5, Duration::from_secs(60)).await;
    println!("up and drained in {:.1} s", begun.elapsed().as_secs_f64());
    let names = delivered_names(&hook);
    for stage in ["ingest", "dedup", "enrich", "notify"] {
        assert_eq!(names.get(&format!("after-{stage}")), Some(&1), "{names:#?}");
    }
    assert_eq!(names.values().sum::<usize>(), 5, "{names:#?}");
    for (stage, _) in &inputs {
        assert_eq!(dead_letters(&js, stage, 10).await.len(), 3, "{stage}");
    }
    assert_eq!(dead_letters(&js, "ingest", 10).await.len(), 1);
    for stream in ["ACCEPTED", "UNIQUE", "NOTIFY"] {
        assert_eq!(stream_messages(&js, stream).await, 0, "{stream} drained");
    }
    for s in &mut services {
        assert!(
            matches!(s.child.try_wait(), Ok(None)),
            "{}",
            s.stderr_lines().join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// The stateless stages' loop, driven directly with short limits.

/// The loop of ingest, the rules and enrich: an input that keeps failing is
/// dead-lettered with its last error after `dead_after` tries, one whose
/// handler panics is dead-lettered with the panic's text, one delivered
/// more than `dead_after` times without an answer (the stage died on it) is
/// dead-lettered without being handled again; the loop goes on and every
/// input is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_loop_dead_letters_what_fails_panics_or_never_got_an_answer() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use talon_kit::pipeline::{
        self, DeadLetters, LoopMetricNames, LoopMetrics, Outcome, StageError,
    };
    use talon_kit::streams::{ensure_consumer, ConsumerSpec};

    let nats = NatsServer::start().await;
    let js = jetstream::new(nats.client().await);
    talon_kit::streams::ensure_all(&js, 1).await.unwrap();
    let consumer = ensure_consumer(&js, &ConsumerSpec::enrich(), 1)
        .await
        .unwrap();
    publish(&js, SUBJECT_UNIQUE, b"crashed".to_vec()).await;
    // "crashed" was delivered 4 times and never answered (each nak stands
    // for a stage that died holding it).
    {
        use futures::StreamExt as _;
        for _ in 0..4 {
            let mut batch = consumer
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(5))
                .messages()
                .await
                .unwrap();
            let msg = batch.next().await.unwrap().unwrap();
            assert_eq!(&msg.payload[..], b"crashed");
            msg.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();
        }
    }
    for body in ["fails", "panics", "fine"] {
        publish(&js, SUBJECT_UNIQUE, body.as_bytes().to_vec()).await;
    }

    let metrics = LoopMetrics::register(
        &prometheus::Registry::new(),
        LoopMetricNames {
            inputs: ("test_inputs_total", "inputs"),
            batch_seconds: "test_batch_seconds",
            batch_size: "test_batch_size",
        },
    )
    .unwrap();
    let dead = DeadLetters {
        dead_after: 3,
        retry_delay_max: Duration::from_millis(200),
        ..DeadLetters::new(js.clone(), talon_proto::names::Stage::Enrich)
    };
    let calls: Arc<BTreeMap<&str, AtomicUsize>> = Arc::new(
        ["crashed", "fails", "panics", "fine"]
            .into_iter()
            .map(|k| (k, AtomicUsize::new(0)))
            .collect(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = {
        let (calls, shutdown) = (calls.clone(), shutdown.clone());
        tokio::spawn(pipeline::run(
            consumer,
            8,
            metrics,
            dead,
            shutdown,
            move |msg| {
                let calls = calls.clone();
                async move {
                    let body = String::from_utf8_lossy(&msg.payload).into_owned();
                    if let Some(n) = calls.get(body.as_str()) {
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    match body.as_str() {
                        "fails" => Err(StageError::NoInfo("boom".to_owned())),
                        "panics" => panic!("kaboom"),
                        _ => Ok(Outcome::new("done")),
                    }
                }
            },
        ))
    };

    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = dead_letters(&js, "enrich", 10).await;
        if letters.len() >= 3 || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut reasons: BTreeMap<String, String> = letters
        .iter()
        .map(|l| (l.raw.clone().unwrap_or_default(), l.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert_eq!(
        reasons.remove("fails").as_deref(),
        Some("failed 3 times; the last error: message without JetStream info: boom")
    );
    assert_eq!(
        reasons.remove("panics").as_deref(),
        Some("the stage panicked on it: kaboom")
    );
    let crashed = reasons.remove("crashed").unwrap();
    assert!(
        crashed.starts_with("delivered 5 times without an answer"),
        "{crashed}"
    );
    assert_eq!(
        calls["crashed"].load(Ordering::SeqCst),
        0,
        "never handled again"
    );
    assert_eq!(calls["fails"].load(Ordering::SeqCst), 3);
    assert_eq!(calls["panics"].load(Ordering::SeqCst), 1);
    assert_eq!(calls["fine"].load(Ordering::SeqCst), 1);
    // Everything acked: the work queue is empty, and the loop still runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream_messages(&js, "UNIQUE").await > 0 {
        assert!(Instant::now() < deadline, "UNIQUE not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!task.is_finished());
    shutdown.cancel();
    task.await.unwrap();
}
