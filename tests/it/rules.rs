//! ingest's rules end to end: monitoring rows on `Monitoring.<Artifact>` (by
//! NATS, by `POST /v1/events/<Artifact>`, by `talonctl event`) come out of
//! the real pipeline (ingest → dedup) on `talon.alerts.unique` as the
//! alerts the rules of deploy/talon.example.toml raise, deduplicated as
//! configured; rows a rule cannot render are dead-lettered; a redelivered
//! row raises one alert.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use serde_json::{json, Value};
use talon_kit::Env;
use talon_proto::names::{
    monitoring_subject, Stage, CONSUMER_RULES, STREAM_ALERTS, STREAM_DLQ, STREAM_MONITORING,
    STREAM_UNIQUE, SUBJECT_UNIQUE,
};
use talon_proto::{Alert, DeadLetter};
use talon_tests::*;

const HONEY: &str = "Linux.Detection.Honeyfiles";
const SIGMA: &str = "Sigma.Windows.Hayabusa.Monitoring";
const ALL: &str = "Custom.Client.Detections";

const CLIENTS: &str =
    "{\"client_id\":\"C.1\",\"hostname\":\"web-1\",\"fqdn\":\"web-1.example.org\"}\n\
                       {\"client_id\":\"C.2\",\"hostname\":\"db-1\"}\n";

/// The `[[rules]]` of the example config, as they are shipped.
fn example_rules() -> String {
    let example = include_str!("../../deploy/talon.example.toml");
    let start = example.find("\n[[rules]]").expect("the example has rules");
    let end = example.find("\n[dedup]").expect("the example has [dedup]");
    let rules = example[start..end].to_owned();
    for name in [
        "Server.Monitor.HoneyfileAccess",
        "Server.Monitor.SigmaHits",
        "Server.Monitor.AllColumns",
        "Server.Monitor.ClientEventQueryErrors",
        "Server.Monitor.FailedCollections",
        "Server.Monitor.FailedLogonBurst",
        "Server.Monitor.NewExecutable",
        "Server.Monitor.SysmonSilent",
    ] {
        assert!(rules.contains(name), "the example has rule {name}");
    }
    rules
}

const TOKEN: &str = "rules-token-0123456789abcdef";

fn env() -> Env {
    Env::default().with("TALON_INGEST_TOKENS", TOKEN)
}

/// nats-server, the inventory, ingest with the example rules and a dedup.
struct Suite {
    nats: NatsServer,
    ingest: InProcess,
    dedup: InProcess,
    js: jetstream::Context,
    _dir: tempfile::TempDir,
}

