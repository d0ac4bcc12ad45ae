//! talonctl against a real nats-server: init, alert, tail, dlq list,
//! check-config.

use std::time::Duration;

use async_nats::jetstream;
use talon_tests::*;

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("talon.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn check_config_says_ok_or_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/talon.example.toml");
    let (code, out, err) = run_binary("talonctl", &["check-config", "--config", example], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim_end().ends_with(": ok"), "{out}");
    assert!(err.is_empty(), "the example has no old keys: {err}");

    let bad = write_config(&dir, "[dedup]\nkey = [\"name\", \"hostname\"]\n");
    let (code, _, err) = run_binary("talonctl", &["check-config", "--config", &bad], &[]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(":2:") && err.contains("dedup.key"), "{err}");

    // An earlier release's key: read, with a warning.
    let old = write_config(&dir, "[[notify.users]]\nname = \"alice\"\n");
    let (code, out, err) = run_binary("talonctl", &["check-config", "--config", &old], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim_end().ends_with(": ok"), "{out}");
    assert!(
        err.starts_with("warning: [[notify.users]] is read as [[console.users]]"),
        "{err}"
    );
}

#[tokio::test]
async fn init_creates_every_stream_and_consumer_idempotently() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        &test_config_text(
            &nats,
            "[ingest]\npartitions = 2\n[[channels]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n",
        ),
    );
    for _ in 0..2 {
        let (code, out, err) = run_binary("talonctl", &["init", "--config", &config], &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("streams and consumers ready"), "{out}");
    }
    let js = jetstream::new(nats.client().await);
    for stream in [
        "ALERTS",
        "MONITORING",
        "ACCEPTED",
        "UNIQUE",
        "NOTIFY",
        "INBOX",
        "DLQ",
    ] {
        let mut s = js
            .get_stream(stream)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e}"));
        let info = s.info().await.unwrap();
        assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
        assert!(info.config.duplicate_window >= Duration::from_secs(120));
    }
    for (stream, consumer) in [
        ("ALERTS", "ingest"),
        ("ACCEPTED", "dedup-0"),
        ("ACCEPTED", "dedup-1"),
        ("UNIQUE", "enrich"),
        ("NOTIFY", "notify-hook"),
    ] {
        let s = js.get_stream(stream).await.unwrap();
        s.consumer_info(consumer)
            .await
            .unwrap_or_else(|e| panic!("{stream}/{consumer}: {e}"));
    }
}

