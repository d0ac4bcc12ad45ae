//! Silences end to end through a real nats-server: made in the console,
//! applied by enrich (each operator, context keys, regexes, a start in the
//! future, overlapping silences, a channel of its own, expire now),
//! recorded in `HISTORY` with `silenced_by`, counted per silence; one made
//! while enrich is down applies when it is back, on every replica; dedup
//! keeps counting what a silence hid; and `talonctl silence`.

use std::time::Duration;

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::{json, Value};
use talon_proto::names::{STREAM_HISTORY, STREAM_NOTIFY, SUBJECT_ALERTS, SUBJECT_HISTORY};
use talon_proto::Alert;
use talon_tests::console::{console_users, password, Console};
use talon_tests::*;

const SLACK: &str = "slack-secops";
const MAIL: &str = "email-soc";

fn config() -> (String, talon_kit::Env) {
    let (users, env) = console_users("127.0.0.1:0");
    let text = format!(
        r#"{users}
[enrich]
http_listen = "127.0.0.1:0"
[[channels]]
id = "{MAIL}"
kind = "webhook"
url = "http://127.0.0.1:9/mail"
[[channels]]
id = "{SLACK}"
kind = "webhook"
url = "http://127.0.0.1:9/slack"
"#
    );
    (text, env)
}

async fn login(addr: std::net::SocketAddr, user: &str) -> Console {
    Console::login(addr, user, password(user))
        .await
        .unwrap_or_else(|(s, b)| panic!("{user} logs in: {s} {b}"))
}

fn alert(id: &str, name: &str, client: &str, hostname: &str, user: &str) -> Alert {
    let mut a = accepted_alert(id, name, chrono::Utc::now().timestamp_millis(), 0);
    a.client_id = Some(client.into());
    a.event_data = json!({"Severity": "High", "User": user, "Hostname": hostname})
        .as_object()
        .cloned()
        .unwrap_or_default();
    a
}

/// A silence's body for `POST /v1/silences`, ending in an hour.
fn silence(matchers: Value, comment: &str) -> Value {
    let ends = chrono::Utc::now() + chrono::Duration::hours(1);
    json!({"matchers": matchers, "ends_at": ends, "comment": comment})
}

