//! Every service's start-up and shutdown contract, on ingest:
//! a bad config stops it with one line naming the key and its line;
//! /healthz, /readyz, /metrics; JSON logs; SIGTERM exits 0.

use std::time::{Duration, Instant};

use talon_tests::*;

fn bad_config_line(text: &str) -> (i32, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("talon.toml");
    std::fs::write(&path, text).unwrap();
    let mut ingest = ServiceProcess::spawn("talon-ingest", &path, &[]);
    let status = ingest
        .wait_exit(Duration::from_secs(30))
        .expect("a bad config stops ingest");
    (status.code().unwrap_or(-1), ingest.stderr_lines())
}

#[test]
fn a_misspelt_key_stops_startup_with_one_line_naming_it() {
    let (code, lines) =
        bad_config_line("[nats]\nurl = \"nats://127.0.0.1:1\"\n\n[ingest]\nmax_bdy_bytes = 10\n");
    assert_ne!(code, 0);
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    assert!(lines[0].contains("talon.toml:5:"), "{}", lines[0]);
    assert!(lines[0].contains("ingest.max_bdy_bytes"), "{}", lines[0]);
    assert!(lines[0].contains("unknown key"), "{}", lines[0]);
}

#[test]
fn a_wrong_type_stops_startup_with_one_line_naming_it() {
    let (code, lines) = bad_config_line("[ingest]\npartitions = 2\nmax_body_bytes = \"big\"\n");
    assert_ne!(code, 0);
    assert_eq!(lines.len(), 1, "one line: {lines:#?}");
    assert!(lines[0].contains("talon.toml:3:"), "{}", lines[0]);
    assert!(lines[0].contains("ingest.max_body_bytes"), "{}", lines[0]);
    assert!(lines[0].contains("invalid type"), "{}", lines[0]);
}

#[test]
fn a_missing_config_file_is_one_line_too() {
    let (code, _out, err) = run_binary(
        "talon-ingest",
        &["--config", "/nonexistent/talon.toml"],
        &[],
    );
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/talon.toml"), "{err}");
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let mut nats = NatsServer::start().await;
    let ingest = start_ingest(
        &nats,
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n",
        Default::default(),
    )
    .await;
    let base = format!("http://{}", ingest.http_addr);
    let http = talon_kit::outbound::client();
    let get = |path: &str| {
        let req = http.get(format!("{base}{path}"));
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);

    let js = async_nats::jetstream::new(nats.client().await);
    js.publish("Server.Internal.Alerts", r#"{"name":"m"}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("Server.Internal.Alerts", r#"{"name":""}"#.into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_for_messages(&js, "DLQ", 1, Duration::from_secs(10))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = get("/metrics").await;
        assert_eq!(status, 200);
        if text.contains(r#"talon_ingest_alerts_total{outcome="accepted"} 1"#)
            && text.contains(r#"talon_ingest_alerts_total{outcome="rejected"} 1"#)
        {
            assert!(text.contains("talon_ingest_batch_seconds_bucket"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never counted the alerts:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Without NATS: alive, not ready.
    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = get("/readyz").await;
        if status == 503 {
            assert!(text.contains("NATS"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready without NATS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get("/healthz").await.0, 200);
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn json_logs_and_sigterm_exit_zero() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("talon.toml");
    std::fs::write(
        &path,
        test_config_text(&nats, "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let config = path.to_string_lossy().into_owned();
    let mut ingest = ServiceProcess::spawn_args(
        "talon-ingest",
        &["--config", &config, "--log-format", "json"],
        &[],
    );
    ingest.ready_addr(Duration::from_secs(60)).await;
    let status = ingest
        .terminate(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    let lines = ingest.stderr_lines();
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("shutdown requested")),
        "{lines:#?}"
    );
}

/// ingest refuses at start a token under 24 characters and the example
/// value of `.env.example`, naming the key; a good token starts it.
#[tokio::test]
async fn short_and_example_ingest_tokens_stop_it_at_start() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("talon.toml");
    std::fs::write(
        &path,
        test_config_text(&nats, "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let example = talon_tests::deploy::env_file(&talon_tests::deploy::read(".env.example"))
        .into_iter()
        .find(|(k, _)| k == "TALON_INGEST_TOKENS")
        .map(|(_, v)| v)
        .expect(".env.example has TALON_INGEST_TOKENS");
    for (tokens, why) in [
        ("short-token", "shorter than 24 characters"),
        (example.as_str(), "example value"),
        (
            "a-good-token-0123456789abcdef, dev-token",
            "token 2 of $TALON_INGEST_TOKENS",
        ),
    ] {
        let mut ingest =
            ServiceProcess::spawn("talon-ingest", &path, &[("TALON_INGEST_TOKENS", tokens)]);
        let status = ingest
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{tokens:?} was accepted"));
        assert_ne!(status.code(), Some(0));
        let log = ingest.stderr_lines().join("\n");
        assert!(log.contains("ingest.tokens_env"), "{log}");
        assert!(log.contains(why), "{why}: {log}");
        assert!(
            !log.contains(tokens),
            "the token itself is never logged: {log}"
        );
    }
    let mut ingest = ServiceProcess::spawn(
        "talon-ingest",
        &path,
        &[("TALON_INGEST_TOKENS", "a-good-token-0123456789abcdef")],
    );
    ingest.ready_addr(Duration::from_secs(60)).await;
}