#[tokio::test]
async fn alert_tail_and_dlq_list() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(
        &nats,
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n",
        Default::default(),
    )
    .await;
    let url = nats.url();

    let mut tail = ServiceProcess::spawn_args(
        "talonctl",
        &[
            "tail",
            "talon.alerts.accepted.*",
            "--count",
            "1",
            "--nats",
            &url,
        ],
        &[],
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // let tail subscribe

    let (code, out, err) = run_binary(
        "talonctl",
        &[
            "alert",
            "--nats",
            &url,
            "--name",
            "Honey file opened",
            "--dedup",
            "-1",
            "--client-id",
            "C.1234",
            "--artifact",
            "Linux.Detection.Honeyfiles",
            "Pid=42",
            "FileName=/home/a/honey.docx",
            "Tags=[\"x\"]",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let seq: u64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("prints the sequence: {out:?}"));
    assert!(seq >= 1);

    let js = jetstream::new(nats.client().await);
    let got = collect(
        &js,
        "ACCEPTED",
        "talon.alerts.accepted.*",
        1,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let alert = json(&got[0]);
    assert_eq!(alert["name"], "Honey file opened");
    assert_eq!(alert["dedup_seconds"], -1);
    assert_eq!(alert["client_id"], "C.1234");
    assert_eq!(alert["event_data"]["Pid"], 42);
    assert_eq!(alert["event_data"]["FileName"], "/home/a/honey.docx");
    assert_eq!(alert["event_data"]["Tags"][0], "x");

    assert!(
        tail.wait_exit(Duration::from_secs(10)).is_some(),
        "tail stops after --count"
    );
    // stdout of tail is not piped by spawn_args; the exit after one message
    // is what shows it saw the alert.

    js.publish(
        "Server.Internal.Alerts",
        r#"{"name":"a","dedup":"soon"}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    wait_for_messages(&js, "DLQ", 1, Duration::from_secs(10))
        .await
        .unwrap();
    let (code, out, err) = run_binary("talonctl", &["dlq", "list", "--nats", &url], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("ingest") && out.contains("`dedup` must be an integer"),
        "{out}"
    );
    let (code, out, _) = run_binary(
        "talonctl",
        &["dlq", "list", "--stage", "ingest", "--json", "--nats", &url],
        &[],
    );
    assert_eq!(code, 0);
    let letter: talon_proto::DeadLetter = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        letter.raw.as_deref(),
        Some(r#"{"name":"a","dedup":"soon"}"#)
    );
    let (_, out, _) = run_binary(
        "talonctl",
        &["dlq", "list", "--stage", "notify", "--nats", &url],
        &[],
    );
    assert_eq!(out, "", "no notify dead letters");
    ingest.stop().await.unwrap();
}

// talonctl is run blocking while the in-process dedup answers it: the
// runtime needs a second thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_list_and_forget_through_a_replica() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dedup = start_dedup(&nats, &dedup_table(dir.path())).await;
    let js = jetstream::new(nats.client().await);
    let now = chrono::Utc::now().timestamp_millis();
    for (i, name) in ["Honey file opened", "Honey pot login", "Sigma hit"]
        .iter()
        .enumerate()
    {
        publish_accepted(&js, 0, &accepted_alert(&format!("a{i}"), name, now, 3600)).await;
        publish_accepted(
            &js,
            0,
            &accepted_alert(&format!("b{i}"), name, now + 1, 3600),
        )
        .await;
    }
    let url = dedup.http_addr.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let (code, out, err) = run_binary(
            "talonctl",
            &["dedup", "list", "--url", &url, "--prefix", "Honey"],
            &[("TALON_DEDUP_TOKENS", DEDUP_TOKEN)],
        );
        assert_eq!(code, 0, "{err}");
        if out.lines().count() == 2 {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "windows never listed: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Honey file opened\t"), "{out}");
    assert!(lines[0].ends_with("suppressed=1"), "{out}");
    assert!(lines[1].starts_with("Honey pot login\t"), "{out}");

    let (_, out, _) = run_binary(
        "talonctl",
        &["dedup", "list", "--url", &url, "--limit", "1", "--json"],
        &[("TALON_DEDUP_TOKEN", DEDUP_TOKEN)],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    let w: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(w["key"], "Honey file opened");

    let (code, out, err) = run_binary(
        "talonctl",
        &[
            "dedup",
            "forget",
            "Sigma hit",
            "--url",
            &url,
            "--token",
            DEDUP_TOKEN,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "forgot \"Sigma hit\"");
    let (_, out, _) = run_binary(
        "talonctl",
        &["dedup", "list", "--url", &url],
        &[("TALON_DEDUP_TOKENS", DEDUP_TOKEN)],
    );
    assert!(!out.contains("Sigma hit"), "{out}");
    let (code, out, _) = run_binary(
        "talonctl",
        &[
            "dedup",
            "forget",
            "Sigma hit",
            "--url",
            &url,
            "--token",
            DEDUP_TOKEN,
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (0, "\"Sigma hit\" had no window"));
    // Without a token the API refuses, and talonctl says so.
    let (code, _, err) = run_binary("talonctl", &["dedup", "list", "--url", &url], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    dedup.stop().await.unwrap();
}

/// A dead letter is data: one that names a subject outside the pipeline
/// (a forged `$JS.API…` purge, an inbox) is refused by `dlq replay`, and
/// nothing is published there; the good ones still go back.
#[tokio::test]
async fn dlq_replay_refuses_subjects_outside_the_pipeline() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let (code, _, err) = run_binary("talonctl", &["init", "--nats", &url], &[]);
    assert_eq!(code, 0, "{err}");
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    // Something to lose, and a watch on what a forged replay would hit.
    js.publish("Server.Internal.Alerts", "{\"name\":\"keep me\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut spy = client.subscribe("$JS.API.STREAM.PURGE.>").await.unwrap();
    let mut inbox_spy = client.subscribe("talon.inbox.>").await.unwrap();
    for (i, subject) in [
        "$JS.API.STREAM.PURGE.ALERTS",
        "talon.inbox.alice",
        "Server.Internal.Alerts",
    ]
    .iter()
    .enumerate()
    {
        let letter = talon_proto::DeadLetter::new(
            talon_proto::names::Stage::Ingest,
            "forged",
            *subject,
            Some(i as u64),
            br#"{"name":"replayed"}"#,
        );
        js.publish(
            "talon.dlq.ingest",
            serde_json::to_vec(&letter).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    let (code, out, err) = run_binary(
        "talonctl",
        &["dlq", "replay", "--stage", "ingest", "--nats", &url],
        &[],
    );
    assert_ne!(code, 0, "refusals make it fail: {out}{err}");
    assert!(err.contains("2 dead letter(s) refused"), "{err}");
    assert!(
        err.contains("\"$JS.API.STREAM.PURGE.ALERTS\" is not one of the pipeline's inputs"),
        "{err}"
    );
    assert_eq!(out.lines().count(), 1, "the good one was replayed: {out}");
    assert!(out.contains("-> Server.Internal.Alerts"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    use futures::StreamExt as _;
    for s in [&mut spy, &mut inbox_spy] {
        let got = tokio::time::timeout(Duration::from_millis(200), s.next()).await;
        assert!(got.is_err(), "a refused replay published: {got:?}");
    }
    assert_eq!(
        stream_messages(&js, "ALERTS").await,
        2,
        "nothing purged; the good one replayed"
    );
}

/// `talonctl health URL`, the image's health check: 0 for a ready
/// service's /readyz, 1 for any other status and for a port nobody
/// listens on.
/// (Multi-threaded: the services answer while the test waits for talonctl.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_zero_only_for_a_2xx() {
    let nats = NatsServer::start().await;
    let listen = "[notify]\nhttp_listen = \"127.0.0.1:0\"\n";
    let notify = start_notify(&nats, listen, talon_kit::Env::default()).await;
    let ready = format!("http://{}/readyz", notify.http_addr);
    let (code, out, err) = run_binary("talonctl", &["health", &ready], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("200 OK ready"), "{out}");

    let missing = format!("http://{}/no-such-page", notify.http_addr);
    let (code, _, err) = run_binary("talonctl", &["health", &missing], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404"), "{err}");

    let port = talon_tests::ports::reserve();
    let nobody = format!("http://127.0.0.1:{}/readyz", port.port());
    let (code, _, err) = run_binary("talonctl", &["health", "--timeout", "2", &nobody], &[]);
    assert_eq!(code, 1, "{err}");
}
