//! Every door locked (DESIGN §11), the HTTP side: slow clients cannot hold
//! a service's sockets, and a console request carries no large body.

use std::time::{Duration, Instant};

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
        reqwest::Client::new()
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
    let (users, env) = talon_tests::console::notify_users("127.0.0.1:0");
    let notify = start_notify(&nats, &users, env).await;
    let big = serde_json::json!({"name": "alice", "password": "x".repeat(100_000)});
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/login", notify.http_addr))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    notify.stop().await.unwrap();
}
