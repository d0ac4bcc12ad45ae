//! Every door locked, the HTTP side: slow clients cannot hold
//! a service's sockets, and a console request carries no large body.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::StatusCode;
use talon_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "doors-token-0123456789abcdef";

/// 500 connections that send half a request and stop: a normal request is
/// still served at once, and the server closes each of them once its
/// headers are 10 s late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_sockets() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(
        &config,
        test_config_text(&nats, "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let mut ingest =
        ServiceProcess::spawn("talon-ingest", &config, &[("TALON_INGEST_TOKENS", TOKEN)]);
    let addr = ingest.ready_addr(Duration::from_secs(60)).await;

    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /v1/alerts HTTP/1.1\r\nHost: talon\r\nContent-")
            .await
            .unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        talon_kit::outbound::client()
            .post(format!("http://{addr}/v1/alerts"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"name": "served"}))
            .send(),
    )
    .await
    .expect("served while 500 slow clients wait")
    .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    println!(
        "a request beside 500 slow clients took {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );

    // Past the header-read timeout, the server has closed every one.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut closed = 0;
    for stream in &mut slow {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 408") => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 500, "half-sent requests the server closed");
    assert!(matches!(ingest.child.try_wait(), Ok(None)));
}

/// Console requests are a few bytes: a 100 KB login is refused before any
/// password is checked.
#[tokio::test]
async fn a_console_request_has_no_large_body() {
    let nats = NatsServer::start().await;
    let (users, env) = talon_tests::console::console_users("127.0.0.1:0");
    let notify = start_console(&nats, &users, env).await;
    let big = serde_json::json!({"name": "alice", "password": "x".repeat(100_000)});
    let response = talon_kit::outbound::client()
        .post(format!("http://{}/v1/login", notify.http_addr))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    notify.stop().await.unwrap();
}

/// A login from the given loopback address.
async fn login_from(
    addr: std::net::SocketAddr,
    from: [u8; 4],
    name: &str,
    password: &str,
) -> (StatusCode, Option<String>) {
    let client = talon_kit::outbound::client_builder()
        .local_address(std::net::IpAddr::from(from))
        .build()
        .unwrap();
    let response = client
        .post(format!("http://{addr}/v1/login"))
        .json(&serde_json::json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status(), retry_after)
}

/// 300 wrong logins from one address are answered 429 with `Retry-After`
/// once a few have failed, without a password check; alice still logs in
/// from another address at once. A name that keeps failing from many
/// addresses is held back too. A full password-check queue answers 429 at
/// once rather than queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_held_back_per_address_and_per_name() {
    let nats = NatsServer::start().await;
    let (users, env) = talon_tests::console::console_users("127.0.0.1:0");
    let notify = start_console(&nats, &users, env).await;
    let addr = notify.http_addr;

    let (mut refused, mut limited) = (0, 0);
    for i in 0..300 {
        match login_from(addr, [127, 0, 0, 1], &format!("spray-{i}"), "guess").await {
            (StatusCode::UNAUTHORIZED, _) => refused += 1,
            (StatusCode::TOO_MANY_REQUESTS, Some(wait)) => {
                assert!(wait.parse::<u64>().unwrap() >= 1, "{wait}");
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    println!("300 wrong logins from one address: {refused} refused, {limited} held back");
    assert!(refused >= 5, "the first few are checked: {refused}");
    assert!(limited >= 250, "then held back: {limited}");

    let started = Instant::now();
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(5),
        login_from(addr, [127, 0, 0, 2], "alice", "alice-secret"),
    )
    .await
    .expect("answered");
    assert_eq!(status, StatusCode::OK, "alice from another address");
    println!(
        "alice's login beside the held-back address took {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );

    // bob's name, failing from six addresses, is held back from a seventh,
    // even with the right password.
    for last in 3..=8 {
        let (status, _) = login_from(addr, [127, 0, 0, last], "bob", "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, wait) = login_from(addr, [127, 0, 0, 9], "bob", "bob-secret").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(wait.is_some());

    // Twenty logins at once, from twenty addresses: four password checks
    // run, the others are told to come back.
    let logins = (0..20u8).map(|i| login_from(addr, [127, 0, 1, i + 1], "carol", "carol-secret"));
    let answers = futures::future::join_all(logins).await;
    let busy = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    println!("20 logins at once: {ok} checked, {busy} told to come back");
    assert!(ok >= 1 && busy >= 1 && ok + busy == 20, "{answers:?}");
    notify.stop().await.unwrap();
}

/// A client of `nats` as `user` that records what the server says went
/// wrong (permission violations arrive as server errors, not as failures
/// of the call).
async fn watched_client(
    nats: &NatsServer,
    user: &str,
) -> (
    async_nats::Client,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = errors.clone();
    let client =
        async_nats::ConnectOptions::with_user_and_password(user.into(), nats_password(user))
            .custom_inbox_prefix(inbox_prefix_of(user))
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        sink.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(nats.url())
            .await
            .expect("connect");
    (client, errors)
}

/// Waits until `errors` holds one naming `subject`.
async fn refused(errors: &std::sync::Mutex<Vec<String>>, subject: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("Permissions Violation") && e.contains(subject))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// a leaked ingest credential cannot write to
/// `talon.alerts.unique`, read or purge the inbox, or touch the delivery
/// ledger; it can do its own work (publish accepted alerts).
#[tokio::test]
async fn a_leaked_ingest_password_cannot_write_unique_or_read_an_inbox() {
    use async_nats::jetstream;
    use talon_kit::streams::{self, Stream};

    let nats = NatsServer::start().await;
    let admin = talon_kit::nats::jetstream(nats.client().await);
    streams::ensure_all(&admin, 1).await.unwrap();
    admin
        .publish("talon.inbox.alice", "for alice only".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let (ingest, errors) = watched_client(&nats, "ingest").await;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(ingest.clone());

    // Its own work is allowed.
    js.publish("talon.alerts.accepted.0", "{}".into())
        .await
        .unwrap()
        .await
        .expect("ingest publishes accepted alerts");

    // Publishing on talon.alerts.unique, plain or through JetStream.
    ingest
        .publish("talon.alerts.unique", "forged".into())
        .await
        .unwrap();
    ingest.flush().await.unwrap();
    assert!(refused(&errors, "talon.alerts.unique").await, "{errors:?}");
    let ack = match js.publish("talon.alerts.unique", "forged".into()).await {
        Ok(ack) => ack.await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        ack.is_err(),
        "a JetStream publish on talon.alerts.unique is not acked"
    );
    assert_eq!(stream_messages(&admin, "UNIQUE").await, 0);

    // Reading the inbox: a subscription, a consumer, a message by sequence.
    let mut sub = ingest.subscribe("talon.inbox.>").await.unwrap();
    assert!(refused(&errors, "talon.inbox.>").await, "{errors:?}");
    admin
        .publish("talon.inbox.alice", "second".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), sub.next())
            .await
            .map_or(true, |m| m.is_none()),
        "the subscription got an inbox message"
    );
    let inbox = admin.get_stream("INBOX").await.unwrap();
    let theirs = jetstream::stream::Stream::get_raw_message(&inbox, 1)
        .await
        .unwrap();
    assert_eq!(&theirs.payload[..], b"for alice only");
    assert!(
        js.get_stream("INBOX").await.is_err(),
        "ingest cannot even see INBOX"
    );
    let consumer = js
        .create_consumer_on_stream(
            jetstream::consumer::pull::Config::default(),
            Stream::Inbox.name(),
        )
        .await;
    assert!(consumer.is_err(), "ingest cannot make a consumer on INBOX");

    // Another service's replies, the ledger, purging and deleting streams.
    let _theirs = ingest.subscribe("_INBOX_notify.>").await.unwrap();
    assert!(refused(&errors, "_INBOX_notify.>").await, "{errors:?}");
    ingest
        .publish("$KV.talon_deliveries.x", "forged".into())
        .await
        .unwrap();
    assert!(
        refused(&errors, "$KV.talon_deliveries.x").await,
        "{errors:?}"
    );
    assert!(js.delete_stream("ALERTS").await.is_err());
    let mut alerts = admin.get_stream("ALERTS").await.unwrap();
    assert_eq!(
        alerts.info().await.unwrap().config.name,
        "ALERTS",
        "still there"
    );
}

/// A producer publishes raw alerts and monitoring rows, nothing else; no
/// one connects without a user.
#[tokio::test]
async fn producers_reach_only_the_inputs_and_strangers_nothing() {
    use talon_kit::streams;

    let nats = NatsServer::start().await;
    let admin = talon_kit::nats::jetstream(nats.client().await);
    streams::ensure_all(&admin, 1).await.unwrap();

    let (producer, errors) = watched_client(&nats, "producer").await;
    let producer_js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(producer.clone());
    producer_js
        .publish("Server.Internal.Alerts", r#"{"name":"Test"}"#.into())
        .await
        .unwrap()
        .await
        .expect("a producer raises alerts");
    producer_js
        .publish("Monitoring.Windows.Events.ProcessCreation", "{}".into())
        .await
        .unwrap()
        .await
        .expect("and forwards monitoring rows");
    producer
        .publish("talon.alerts.accepted.0", "{}".into())
        .await
        .unwrap();
    producer.flush().await.unwrap();
    assert!(
        refused(&errors, "talon.alerts.accepted.0").await,
        "{errors:?}"
    );
    assert_eq!(stream_messages(&admin, "ACCEPTED").await, 0);

    assert!(
        async_nats::connect(nats.url()).await.is_err(),
        "no user, no connection"
    );
    let wrong = async_nats::ConnectOptions::with_user_and_password(
        "ingest".into(),
        nats_password("notify"),
    )
    .connect(nats.url())
    .await;
    assert!(wrong.is_err(), "a wrong password is refused");
}

/// A service given a short or example NATS password stops at start with
/// one line naming the key, before it connects.
#[tokio::test]
async fn a_weak_nats_password_stops_a_service() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(&config, test_config_text(&nats, "")).unwrap();
    for weak in ["q1w2e3r4", "change-me-enrich-nats-password"] {
        let (code, _, err) = run_binary(
            "talon-enrich",
            &["--config", &config.to_string_lossy()],
            &[("TALON_NATS_USER", "enrich"), ("TALON_NATS_PASSWORD", weak)],
        );
        assert_ne!(code, 0, "{weak}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("nats.password_env"), "{weak}: {err}");
        assert!(!err.contains(weak), "the password is not shown: {err}");
    }
}