impl Suite {
    async fn start() -> Suite {
        let nats = NatsServer::start().await;
        import_clients(&nats, CLIENTS).await;
        let ingest = start_ingest(
            &nats,
            &format!(
                "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n{}",
                example_rules()
            ),
            env(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let dedup = start_dedup(&nats, &dedup_table(dir.path())).await;
        let js = jetstream::new(nats.client().await);
        Suite {
            nats,
            ingest,
            dedup,
            js,
            _dir: dir,
        }
    }

    /// Publishes `row` on `Monitoring.<artifact>` and waits for the ack.
    async fn row(&self, artifact: &str, row: Value) -> u64 {
        self.raw_row(artifact, serde_json::to_vec(&row).unwrap(), None)
            .await
    }

    async fn raw_row(&self, artifact: &str, payload: Vec<u8>, msg_id: Option<&str>) -> u64 {
        let mut message = PublishMessage::build().payload(payload.into());
        if let Some(id) = msg_id {
            message = message.message_id(id);
        }
        self.js
            .send_publish(monitoring_subject(artifact), message)
            .await
            .expect("publish")
            .await
            .expect("ack")
            .sequence
    }

    /// What came out of dedup, at most `at_most` (waits 3 s of quiet).
    async fn unique(&self, at_most: usize) -> Vec<Alert> {
        collect_as(&self.js, STREAM_UNIQUE, SUBJECT_UNIQUE, at_most).await
    }

    async fn dead_letters(&self, at_most: usize) -> Vec<DeadLetter> {
        collect_as(&self.js, STREAM_DLQ, &Stage::Rules.dlq_subject(), at_most).await
    }

    async fn stop(self) {
        self.ingest.stop().await.unwrap();
        self.dedup.stop().await.unwrap();
        drop(self.nats);
    }
}

fn names(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.name.as_str()).collect()
}

#[tokio::test]
async fn a_honey_file_alert_is_per_client_and_file_and_shows_the_client() {
    let s = Suite::start().await;
    let row = |file: &str, client: &str| {
        json!({"FileName": file, "Pid": 4120, "ProcessName": "cat", "Uid": 1000,
               "ClientId": client, "_ts": 1_790_000_000})
    };
    for (file, client) in [
        ("/home/a/honey.docx", "C.1"),
        ("/home/a/honey.docx", "C.1"), // the same client and file: suppressed
        ("/home/a/other.xlsx", "C.1"),
        ("/home/a/honey.docx", "C.2"),
        ("/home/a/honey.docx", "C.9"), // not in the inventory
    ] {
        s.row(HONEY, row(file, client)).await;
    }
    let got = s.unique(10).await;
    assert_eq!(
        names(&got),
        [
            r#"Honey file "/home/a/honey.docx" accessed on web-1"#,
            r#"Honey file "/home/a/other.xlsx" accessed on web-1"#,
            r#"Honey file "/home/a/honey.docx" accessed on db-1"#,
            r#"Honey file "/home/a/honey.docx" accessed on C.9"#,
        ]
    );
    let a = &got[0];
    assert_eq!(a.source, "rule:Server.Monitor.HoneyfileAccess");
    assert_eq!(a.client_id.as_deref(), Some("C.1"));
    assert_eq!(a.artifact.as_deref(), Some(HONEY));
    assert_eq!(a.artifact_type.as_deref(), Some("CLIENT_EVENT"));
    assert_eq!(a.dedup_seconds, 300);
    assert_eq!(a.timestamp.timestamp(), 1_790_000_000, "the row's _ts");
    assert_eq!(
        Value::Object(a.event_data.clone()),
        json!({"FileName": "/home/a/honey.docx", "Pid": 4120, "ProcessName": "cat",
               "Artifact": HONEY, "ArtifactType": "CLIENT_EVENT", "ClientId": "C.1",
               "Level": "HIGH"})
    );
    let window = a.dedup.as_ref().unwrap();
    assert_eq!((window.window_end - window.window_start).num_seconds(), 300);
    s.stop().await;
}

#[tokio::test]
async fn sigma_hits_of_high_level_raise_one_alert_per_title_in_five_minutes() {
    let s = Suite::start().await;
    let hit = |title: &str, level: &str, eid: u32| {
        json!({"Timestamp": "2026-01-01T00:00:00Z", "Computer": "dc1.example.org",
               "Channel": "Security", "EID": eid, "Level": level, "Title": title,
               "RecordID": 1, "Details": {"User": "alice", "Proc": "mimikatz.exe"},
               "ClientId": "C.1"})
    };
    for (title, level) in [
        ("Mimikatz Use", "high"),
        ("Mimikatz Use", "critical"), // the same title within 300 s
        ("Suspicious Service", "High"),
        ("Noisy Thing", "medium"), // fails `where`
        ("Mimikatz Use", "low"),   // fails `where`
    ] {
        s.row(SIGMA, hit(title, level, 4688)).await;
    }
    s.row(SIGMA, json!({"Title": "No level", "ClientId": "C.1"}))
        .await; // a missing column does not match
    let got = s.unique(10).await;
    assert_eq!(names(&got), ["Mimikatz Use", "Suspicious Service"]);
    let a = &got[0];
    assert_eq!(a.source, "rule:Server.Monitor.SigmaHits");
    assert_eq!(a.dedup_seconds, 300);
    assert_eq!(
        Value::Object(a.event_data.clone()),
        json!({"Level": "high", "Channel": "Security", "EID": 4688,
               "Details": {"User": "alice", "Proc": "mimikatz.exe"},
               "Artifact": SIGMA, "ArtifactType": "CLIENT_EVENT", "ClientId": "C.1"})
    );
    // Rows failing `where` raised nothing at all, not even a suppressed alert.
    assert_eq!(stream_messages(&s.js, STREAM_ALERTS).await, 3);
    assert!(s.dead_letters(1).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn all_columns_but_the_excluded_with_name_and_severity_set_last() {
    let s = Suite::start().await;
    s.row(
        ALL,
        json!({"foo": 1, "bar": "x", "baz": null, "food": "kept", "Rule": "r-17",
               "Severity": "low", "ClientId": "C.2", "Nested": {"a": [1, 2]}}),
    )
    .await;
    let got = s.unique(2).await;
    assert_eq!(names(&got), ["Detection on db-1"]);
    assert_eq!(got[0].source, "rule:Server.Monitor.AllColumns");
    assert_eq!(
        Value::Object(got[0].event_data.clone()),
        json!({"food": "kept", "Rule": "r-17", "Severity": "medium", "ClientId": "C.2",
               "Nested": {"a": [1, 2]}}),
        "foo, bar and baz excluded; the row's Severity overridden"
    );
    assert_eq!(
        got[0].dedup_seconds, 0,
        "no alert.dedup: the configured default"
    );
    s.stop().await;
}

#[tokio::test]
async fn unrenderable_rows_are_dead_lettered_and_a_redelivered_row_raises_one_alert() {
    let s = Suite::start().await;
    // No FileName: the name template cannot be rendered.
    let seq = s.row(HONEY, json!({"Pid": 1, "ClientId": "C.1"})).await;
    // Not a JSON object.
    s.raw_row(HONEY, b"[1, 2]".to_vec(), None).await;
    s.raw_row(HONEY, b"{not json".to_vec(), None).await;
    // A row no rule watches is acked and forgotten, whatever it holds.
    s.raw_row("Nobody.Watches.This", b"garbage".to_vec(), None)
        .await;
    // Two good rows, one published twice with the same Nats-Msg-Id.
    let good =
        |file: &str| serde_json::to_vec(&json!({"FileName": file, "ClientId": "C.1"})).unwrap();
    s.raw_row(HONEY, good("/a"), Some("row-a")).await;
    s.raw_row(HONEY, good("/a"), Some("row-a")).await;
    s.raw_row(HONEY, good("/b"), None).await;

    let letters = s.dead_letters(10).await;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    assert_eq!(letters[0].stage, "rules");
    assert_eq!(letters[0].subject, monitoring_subject(HONEY));
    assert_eq!(letters[0].stream_seq, Some(seq));
    assert_eq!(
        letters[0].reason,
        "rule \"Server.Monitor.HoneyfileAccess\": cannot render alert.name: the row has no column \"FileName\""
    );
    assert_eq!(
        letters[0].raw.as_deref(),
        Some(r#"{"Pid":1,"ClientId":"C.1"}"#)
    );
    assert_eq!(
        letters[1].reason,
        "a monitoring row must be a JSON object, got an array"
    );
    assert!(letters[2]
        .reason
        .starts_with("a monitoring row must be a JSON object: "));
    wait_for_messages(&s.js, STREAM_ALERTS, 2, Duration::from_secs(10))
        .await
        .unwrap();

    // Every row comes back to the rules (as after a crash between
    // publishing and acking): the same alerts and letters, so no copy.
    let before = (
        stream_messages(&s.js, STREAM_ALERTS).await,
        stream_messages(&s.js, STREAM_DLQ).await,
    );
    assert_eq!(before.0, 2);
    let ingest_config = format!(
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n{}",
        example_rules()
    );
    let Suite {
        nats,
        ingest,
        dedup,
        js,
        _dir,
    } = s;
    ingest.stop().await.unwrap();
    js.get_stream(STREAM_MONITORING)
        .await
        .unwrap()
        .delete_consumer(CONSUMER_RULES)
        .await
        .unwrap();
    let ingest = start_ingest(&nats, &ingest_config, env()).await;
    let consumer_done = async {
        loop {
            let mut c: jetstream::consumer::PullConsumer = js
                .get_stream(STREAM_MONITORING)
                .await
                .unwrap()
                .get_consumer(CONSUMER_RULES)
                .await
                .unwrap();
            let info = c.info().await.unwrap();
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), consumer_done)
        .await
        .expect("the rules read every row again");
    let after = (
        stream_messages(&js, STREAM_ALERTS).await,
        stream_messages(&js, STREAM_DLQ).await,
    );
    assert_eq!(after, before, "no second alert, no second dead letter");

    let s = Suite {
        nats,
        ingest,
        dedup,
        js,
        _dir,
    };
    let got = s.unique(5).await;
    assert_eq!(
        names(&got),
        [
            r#"Honey file "/a" accessed on web-1"#,
            r#"Honey file "/b" accessed on web-1"#
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn rows_by_http_and_by_talonctl_reach_the_rules() {
    let s = Suite::start().await;
    let http = talon_kit::outbound::client();
    let url = |artifact: &str| format!("http://{}/v1/events/{artifact}", s.ingest.http_addr);
    let post = |artifact: &str, token: Option<&str>, content_type: &str, body: String| {
        let mut req = http
            .post(url(artifact))
            .header("content-type", content_type)
            .header("idempotency-key", "req-1")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let rows = json!([
        {"FileName": "/http", "ClientId": "C.1"},
        7,
        {"FileName": "/http", "ClientId": "C.2"}
    ])
    .to_string();
    let (status, body) = post(HONEY, Some(TOKEN), "application/json", rows.clone()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 2);
    assert_eq!(body["accepted"][1]["index"], 2);
    assert_eq!(
        body["rejected"],
        json!([{"index": 1, "reason": "a monitoring row must be a JSON object, got a number"}])
    );
    // The same request again (a client retrying): JetStream keeps one copy.
    let (status, _) = post(HONEY, Some(TOKEN), "application/json", rows).await;
    assert_eq!(status, 202);
    assert_eq!(stream_messages(&s.js, STREAM_MONITORING).await, 2);

    let (status, _) = post(HONEY, None, "application/json", "{}".into()).await;
    assert_eq!(status, 401);
    let (status, _) = post(HONEY, Some(TOKEN), "text/plain", "{}".into()).await;
    assert_eq!(status, 415);
    for bad in ["Linux..Honeyfiles", "Linux.*", "Linux.%3E"] {
        let (status, body) = post(bad, Some(TOKEN), "application/json", "{}".into()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("not an artifact name"));
    }
    let (status, body) = post(HONEY, Some(TOKEN), "application/x-ndjson", "\n".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("the body holds no rows"))
    );

    let (code, out, err) = run_binary(
        "talonctl",
        &[
            "event",
            HONEY,
            "FileName=/cli",
            "ClientId=C.1",
            "Pid=42",
            "--nats",
            &s.nats.url(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim().parse::<u64>().is_ok(),
        "prints the sequence: {out}"
    );

    let got = s.unique(5).await;
    assert_eq!(
        names(&got),
        [
            r#"Honey file "/http" accessed on web-1"#,
            r#"Honey file "/http" accessed on db-1"#,
            r#"Honey file "/cli" accessed on web-1"#,
        ]
    );
    assert_eq!(got[2].event_data["Pid"], 42);
    let letters = s.dead_letters(5).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].subject, format!("http:/v1/events/{HONEY}"));
    assert_eq!(letters[0].raw.as_deref(), Some("7"));
    s.stop().await;
}

/// The example rules' alerts (a honey file, a Sigma hit, every column of a
/// detection) as a SOC analyst finds them in the console: the client by
/// name, the severity, the rule, and the links into the Velociraptor GUI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_rules_alerts_reach_the_console_with_client_severity_and_links() {
    let s = Suite::start().await;
    let (users, env) = talon_tests::console::console_users("127.0.0.1:0");
    // The example's [enrich] as shipped (its severity rows read Level).
    let example = include_str!("../../deploy/talon.example.toml");
    let start = example
        .find("\n[enrich]\n")
        .expect("the example has [enrich]");
    let end = example
        .find("\n[notify]\n")
        .expect("the example has [notify]");
    let enrich_table = example[start..end].replace("127.0.0.1:8472", "127.0.0.1:0");
    let text = format!(
        "{users}{enrich_table}\n[velociraptor]\ngui_url = \"https://vr.example.org:8889/\"\n"
    );
    let enrich = start_enrich(&s.nats, &text).await;
    let console = start_console(&s.nats, &text, env).await;
    s.row(
        HONEY,
        json!({"FileName": "/home/a/honey.docx", "Pid": 4120, "ProcessName": "cat",
               "Uid": 1000, "ClientId": "C.1", "_ts": 1_790_000_000}),
    )
    .await;
    s.row(
        SIGMA,
        json!({"Timestamp": "2026-01-01T00:00:00Z", "Computer": "dc1.example.org",
               "Channel": "Security", "EID": 4688, "Level": "critical",
               "Title": "Mimikatz Use", "RecordID": 1,
               "Details": {"User": "alice", "Proc": "mimikatz.exe"}, "ClientId": "C.2"}),
    )
    .await;
    s.row(
        ALL,
        json!({"Rule": "r-17", "Severity": "low", "ClientId": "C.1", "foo": 1}),
    )
    .await;

    let alice = talon_tests::console::Console::login(
        console.http_addr,
        "alice",
        talon_tests::console::password("alice"),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let page = loop {
        let (_, page) = alice.get("/v1/alerts").await;
        if page["counts"]["total"] == 3 {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shown: Vec<(&str, &str, &str, &str, &str)> = page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["severity"].as_str().unwrap_or("none"),
                a["client_id"].as_str().unwrap(),
                a["hostname"].as_str().unwrap(),
                a["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "Detection on web-1",
                "medium",
                "C.1",
                "web-1",
                "rule:Server.Monitor.AllColumns"
            ),
            (
                "Mimikatz Use",
                "critical",
                "C.2",
                "db-1",
                "rule:Server.Monitor.SigmaHits"
            ),
            (
                r#"Honey file "/home/a/honey.docx" accessed on web-1"#,
                "high",
                "C.1",
                "web-1",
                "rule:Server.Monitor.HoneyfileAccess"
            ),
        ]
    );
    assert_eq!(
        page["alerts"][2]["links"]["host"],
        "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.1"
    );
    assert_eq!(
        page["alerts"][1]["links"]["host"],
        "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.2"
    );
    assert_eq!(
        page["counts"]["severity"],
        json!({"critical": 1, "high": 1, "medium": 1})
    );

    // One alert whole: the context table and the client's details.
    let id = page["alerts"][1]["id"].as_str().unwrap();
    let (_, sigma) = alice.get(&format!("/v1/alerts/{id}")).await;
    let context: Vec<(&str, &str)> = sigma["alert"]["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    for wanted in [
        ("EID", "4688"),
        ("Channel", "Security"),
        ("Details.User", "alice"),
    ] {
        assert!(context.contains(&wanted), "{wanted:?} in {context:?}");
    }
    assert!(
        context
            .iter()
            .any(|(k, v)| k.starts_with("Details") && v.contains("mimikatz.exe")),
        "{context:?}"
    );
    assert_eq!(sigma["alert"]["client"]["hostname"], "db-1");
    assert_eq!(sigma["alert"]["artifact"], SIGMA);

    console.stop().await.unwrap();
    enrich.stop().await.unwrap();
    s.stop().await;
}

/// The operations pack of deploy/talon.example.toml on rows shaped as
/// Velociraptor's queues carry them (through the event forwarder, which adds
/// `ClientId`; `_ts` is when the server received the row).
#[tokio::test]
async fn the_operations_pack_fires_on_velociraptor_shaped_rows() {
    const ERRORS: &str = "Server.Monitor.TalonClientEventErrors";
    const FLOWS: &str = "System.Flow.Completion";
    const LOGONS: &str = "Windows.Events.FailedLogons";
    const SYSMON: &str = "Windows.Sysinternals.SysmonLogForward";
    let s = Suite::start().await;
    let now = chrono::Utc::now().timestamp();

    // Client event query errors, as Server.Monitor.TalonClientEventErrors
    // emits the entries of monitoring_logs().
    let entry = |client: &str, artifact: &str, level: &str, message: &str| {
        json!({"ClientId": client, "Artifact": artifact, "Level": level,
               "Message": message, "LogTime": now - 30, "_ts": now})
    };
    for row in [
        entry(
            "C.1",
            SYSMON,
            "ERROR",
            "watch_etw: StartTrace: Access is denied.",
        ),
        entry(
            "C.1",
            SYSMON,
            "ERROR",
            "watch_etw: StartTrace: Access is denied.",
        ),
        entry("C.1", SYSMON, "DEFAULT", "Starting query execution."),
        entry(
            "C.2",
            LOGONS,
            "error",
            "watch_evtx: open C:/Windows/System32/Winevt/Logs/Security.evtx: Access is denied.",
        ),
    ] {
        s.row(ERRORS, row).await;
    }

    // Flow completions: one finished, one failed (System.Flow.Completion's
    // Timestamp, Flow, FlowId, ClientId).
    let flow = |id: &str, client: &str, state: &str, status: &str| {
        json!({"Timestamp": now, "FlowId": id, "ClientId": client, "_ts": now,
               "Flow": {"session_id": id, "client_id": client, "state": state,
                        "status": status, "create_time": 1_790_000_000_000_000_i64,
                        "request": {"artifacts": ["Windows.KapeFiles.Targets"],
                                    "creator": "mike"},
                        "total_collected_rows": 0}})
    };
    s.row(FLOWS, flow("F.CR1", "C.1", "FINISHED", "")).await;
    s.row(
        FLOWS,
        flow("F.CR2", "C.2", "ERROR", "Timeout after 600 seconds"),
    )
    .await;

    // Failed logons: 20 on web-1 within 200 s, a successful logon (not
    // counted), then the 21st; 21 on db-1 spread over 400 s (no 21 within
    // any 300 s).
    let logon = |client: &str, at: i64, id: u32| {
        json!({"EventTime": at as f64 + 0.25, "EventID": id, "Computer": "host",
               "TargetUserName": "administrator", "TargetDomainName": "CORP",
               "IpAddress": "203.0.113.7", "LogonType": 3, "Status": "0xc000006d",
               "SubStatus": "0xc000006a", "ProcessName": "-", "ClientId": client,
               "_ts": at})
    };
    for i in 0..20 {
        s.row(LOGONS, logon("C.1", now - 600 + i * 10, 4625)).await;
    }
    s.row(LOGONS, logon("C.1", now - 395, 4624)).await;
    s.row(LOGONS, logon("C.1", now - 390, 4625)).await;
    for i in 0..21 {
        s.row(LOGONS, logon("C.2", now - 900 + i * 20, 4625)).await;
    }

    // Sysmon over ETW (ID, Timestamp, EventData): web-1 last sent two hours
    // ago, a new binary from its Temp folder; db-1 runs the same binary
    // since (seen), a system binary (not user-writable) and keeps sending.
    let sysmon = |client: &str, at: i64, id: u32, image: &str, hashes: &str| {
        json!({"ID": id, "Timestamp": at, "ClientId": client, "_ts": at,
               "EventData": {"Image": image, "Hashes": hashes,
                             "CommandLine": format!("\"{image}\" /quiet"),
                             "User": "CORP\\alice", "ParentImage": "C:\\Windows\\explorer.exe"}})
    };
    let temp_exe = "C:\\Users\\alice\\AppData\\Local\\Temp\\upd.exe";
    let h1 = "SHA256=9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08,IMPHASH=F34D5F2D4577ED6D9CEEC516C1F5A744";
    s.row(SYSMON, sysmon("C.1", now - 7300, 1, temp_exe, h1))
        .await;
    s.row(SYSMON, sysmon("C.1", now - 7200, 3, temp_exe, ""))
        .await;
    s.row(SYSMON, sysmon("C.2", now - 60, 1, temp_exe, h1))
        .await;
    s.row(
        SYSMON,
        sysmon(
            "C.2",
            now - 30,
            1,
            "C:\\Windows\\System32\\svchost.exe",
            "SHA256=AB,IMPHASH=CD",
        ),
    )
    .await;
    s.row(
        SYSMON,
        sysmon("C.2", now, 3, "C:\\Windows\\System32\\svchost.exe", ""),
    )
    .await;

    // Seven alerts raised (one error twice); the absent clock looks every
    // 5 s once every row is read, so its alert comes last.
    wait_for_messages(&s.js, STREAM_ALERTS, 7, Duration::from_secs(60))
        .await
        .expect("seven alerts raised");
    let got = s.unique(10).await;
    let mut by_name: Vec<(&str, &Alert)> = got.iter().map(|a| (a.name.as_str(), a)).collect();
    by_name.sort_by_key(|(n, _)| *n);
    assert_eq!(
        by_name.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [
            "21 failed logons on web-1 within 5 minutes",
            "Client event query error in Windows.Events.FailedLogons on db-1",
            "Client event query error in Windows.Sysinternals.SysmonLogForward on web-1",
            "Collection F.CR2 failed on db-1",
            "New executable C:\\Users\\alice\\AppData\\Local\\Temp\\upd.exe on web-1",
            "No Sysmon events from web-1 for an hour",
        ],
        "{got:#?}"
    );
    let find = |prefix: &str| {
        by_name
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, a)| *a)
            .unwrap()
    };

    let a = find("21 failed logons");
    assert_eq!(a.source, "rule:Server.Monitor.FailedLogonBurst");
    assert_eq!(a.client_id.as_deref(), Some("C.1"));
    assert_eq!(a.artifact.as_deref(), Some(LOGONS));
    assert_eq!(a.event_data["Count"], 21);
    assert_eq!(a.event_data["Severity"], "high");
    assert_eq!(a.event_data["SampleRows"].as_array().unwrap().len(), 5);
    assert_eq!(a.event_data["TargetUserName"], "administrator");
    assert_eq!(a.dedup_seconds, 3600);

    let a = find("Client event query error in Windows.Sysinternals");
    assert_eq!(a.source, "rule:Server.Monitor.ClientEventQueryErrors");
    assert_eq!(a.client_id.as_deref(), Some("C.1"));
    assert_eq!(
        a.event_data["Message"],
        "watch_etw: StartTrace: Access is denied."
    );
    assert_eq!(
        a.artifact.as_deref(),
        Some(ERRORS),
        "the queue the rule watches"
    );
    assert_eq!(
        a.event_data["Artifact"], SYSMON,
        "the artifact whose query failed"
    );

    let a = find("Collection F.CR2");
    assert_eq!(a.source, "rule:Server.Monitor.FailedCollections");
    assert_eq!(a.client_id.as_deref(), Some("C.2"));
    assert_eq!(a.event_data["Flow.status"], "Timeout after 600 seconds");
    assert_eq!(
        a.event_data["Flow.request.artifacts"],
        json!(["Windows.KapeFiles.Targets"])
    );

    let a = find("New executable");
    assert_eq!(a.source, "rule:Server.Monitor.NewExecutable");
    assert_eq!(a.event_data["EventData.Hashes"], h1);
    assert!(
        a.event_data.get("PreviouslySeen").is_none(),
        "never seen before"
    );

    let a = find("No Sysmon events");
    assert_eq!(a.source, "rule:Server.Monitor.SysmonSilent");
    assert_eq!(a.client_id.as_deref(), Some("C.1"));
    assert!(a.event_data["SilentSeconds"].as_i64().unwrap() >= 7200);

    // The second identical error was raised and suppressed by dedup; the
    // DEFAULT-level entry, the finished flow, db-1's spread logons, the seen
    // hash and the system binary raised nothing; nothing was dead-lettered.
    assert_eq!(stream_messages(&s.js, STREAM_ALERTS).await, 7);
    assert!(s.dead_letters(1).await.is_empty());
    s.stop().await;
}

/// A row that fits a NATS message but whose alert (every column, plus the
/// alert's own fields) would not is dead-lettered at once with the reason,
/// not retried; the next row raises as usual.
#[tokio::test]
async fn a_row_whose_alert_is_too_large_to_publish_is_dead_lettered_at_once() {
    let s = Suite::start().await;
    let seq = s
        .row(
            ALL,
            json!({"Blob": "x".repeat(1_046_000), "ClientId": "C.1"}),
        )
        .await;
    s.row(ALL, json!({"Rule": "small", "ClientId": "C.2"}))
        .await;
    let letters = s.dead_letters(5).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0].stream_seq, Some(seq));
    assert!(
        letters[0]
            .reason
            .starts_with("rule \"Server.Monitor.AllColumns\": the alert is ")
            && letters[0].reason.contains("a NATS message may hold"),
        "{}",
        letters[0].reason
    );
    assert!(letters[0].raw_cut_from.is_some(), "the raw row is cut");
    assert_eq!(names(&s.unique(5).await), ["Detection on db-1"]);
    s.stop().await;
}
