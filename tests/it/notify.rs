//! notify end to end through a real nats-server and real HTTP receivers:
//! retries, Retry-After, dead letters and replay, replicas, isolation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use talon_kit::Env;
use talon_proto::DeadLetter;
use talon_tests::receiver::{Receiver, Reply};
use talon_tests::*;

fn hook_channel(id: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[channels]]\nid = \"{id}\"\nkind = \"webhook\"\nurl = \"{url}\"\nrate_per_minute = 0\nmax_in_flight = 8\n{extra}\n"
    )
}

fn notify_config(channels: &str) -> String {
    format!("[notify]\nhttp_listen = \"127.0.0.1:0\"\n{channels}")
}

#[tokio::test]
async fn three_500s_then_200_is_one_delivery_with_headers_and_signature() {
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![
        Reply::status(500),
        Reply::status(500),
        Reply::status(500),
        Reply::status(200),
    ])
    .await;
    let extra = "headers = { \"X-Source\" = \"talon-test\" }\nsigning_secret_env = \"HOOK_SECRET\"";
    let notify = start_notify(
        &nats,
        &notify_config(&hook_channel("hook", &hook.url("/in"), extra)),
        Env::default().with("HOOK_SECRET", "s3cret"),
    )
    .await;
    let js = jetstream::new(nats.client().await);
    publish_routed(
        &js,
        "hook",
        &accepted_alert("a1", "Flaky", 1_790_000_000_000, 0),
    )
    .await;

    hook.wait_accepted(1, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = hook.hits();
    assert_eq!(hits.len(), 4, "three failures and one success");
    assert_eq!(hook.accepted().len(), 1, "exactly one accepted delivery");
    let ok = &hits[3];
    assert_eq!(ok.headers["x-source"], "talon-test");
    let timestamp = ok.headers["x-talon-timestamp"].to_str().unwrap();
    let at: i64 = timestamp.parse().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - at).abs() < 60,
        "{timestamp}"
    );
    let signature = ok.headers["x-talon-signature"].to_str().unwrap();
    let expected = talon_notify::channels::webhook::signature(b"s3cret", at, &ok.body);
    assert_eq!(signature, expected);
    // The documented verifier takes it now, and refuses it replayed later
    // or with another body.
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, &ok.body).unwrap();
    let verify = |body: &std::path::Path, now: Option<i64>| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/examples/verify_talon_signature.py"
        ))
        .args(["s3cret", timestamp, signature])
        .arg(body);
        if let Some(now) = now {
            cmd.args(["--now", &now.to_string()]);
        }
        let out = cmd.output().expect("python3 runs the verifier");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(verify(&body_file, None), (Some(0), "valid".to_owned()));
    let (code, why) = verify(&body_file, Some(at + 301));
    assert_eq!(code, Some(1), "{why}");
    assert!(why.contains("more than 300 s"), "{why}");
    let tampered = dir.path().join("tampered");
    std::fs::write(&tampered, [&ok.body[..], b" "].concat()).unwrap();
    assert_eq!(
        verify(&tampered, None),
        (Some(1), "invalid: the signature does not match".to_owned())
    );
    let body: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["channel"].as_str()),
        (Some("a1"), Some("hook"))
    );
    // Backoff: each retry waits longer than the one before.
    let gaps: Vec<Duration> = hits.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(700), "{gaps:?}");
    assert!(gaps[2] > gaps[0], "{gaps:?}");
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn a_429_with_retry_after_is_honoured() {
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![
        Reply::status(429).retry_after("2"),
        Reply::status(200),
    ])
    .await;
    let notify = start_notify(
        &nats,
        &notify_config(&hook_channel("hook", &hook.url("/hook"), "")),
        Env::default(),
    )
    .await;
    let js = jetstream::new(nats.client().await);
    publish_routed(
        &js,
        "hook",
        &accepted_alert("a1", "Limited", 1_790_000_000_000, 0),
    )
    .await;
    hook.wait_accepted(1, Duration::from_secs(20))
        .await
        .unwrap();
    let hits = hook.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before Retry-After"
    );
    notify.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_and_replay_delivers_it_once() {
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![Reply::status(400)]).await;
    let notify = start_notify(
        &nats,
        &notify_config(&hook_channel("hook", &hook.url("/hook"), "")),
        Env::default(),
    )
    .await;
    let js = jetstream::new(nats.client().await);
    publish_routed(
        &js,
        "hook",
        &accepted_alert("bad-1", "Rejected", 1_790_000_000_000, 0),
    )
    .await;

    wait_for_messages(&js, "DLQ", 1, Duration::from_secs(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.hits().len(), 1, "a permanent failure is not retried");
    let (code, out, err) = run_binary(
        "talonctl",
        &[
            "dlq",
            "list",
            "--stage",
            "notify",
            "--json",
            "--nats",
            &nats.url(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let letter: DeadLetter = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(letter.stage, "notify");
    assert_eq!(letter.channel.as_deref(), Some("hook"));
    assert_eq!(letter.alert_id.as_deref(), Some("bad-1"));
    assert!(letter.reason.contains("400"), "{}", letter.reason);
    assert_eq!(letter.subject, "Server.Monitor.Alerts.hook");

    hook.set_script(vec![Reply::status(200)]);
    let (code, out, err) = run_binary(
        "talonctl",
        &["dlq", "replay", "--id", "bad-1", "--nats", &nats.url()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("-> Server.Monitor.Alerts.hook"), "{out}");
    hook.wait_accepted(1, Duration::from_secs(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.accepted().len(), 1, "delivered once");
    let (_, out, _) = run_binary("talonctl", &["dlq", "list", "--nats", &nats.url()], &[]);
    assert_eq!(out, "", "the replayed dead letter left the queue");
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn a_hanging_receiver_does_not_slow_another_channel() {
    let nats = NatsServer::start().await;
    let slow = Receiver::start(vec![Reply::status(200).delay(Duration::from_secs(30))]).await;
    let fast = Receiver::start(vec![Reply::status(200)]).await;
    let channels = hook_channel("slow", &slow.url("/hook"), "")
        + &hook_channel("fast", &fast.url("/hook"), "");
    let notify = start_notify(&nats, &notify_config(&channels), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    for i in 0..20 {
        let a = accepted_alert(&format!("x{i}"), "Both", 1_790_000_000_000, 0);
        publish_routed(&js, "slow", &a).await;
        publish_routed(&js, "fast", &a).await;
    }
    let started = Instant::now();
    fast.wait_accepted(20, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(slow.accepted().is_empty(), "the slow one is still hanging");
    notify.shutdown.cancel();
}

/// Two replicas as processes sharing the channel's consumer; one killed
/// with SIGKILL in the middle: nothing lost, duplicates only in the
/// documented window (a crash between the remote accepting and the ledger
/// recording it), counted and printed.
#[tokio::test]
async fn two_replicas_2000_alerts_one_killed_nothing_lost() {
    const N: usize = 2000;
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![Reply::status(200).delay(Duration::from_millis(5))]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    // Both replicas from one file: each binds a port of its own.
    std::fs::write(
        &config,
        test_config_text(
            &nats,
            &format!(
                "[notify]\nhttp_listen = \"127.0.0.1:0\"\n{}",
                hook_channel("hook", &hook.url("/hook"), "")
            ),
        ),
    )
    .unwrap();
    let mut a = ServiceProcess::spawn("talon-notify", &config, &[]);
    let mut b = ServiceProcess::spawn("talon-notify", &config, &[]);
    a.ready_addr(Duration::from_secs(60)).await;
    b.ready_addr(Duration::from_secs(60)).await;
    let js = jetstream::new(nats.client().await);
    for i in 0..N {
        publish_routed(
            &js,
            "hook",
            &accepted_alert(&format!("n{i}"), "Many", 1_790_000_000_000, 0),
        )
        .await;
    }
    hook.wait_accepted(N / 3, Duration::from_secs(60))
        .await
        .unwrap();
    a.kill9();
    hook.wait_accepted(N, Duration::from_secs(120))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for body in hook.accepted() {
        *counts
            .entry(body["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), N, "every alert delivered");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    println!("{duplicates} duplicate deliveries after SIGKILL (documented window; bounded by max_in_flight)");
    assert!(
        duplicates <= 8,
        "more duplicates ({duplicates}) than deliveries in flight at the kill"
    );
    let status = b.terminate(Duration::from_secs(20));
    if status.is_none() {
        for line in b.stderr_lines().iter().rev().take(20) {
            eprintln!("notify b: {line}");
        }
    }
    assert_eq!(status.and_then(|s| s.code()), Some(0), "SIGTERM exits 0");
}

#[tokio::test]
async fn smtp_down_for_10_s_then_up_the_mail_arrives_once() {
    let nats = NatsServer::start().await;
    // Not started yet. The channel comes with its [secrets.mail_smtp] table.
    let mut smtp = talon_tests::smtp::SmtpServer::new();
    let channels = smtp.channel_toml("mail", &["soc@example.org"]);
    let notify = start_notify(&nats, &notify_config(&channels), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    let mut alert = accepted_alert("m1", "Honey file opened", 1_790_000_000_000, 0);
    alert.severity = Some("high".into());
    publish_routed(&js, "mail", &alert).await;

    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(smtp.messages().is_empty());
    smtp.start().await;
    let mails = smtp.wait_for_messages(1, Duration::from_secs(60)).await;
    assert_eq!(mails.len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "the mail arrives once");
    assert_eq!(
        mails[0].header("Subject"),
        ["Server alert (high): Honey file opened"]
    );
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn still_failing_after_the_retry_deadline_goes_to_the_dlq() {
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![Reply::status(503)]).await;
    let channel = hook_channel("hook", &hook.url("/hook"), "retry_deadline_seconds = 3");
    let notify = start_notify(&nats, &notify_config(&channel), Env::default()).await;
    let js = jetstream::new(nats.client().await);
    publish_routed(
        &js,
        "hook",
        &accepted_alert("late-1", "Down", 1_790_000_000_000, 0),
    )
    .await;

    wait_for_messages(&js, "DLQ", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let letters = collect(&js, "DLQ", "talon.dlq.notify", 2, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = serde_json::from_slice(&letters[0].payload).unwrap();
    assert!(
        letter.reason.contains("503") && letter.reason.contains("still failing after"),
        "{}",
        letter.reason
    );
    assert!(
        hook.hits().len() >= 2,
        "it was retried before it was given up"
    );
    assert!(hook.accepted().is_empty());
    notify.stop().await.unwrap();
}

/// A receiver answering 307 to somewhere else: talon does not follow it
/// (the signed body never reaches the other host); the delivery is a
/// permanent failure, dead-lettered with the reason.
#[tokio::test]
async fn a_redirect_from_a_receiver_is_not_followed() {
    let nats = NatsServer::start().await;
    let elsewhere = Receiver::start(vec![Reply::status(200)]).await;
    let hook = Receiver::start(vec![Reply::status(307).location(&elsewhere.url("/stolen"))]).await;
    let extra = "signing_secret_env = \"HOOK_SECRET\"";
    let notify = start_notify(
        &nats,
        &notify_config(&hook_channel("hook", &hook.url("/in"), extra)),
        Env::default().with("HOOK_SECRET", "s3cret"),
    )
    .await;
    let js = jetstream::new(nats.client().await);
    publish_routed(
        &js,
        "hook",
        &accepted_alert("r1", "Bounced", 1_790_000_000_000, 0),
    )
    .await;
    wait_for_messages(&js, "DLQ", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let letters = collect(&js, "DLQ", "talon.dlq.notify", 2, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = serde_json::from_slice(&letters[0].payload).unwrap();
    assert!(
        letter.reason.contains("307") && letter.reason.contains("redirect"),
        "{}",
        letter.reason
    );
    assert_eq!(hook.hits().len(), 1, "tried once: a redirect is permanent");
    assert_eq!(elsewhere.hits().len(), 0, "the redirect was not followed");
    notify.stop().await.unwrap();
}

/// A web hook over HTTPS: notify verifies the receiver's certificate
/// against the trust store (here the one `SSL_CERT_FILE` names, as the
/// image's CA bundle would be) and delivers through rustls.
#[tokio::test]
async fn an_https_web_hook_is_verified_and_delivered() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    // A test CA, and the receiver's certificate signed by it.
    let ca_key = path("ca.key");
    let csr = path("req.csr");
    let ext = path("ext.cnf");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=talon test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    ];
    for args in steps {
        let made = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(made.status.success(), "openssl {args:?}: {made:?}");
    }
    // A real TLS server: Python's http.server wrapped in ssl.
    let server = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        self.send_response(200); self.end_headers()
        print('POST', self.path, len(body), flush=True)
    def log_message(self, *a): pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print('PORT', s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut receiver = std::process::Command::new("python3")
        .arg("-c")
        .arg(server)
        .arg(&cert)
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(receiver.stdout.take().unwrap());
    let port = wait_for_line(&lines, "PORT ", Duration::from_secs(20))
        .await
        .trim_start_matches("PORT ")
        .to_owned();
    let config = dir.path().join("talon.toml");
    let url = format!("https://localhost:{port}/hook");
    std::fs::write(
        &config,
        test_config_text(&nats, &notify_config(&hook_channel("tls", &url, ""))),
    )
    .unwrap();
    let mut notify =
        ServiceProcess::spawn("talon-notify", &config, &[("SSL_CERT_FILE", ca.as_str())]);
    notify.ready_addr(Duration::from_secs(60)).await;
    let js = jetstream::new(nats.client().await);
    let alert = accepted_alert("tls1", "Over TLS", 1_790_000_000_000, 0);
    publish_routed(&js, "tls", &alert).await;
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        wait_for_line(&lines, "POST ", Duration::from_secs(60)),
    )
    .await;
    let Ok(line) = line else {
        let log = notify.stderr_lines().join("\n");
        panic!("the receiver got no POST; notify said:\n{log}");
    };
    assert!(line.starts_with("POST /hook "), "{line}");
    let _ = receiver.kill();
    let _ = receiver.wait();
}

/// The first line of `lines` starting with `prefix`, waiting up to `within`.
async fn wait_for_line(lines: &Lines, prefix: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = lines.lock().unwrap().iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no line {prefix:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A replica that sent a delivery while NATS is away records it once NATS
/// is back (`record_sent` keeps trying for as long as the message's ack
/// wait), so the pair reads as sent to every replica and is not sent again;
/// a group message's claim, marked over its revision, reads so too.
#[tokio::test]
async fn a_delivery_sent_while_nats_is_away_is_recorded_when_it_is_back() {
    use talon_notify::ledger::{self, Claim, Ledger, Look};
    let mut nats = NatsServer::start().await;
    let keep = Duration::from_secs(3600);
    let url = nats.url();
    let open = |name: &'static str| {
        let url = url.clone();
        async move {
            let js = jetstream::new(service_client_as(url, "notify", name).await);
            Ledger::open(&js, 1, keep, name.to_string()).await.unwrap()
        }
    };
    let a = open("replica-a").await;
    let key = ledger::key("0123abcd", "hook");
    assert_eq!(a.look(&key).await.unwrap(), Look::Free);
    let group = ledger::key("g-abc-1", "hook");
    let Claim::Mine(revision) = a.claim(&group).await.unwrap() else {
        panic!("a fresh group message is ours to send");
    };
    assert_eq!(a.look(&group).await.unwrap(), Look::Busy);
    nats.kill();
    let recording = {
        let (a, key) = (a.clone(), key.clone());
        tokio::spawn(async move { a.record_sent(&key, None).await })
    };
    let recording_group = {
        let (a, group) = (a.clone(), group.clone());
        tokio::spawn(async move { a.record_sent(&group, Some(revision)).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !recording.is_finished() && !recording_group.is_finished(),
        "record_sent gave up while NATS was away"
    );
    nats.restart().await;
    for recording in [recording, recording_group] {
        tokio::time::timeout(Duration::from_secs(50), recording)
            .await
            .expect("record_sent still trying 50 s after NATS came back")
            .unwrap()
            .expect("recorded once NATS was back");
    }
    let b = open("replica-b").await;
    assert_eq!(b.look(&key).await.unwrap(), Look::Sent);
    assert_eq!(b.look(&group).await.unwrap(), Look::Sent);
    assert_eq!(b.claim(&group).await.unwrap(), Claim::AlreadySent);
}