async fn create(console: &Console, body: Value) -> Value {
    let (status, s) = console.post("/v1/silences", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    s
}

/// Waits until every live enrich replica has applied the silence (`applied_by`).
async fn applied(console: &Console, id: &str, replicas: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, s) = console.get(&format!("/v1/silences/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{s}");
        if s["applied_by"]["replicas"] == replicas && s["applied_by"]["of"] == replicas {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not applied: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `HISTORY`'s records by alert id.
async fn history(js: &jetstream::Context, n: usize) -> std::collections::HashMap<String, Alert> {
    let got: Vec<Alert> = collect(
        js,
        STREAM_HISTORY,
        SUBJECT_HISTORY,
        n,
        Duration::from_secs(3),
    )
    .await
    .unwrap_or_default()
    .iter()
    .filter_map(|m| serde_json::from_slice(&m.payload).ok())
    .collect();
    got.into_iter().map(|a| (a.id.clone(), a)).collect()
}

/// The alert ids published to `channel`.
async fn delivered(js: &jetstream::Context, channel: &str, n: usize) -> Vec<String> {
    let mut ids: Vec<String> = collect(
        js,
        STREAM_NOTIFY,
        &format!("Server.Monitor.Alerts.{channel}"),
        n,
        Duration::from_secs(2),
    )
    .await
    .unwrap_or_default()
    .iter()
    .filter_map(|m| serde_json::from_slice::<Alert>(&m.payload).ok())
    .map(|a| a.id)
    .collect();
    ids.sort();
    ids
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("metrics: {e}"))
        .text()
        .await
        .unwrap_or_default()
}

/// The value of the line of `metrics` that starts with `series`.
fn metric(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_hide_what_they_match_and_history_records_which() {
    let nats = NatsServer::start().await;
    import_clients(
        &nats,
        r#"{"client_id":"C.scan","hostname":"scanner-01","labels":["scanners"]}
{"client_id":"C.ws","hostname":"ws-07","labels":["finance"]}"#,
    )
    .await;
    let (text, env) = config();
    let enrich = start_enrich(&nats, &text).await;
    let console_proc = start_console(&nats, &text, env).await;
    let bob = login(console_proc.http_addr, "bob").await;
    let rita = login(console_proc.http_addr, "rita").await;
    let js = jetstream::new(nats.client().await);

    // A reader may look, not silence; bad silences are refused with the
    // field named.
    let (status, body) = rita
        .post(
            "/v1/silences",
            Some(silence(
                json!([{"field": "name", "op": "=", "value": "x"}]),
                "no",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for (bad, why) in [
        (silence(json!([]), "empty"), "at least one"),
        (
            silence(
                json!([{"field": "host", "op": "=", "value": "x"}]),
                "bad field",
            ),
            "field \"host\"",
        ),
        (
            silence(
                json!([{"field": "name", "op": "=~", "value": "("}]),
                "bad regex",
            ),
            "not a regular expression",
        ),
        (
            silence(
                json!([{"field": "name", "op": "=~", "value": ".*"}]),
                "everything",
            ),
            "every alert",
        ),
        (
            silence(json!([{"field": "name", "op": "=", "value": "x"}]), "  "),
            "comment",
        ),
        (
            json!({"matchers": [{"field": "name", "op": "=", "value": "x"}], "comment": "past",
                   "ends_at": chrono::Utc::now() - chrono::Duration::minutes(1)}),
            "future",
        ),
        (
            json!({"matchers": [{"field": "name", "op": "=", "value": "x"}], "comment": "long",
                   "ends_at": chrono::Utc::now() + chrono::Duration::days(31)}),
            "at most 30 days",
        ),
    ] {
        let (status, body) = bob.post("/v1/silences", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} -> {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(why),
            "{why}: {body}"
        );
    }
    let (status, _) = bob
        .post(
            "/v1/silences",
            Some(json!({"matchers": [], "comment": "no end"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Five silences, one per kind of matcher, and one pending.
    let scanner = create(
        &bob,
        silence(
            json!([{"field": "hostname", "op": "=", "value": "scanner-01"},
                   {"field": "name", "op": "=~", "value": "^Sigma.*"}]),
            "the nightly vulnerability scan trips Sigma rules",
        ),
    )
    .await;
    let svc = create(
        &bob,
        silence(
            json!([{"field": "context.User", "op": "=~", "value": "(?i)corp\\\\svc-.*"},
                   {"field": "labels", "op": "!=", "value": "finance"}]),
            "service accounts outside finance",
        ),
    )
    .await;
    let slack_only = create(
        &bob,
        silence(
            json!([{"field": "channel", "op": "=", "value": SLACK},
                   {"field": "name", "op": "!~", "value": "(?i)(honey|later).*"},
                   {"field": "severity", "op": "=", "value": "high"}]),
            "keep Slack quiet for all but honey files during the migration",
        ),
    )
    .await;
    let pending = create(
        &bob,
        json!({"matchers": [{"field": "name", "op": "=", "value": "Later"}],
               "starts_at": chrono::Utc::now() + chrono::Duration::seconds(4),
               "ends_at": chrono::Utc::now() + chrono::Duration::hours(1),
               "comment": "a maintenance window"}),
    )
    .await;
    assert_eq!(scanner["state"], "active");
    assert_eq!(scanner["created_by"], "bob");
    assert_eq!(pending["state"], "pending");
    let id = |s: &Value| s["id"].as_str().unwrap_or_default().to_owned();
    for s in [&scanner, &svc, &slack_only, &pending] {
        applied(&bob, &id(s), 1).await;
    }

    // (id, name, client, hostname in the row, user)
    let alerts = [
        (
            "a1",
            "Sigma: Mimikatz",
            "C.scan",
            "scanner-01",
            "CORP\\alice",
        ), // scanner
        ("a2", "Sigma: Mimikatz", "C.ws", "ws-07", "CORP\\alice"), // slack only
        (
            "a3",
            "Sigma: PsExec",
            "C.scan",
            "scanner-01",
            "CORP\\svc-backup",
        ), // scanner + svc
        (
            "a4",
            "Honey file opened",
            "C.ws",
            "ws-07",
            "CORP\\svc-backup",
        ), // nothing (finance)
        (
            "a5",
            "Honey file opened",
            "C.scan",
            "scanner-01",
            "CORP\\bob",
        ), // nothing
        ("a6", "Later", "C.ws", "ws-07", "CORP\\bob"),             // not yet
    ];
    for (i, (aid, name, client, host, user)) in alerts.iter().enumerate() {
        publish_unique(&js, &alert(aid, name, client, host, user), &format!("m{i}")).await;
    }
    let records = history(&js, alerts.len()).await;
    let by = |aid: &str| {
        let mut ids = records
            .get(aid)
            .map(|a| a.silenced_by.clone())
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    // a1 is hidden from both channels by the scanner silence, and from
    // Slack by the Slack one too: both named.
    assert_eq!(by("a1"), sorted(vec![id(&scanner), id(&slack_only)]));
    assert_eq!(by("a2"), vec![id(&slack_only)]);
    assert_eq!(
        by("a3"),
        sorted(vec![id(&scanner), id(&svc), id(&slack_only)]),
        "overlapping silences are all named"
    );
    assert_eq!(by("a4"), Vec::<String>::new());
    assert_eq!(by("a5"), Vec::<String>::new());
    assert_eq!(by("a6"), Vec::<String>::new());
    let routed = |aid: &str| {
        records
            .get(aid)
            .and_then(|a| a.routed_to.clone())
            .unwrap_or_default()
    };
    assert_eq!(routed("a1"), Vec::<String>::new());
    assert_eq!(
        routed("a2"),
        vec![MAIL.to_owned()],
        "hidden from Slack only"
    );
    assert_eq!(routed("a4"), vec![MAIL.to_owned(), SLACK.to_owned()]);
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        delivered(&js, MAIL, 10).await,
        ids(&["a2", "a4", "a5", "a6"])
    );
    assert_eq!(delivered(&js, SLACK, 10).await, ids(&["a4", "a5", "a6"]));

    // The pending one starts; expire now ends one.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, gone) = bob
        .post(
            &format!("/v1/silences/{}/expire", id(&scanner)),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert_eq!(gone["state"], "expired");
    assert_eq!(gone["updated_by"], "bob");
    assert!(gone["revision"].as_u64() > scanner["revision"].as_u64());
    applied(&bob, &id(&scanner), 1).await;
    publish_unique(&js, &alert("b1", "Later", "C.ws", "ws-07", "x"), "n1").await;
    publish_unique(
        &js,
        &alert("b2", "Sigma: Mimikatz", "C.scan", "scanner-01", "x"),
        "n2",
    )
    .await;
    let records = history(&js, alerts.len() + 2).await;
    assert_eq!(
        records.get("b1").map(|a| a.silenced_by.clone()),
        Some(vec![id(&pending)])
    );
    assert_eq!(
        records
            .get("b2")
            .map(|a| (a.silenced_by.clone(), a.routed_to.clone())),
        Some((vec![id(&slack_only)], Some(vec![MAIL.to_owned()]))),
        "the expired silence no longer hides it from e-mail"
    );

    // What each hid: in enrich's metrics and in the console, with the
    // alerts behind a link.
    let m = metrics(enrich.http_addr).await;
    for (s, n) in [(&scanner, 2), (&svc, 1), (&slack_only, 4), (&pending, 1)] {
        assert_eq!(
            metric(
                &m,
                &format!("talon_enrich_silenced_total{{silence=\"{}\"}}", id(s))
            ),
            Some(n),
            "{m}"
        );
    }
    // Sent nowhere at all: a1, a3 and b1.
    assert_eq!(
        metric(&m, "talon_enrich_alerts_total{outcome=\"silenced\"}"),
        Some(3)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let (status, list) = bob.get("/v1/silences").await;
        assert_eq!(status, StatusCode::OK);
        let hidden: Vec<u64> = list["silences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["hidden"].as_u64())
            .collect();
        if hidden.iter().sum::<u64>() == 8 {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let states: Vec<&str> = list["silences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["active", "active", "active", "expired"],
        "newest first"
    );
    assert_eq!(list["replicas"].as_array().map(Vec::len), Some(1));
    let (_, page) = rita
        .get(&format!("/v1/alerts?silence={}", id(&scanner)))
        .await;
    assert_eq!(page["counts"]["total"], 2, "{page}");
    let (status, expired) = rita.get("/v1/silences?state=expired").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(expired["silences"][0]["id"], scanner["id"]);
    let (status, one) = rita.get(&format!("/v1/silences/{}", id(&scanner))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["revisions"].as_array().map(Vec::len), Some(2), "{one}");
    assert_eq!(
        one["revisions"][0]["silence"]["ends_at"],
        scanner["ends_at"]
    );

    // An edit is a new revision; an edit based on an old one is refused;
    // an expired silence does not change.
    let mut edit = silence(
        json!([{"field": "name", "op": "=", "value": "Later"}]),
        "longer window",
    );
    edit["id"] = pending["id"].clone();
    edit["expected_revision"] = pending["revision"].clone();
    let (status, edited) = bob.post("/v1/silences", Some(edit.clone())).await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["comment"], "longer window");
    assert_eq!(edited["created_by"], "bob");
    let (status, _) = bob.post("/v1/silences", Some(edit)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let mut late = silence(json!([{"field": "name", "op": "=", "value": "x"}]), "again");
    late["id"] = scanner["id"].clone();
    let (status, _) = bob.post("/v1/silences", Some(late)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A preview counts what the matchers would have hidden in the last
    // day (here every record is "now"), channel matchers per channel.
    let (status, p) = rita
        .post(
            "/v1/silences/preview",
            Some(json!({"matchers": [{"field": "hostname", "op": "=", "value": "scanner-01"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["matched"], 4, "a1, a3, a5, b2: {p}");
    assert_eq!(p["examined"], 8);
    assert_eq!(p["alerts"][0]["id"], "b2", "newest first");
    let (status, p) = rita
        .post(
            "/v1/silences/preview",
            Some(json!({"matchers": [{"field": "name", "op": "=~", "value": ""}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (status, _) = rita.get("/v1/silences/not-an-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = rita.get(&format!("/v1/silences/{}", "0".repeat(32))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    console_proc.stop().await.ok();
    enrich.stop().await.ok();
}

/// A silence made while enrich is down is in force for its first alert
/// when it is back; two replicas apply it alike, each reporting what it
/// has applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_made_while_enrich_is_down_applies_on_every_replica() {
    let nats = NatsServer::start().await;
    let (text, env) = config();
    let first = start_enrich(&nats, &text).await;
    first.stop().await.ok();
    let console_proc = start_console(&nats, &text, env).await;
    let bob = login(console_proc.http_addr, "bob").await;
    let s = create(
        &bob,
        silence(
            json!([{"field": "name", "op": "=~", "value": "Noisy.*"}]),
            "known noise",
        ),
    )
    .await;
    let sid = s["id"].as_str().unwrap_or_default().to_owned();
    let js = jetstream::new(nats.client().await);

    // Each replica alone in turn, so each decides some alerts.
    let a = start_enrich(&nats, &text).await;
    let b = start_enrich(&nats, &text).await;
    applied(&bob, &sid, 2).await;
    b.stop().await.ok();
    publish_noisy_and_real(&js, 0..10).await;
    let _ = history(&js, 10).await;
    let a_addr = a.http_addr;
    let a_metrics = metrics(a_addr).await;
    a.stop().await.ok();
    let b = start_enrich(&nats, &text).await;
    publish_noisy_and_real(&js, 10..20).await;
    let records = history(&js, 20).await;
    assert_eq!(records.len(), 20);
    for (aid, a) in &records {
        let n: usize = aid.trim_start_matches('a').parse().unwrap_or(99);
        let expected = if n.is_multiple_of(2) {
            vec![sid.clone()]
        } else {
            vec![]
        };
        assert_eq!(a.silenced_by, expected, "{aid}");
    }
    let series = format!("talon_enrich_silenced_total{{silence=\"{sid}\"}}");
    assert_eq!(metric(&a_metrics, &series), Some(5), "the first replica");
    assert_eq!(
        metric(&metrics(b.http_addr).await, &series),
        Some(5),
        "the second"
    );
    let mut mail = delivered(&js, MAIL, 30).await;
    mail.sort_by_key(|i| i.trim_start_matches('a').parse::<u32>().unwrap_or(0));
    let odd: Vec<String> = (0..20)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("a{i}"))
        .collect();
    assert_eq!(mail, odd);
    b.stop().await.ok();
    console_proc.stop().await.ok();
}

/// The config of ingest, dedup, enrich, notify and a console whose one
/// channel `hook` is a web hook to `url` (plus `channel_keys`), the test
/// users' environment, and dedup's data directory (removed when dropped).
fn pipeline_config(url: &str, channel_keys: &str) -> (String, talon_kit::Env, tempfile::TempDir) {
    let (users, env) = console_users("127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    let text = format!(
        r#"{users}
[ingest]
http_listen = "127.0.0.1:0"
[dedup]
http_listen = "127.0.0.1:0"
data_dir = "{dir}"
[enrich]
http_listen = "127.0.0.1:0"
[[channels]]
id = "hook"
kind = "webhook"
url = "{url}"
{channel_keys}"#,
        dir = dir.path().display(),
    );
    (text, env, dir)
}

/// Alerts `a<i>` for each `i`: "Noisy rule" when `i` is even, else "Real
/// rule".
async fn publish_noisy_and_real(js: &jetstream::Context, ids: std::ops::Range<usize>) {
    for i in ids {
        let name = if i.is_multiple_of(2) {
            "Noisy rule"
        } else {
            "Real rule"
        };
        let id = format!("a{i}");
        publish_unique(js, &alert(&id, name, "C.1", "h", "u"), &id).await;
    }
}

/// The issue's end-to-end count: 1,000 alerts through ingest, dedup,
/// enrich and notify to a web hook, 300 of them matching a silence: 700
/// delivered, the 300 in `HISTORY` with `silenced_by` and delivered
/// nowhere, and the metrics and the console say 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_alerts_three_hundred_silenced_end_to_end() {
    let nats = NatsServer::start().await;
    let receiver = receiver::Receiver::start(vec![]).await;
    let (text, env, _dedup_dir) = pipeline_config(
        &receiver.url("/hook"),
        "rate_per_minute = 0\nmax_in_flight = 16\n",
    );
    let ingest = start_ingest(&nats, &text, env.clone()).await;
    let dedup = start_dedup(&nats, &text).await;
    let enrich = start_enrich(&nats, &text).await;
    let notify = start_notify(&nats, &text, env.clone()).await;
    let console_proc = start_console(&nats, &text, env).await;
    let bob = login(console_proc.http_addr, "bob").await;
    let s = create(
        &bob,
        silence(
            json!([{"field": "name", "op": "=~", "value": "Sigma: scanner .*"},
                   {"field": "context.Image", "op": "=", "value": "nmap.exe"}]),
            "the weekly network scan",
        ),
    )
    .await;
    let sid = s["id"].as_str().unwrap_or_default().to_owned();
    applied(&bob, &sid, 1).await;

    let client = nats.client().await;
    let js = jetstream::new(client);
    let mut acks = Vec::new();
    for i in 0..1000 {
        // 300 scanner alerts with nmap; 100 with the name but another
        // image, and 600 others: only the 300 match.
        let (name, image) = match i % 10 {
            0..=2 => (format!("Sigma: scanner {i}"), "nmap.exe"),
            3 => (format!("Sigma: scanner {i}"), "cmd.exe"),
            _ => (format!("Honey file {i}"), "nmap.exe"),
        };
        let row = json!({"name": name, "client_id": "C.1", "dedup": -1,
                         "event_data": {"Image": image, "Severity": "High"}});
        acks.push(
            js.publish(
                SUBJECT_ALERTS,
                serde_json::to_vec(&row).unwrap_or_default().into(),
            )
            .await,
        );
    }
    for ack in acks {
        ack.unwrap_or_else(|e| panic!("publish: {e}"))
            .await
            .unwrap_or_else(|e| panic!("ack: {e}"));
    }
    receiver
        .wait_accepted(700, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let records = history(&js, 1000).await;
    assert_eq!(records.len(), 1000);
    let silenced: Vec<&Alert> = records
        .values()
        .filter(|a| !a.silenced_by.is_empty())
        .collect();
    assert_eq!(silenced.len(), 300);
    assert!(silenced.iter().all(|a| a.silenced_by == [sid.clone()]
        && a.routed_to.as_deref() == Some(&[][..])
        && a.name.starts_with("Sigma: scanner")));
    // Nothing more arrives: 700 exactly, none of them silenced.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.accepted();
    let names: Vec<String> = got
        .iter()
        .filter_map(|b| {
            b["alert"]["name"]
                .as_str()
                .or(b["name"].as_str())
                .map(str::to_owned)
        })
        .collect();
    println!(
        "delivered {}, silenced {}, in HISTORY {}",
        got.len(),
        silenced.len(),
        records.len()
    );
    assert_eq!(got.len(), 700);
    let silenced_names: std::collections::HashSet<&str> =
        silenced.iter().map(|a| a.name.as_str()).collect();
    assert!(names.iter().all(|n| !silenced_names.contains(n.as_str())));
    let m = metrics(enrich.http_addr).await;
    assert_eq!(
        metric(
            &m,
            &format!("talon_enrich_silenced_total{{silence=\"{sid}\"}}")
        ),
        Some(300),
        "{m}"
    );
    assert_eq!(
        metric(&m, "talon_enrich_alerts_total{outcome=\"silenced\"}"),
        Some(300)
    );
    assert_eq!(
        metric(&m, "talon_enrich_routed_total{channel=\"hook\"}"),
        Some(700)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, one) = bob.get(&format!("/v1/silences/{sid}")).await;
        if one["hidden"] == 300 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{one}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, page) = bob.get("/v1/alerts?silenced=true").await;
    assert_eq!(page["counts"]["total"], 300);
    for service in [console_proc, notify, enrich, dedup, ingest] {
        service.stop().await.ok();
    }
}

/// A silence never loses a count: repeats dedup suppressed while the
/// silence hid the first are counted in `suppressed_before` of the next
/// alert after both the silence and the window ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_keeps_counting_while_a_silence_hides() {
    let nats = NatsServer::start().await;
    let (text, env, _dedup_dir) = pipeline_config("http://127.0.0.1:9/hook", "");
    let ingest = start_ingest(&nats, &text, env.clone()).await;
    let dedup = start_dedup(&nats, &text).await;
    let enrich = start_enrich(&nats, &text).await;
    let console_proc = start_console(&nats, &text, env).await;
    let bob = login(console_proc.http_addr, "bob").await;
    let s = create(
        &bob,
        silence(
            json!([{"field": "client_id", "op": "=", "value": "C.loud"}]),
            "a noisy host",
        ),
    )
    .await;
    let sid = s["id"].as_str().unwrap_or_default().to_owned();
    applied(&bob, &sid, 1).await;
    let js = jetstream::new(nats.client().await);
    let raise = |n: u32| {
        let js = js.clone();
        async move {
            let row = json!({"name": "Failed logons", "client_id": "C.loud", "dedup": 3, "event_data": {"n": n}});
            js.publish(
                SUBJECT_ALERTS,
                serde_json::to_vec(&row).unwrap_or_default().into(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    // The first is unique and silenced; four repeats in its window are
    // suppressed by dedup.
    for n in 0..5 {
        raise(n).await;
    }
    let records = history(&js, 5).await;
    assert_eq!(records.len(), 1);
    assert!(records.values().all(|a| a.silenced_by == [sid.clone()]));
    let (status, _) = bob
        .post(&format!("/v1/silences/{sid}/expire"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    applied(&bob, &sid, 1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    raise(5).await;
    let sent = collect(
        &js,
        STREAM_NOTIFY,
        "Server.Monitor.Alerts.hook",
        5,
        Duration::from_secs(3),
    )
    .await
    .unwrap_or_default();
    let sent: Vec<Alert> = sent
        .iter()
        .filter_map(|m| serde_json::from_slice(&m.payload).ok())
        .collect();
    assert_eq!(sent.len(), 1, "only the one after the silence");
    assert_eq!(sent[0].dedup.as_ref().map(|d| d.suppressed_before), Some(4));
    assert!(sent[0].silenced_by.is_empty());
    for service in [console_proc, enrich, dedup, ingest] {
        service.stop().await.ok();
    }
}

/// `talonctl silence add|list|expire` as an analyst's API token; a
/// reader's token may list but not add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talonctl_silence_adds_lists_and_expires() {
    const BOT: &str = "silence-bot-token-0123456789abcdef";
    const VIEWER: &str = "viewer-token-0123456789abcdef0123";
    let nats = NatsServer::start().await;
    let (text, env) = config();
    let text = format!(
        "{text}\n[[console.users]]\nname = \"silence-bot\"\nroles = [\"analyst\"]\ntokens_env = \"BOT_TOKENS\"\n\
         [[console.users]]\nname = \"viewer\"\nroles = [\"reader\"]\ntokens_env = \"VIEWER_TOKENS\"\n"
    );
    let env = env.with("BOT_TOKENS", BOT).with("VIEWER_TOKENS", VIEWER);
    let console_proc = start_console(&nats, &text, env).await;
    let url = format!("http://{}", console_proc.http_addr);
    let ctl = |token: &'static str, args: Vec<String>| {
        let url = url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all = vec!["silence".to_owned(), "--url".to_owned(), url];
                all.extend(args);
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                run_binary("talonctl", &all, &[("TALON_CONSOLE_TOKEN", token)])
            })
            .await
            .unwrap_or((-1, String::new(), String::new()))
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (code, out, err) = ctl(
        BOT,
        args(&[
            "add",
            "--for",
            "2h",
            "--comment",
            "nightly scan",
            "name=~\"^Sigma.*\"",
            "hostname=scanner-01",
        ]),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 32, "{out}");
    let (code, out, _) = ctl(VIEWER, args(&["list"])).await;
    assert_eq!(code, 0);
    let line = out.lines().next().unwrap_or_default();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.first(), Some(&id.as_str()));
    assert_eq!(fields.get(1), Some(&"active"));
    assert_eq!(fields.get(4), Some(&"silence-bot"));
    assert_eq!(
        fields.get(5),
        Some(&"name=~\"^Sigma.*\" hostname=\"scanner-01\"")
    );
    assert_eq!(fields.get(6), Some(&"nightly scan"));
    let (code, _, err) = ctl(
        VIEWER,
        args(&["add", "--for", "1h", "--comment", "x", "name=y"]),
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    let (code, _, err) = ctl(
        BOT,
        args(&["add", "--for", "1h", "--comment", "x", "hostnme=y"]),
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("field \"hostnme\""), "{err}");
    let (code, out, err) = ctl(BOT, args(&["expire", &id])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&format!("{id}\texpired at ")), "{out}");
    let (_, out, _) = ctl(VIEWER, args(&["list", "--state", "active"])).await;
    assert_eq!(out.trim(), "");
    // Several states: sent as `active%2Cexpired`.
    let (code, out, err) = ctl(VIEWER, args(&["list", "--state", "active,expired"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{id}\texpired\t")), "{out}");
    let (_, out, _) = ctl(VIEWER, args(&["list", "--state", "expired", "--json"])).await;
    let listed: Value =
        serde_json::from_str(out.lines().next().unwrap_or("null")).unwrap_or_default();
    assert_eq!(listed["updated_by"], "silence-bot");
    console_proc.stop().await.ok();
}
