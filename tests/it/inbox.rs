//! The inbox channel and the console's inbox API, end to end through a
//! real nats-server, notify and console replicas: logins, isolation between users,
//! recipients and roles, read and clear across restarts, two replicas
//! serving one session, server-sent events.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use talon_tests::console::{console_users, ids, password, stored, Console};
use talon_tests::*;

/// Two inbox channels: Velociraptor's defaults (every name, administrators)
/// and one for analysts named alice or bob. One delivery at a time, so a
/// single replica fills the inbox in publishing order.
const CHANNELS: &str = r#"
[[channels]]
id = "inbox"
kind = "inbox"
rate_per_minute = 0
max_in_flight = 1

[[channels]]
id = "inbox-analysts"
kind = "inbox"
recipients = "^(alice|bob)$"
recipient_roles = "^analyst$"
rate_per_minute = 0
max_in_flight = 1
"#;

async fn start(nats: &NatsServer) -> (WithConsole, talon_kit::Env, String) {
    let (users, env) = console_users("127.0.0.1:0");
    let config = format!("{users}{CHANNELS}");
    let notify = start_notify_and_console(nats, &config, env.clone()).await;
    (notify, env, config)
}

fn alert(id: &str, name: &str) -> talon_proto::Alert {
    let mut a = accepted_alert(id, name, 1_790_000_000_000, 0);
    a.severity = Some("high".into());
    a.context = Some(vec![talon_proto::ContextEntry {
        key: "FileName".into(),
        value: format!("/home/{id}.docx"),
    }]);
    a
}

async fn login(notify: &WithConsole, user: &str) -> Console {
    Console::login(notify.http_addr, user, password(user))
        .await
        .unwrap_or_else(|(s, b)| panic!("{user} logs in: {s} {b}"))
}

#[tokio::test]
async fn bad_logins_are_401_and_nothing_is_served_without_a_session() {
    let nats = NatsServer::start().await;
    let (notify, _, _) = start(&nats).await;
    let addr = notify.http_addr;

    let mut failures = 0;
    for (name, pw) in [
        ("alice", "wrong"),
        ("alice", ""),
        ("ALICE", "alice-secret"),
        ("mallory", "alice-secret"),
        ("dave", ""),
        ("dave", "anything"),
        ("", ""),
    ] {
        let (status, body) = Console::login(addr, name, pw).await.err().expect("refused");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name:?}/{pw:?}");
        assert_eq!(body["error"], "wrong name or password");
        failures += 1;
        if failures > talon_console::limits::FREE_FAILURES {
            break;
        }
    }
    // One failure past the free ones: this address now waits a second.
    let (status, _) = Console::login(addr, "", "").await.err().expect("refused");
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let anon = Console::anonymous(addr);
    let (status, body) = anon.post("/v1/login", None).await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "an empty login is no JSON body: {body}"
    );
    let (status, body) = anon.post("/v1/login", Some(json!({}))).await;
    // Held back now, like any try from this address for a while.
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "no name, no password: {body}"
    );
    let bad_json = anon
        .http
        .post(format!("{}/v1/login", anon.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_json.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not said to be JSON"
    );
    let bad_json = anon
        .http
        .post(format!("{}/v1/login", anon.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    // A form from another site cannot log anyone in.
    let form = anon
        .http
        .post(format!("{}/v1/login", anon.base))
        .header("content-type", "text/plain")
        .body(r#"{"name":"alice","password":"alice-secret"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // No cookie, a forged one, a well-formed unknown one: 401 everywhere.
    let forged = Console {
        cookie: Some("talon_session=../../etc".into()),
        ..anon.clone()
    };
    let unknown = Console {
        cookie: Some(format!("talon_session={}", "ab".repeat(32))),
        ..anon.clone()
    };
    for c in [&anon, &forged, &unknown] {
        for path in ["/v1/messages", "/v1/me", "/v1/events"] {
            assert_eq!(c.get(path).await.0, StatusCode::UNAUTHORIZED, "GET {path}");
        }
        for path in ["/v1/messages/read", "/v1/messages/clear"] {
            assert_eq!(
                c.post(path, Some(json!({}))).await.0,
                StatusCode::UNAUTHORIZED,
                "POST {path}"
            );
        }
    }

    // A good login: the cookie is HttpOnly and SameSite=Strict; after
    // logout the same cookie is refused. (Six failures so far from this
    // address: it waits a second first.)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let alice = login(&notify, "alice").await;
    let set_cookie = alice.set_cookie.clone().unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let (status, me) = alice.get("/v1/me").await;
    assert_eq!(
        (status, me),
        (
            StatusCode::OK,
            json!({"name": "alice", "roles": ["administrator"], "may_triage": true})
        )
    );
    assert_eq!(
        alice.post("/v1/logout", Some(json!({}))).await.0,
        StatusCode::OK
    );
    assert_eq!(alice.get("/v1/messages").await.0, StatusCode::UNAUTHORIZED);

    // The page and its files carry the strict policy.
    let page = talon_kit::outbound::client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(page.text().await.unwrap().contains("id=\"bell\""));
    let js = talon_kit::outbound::client()
        .get(format!("http://{addr}/app.js"))
        .send()
        .await
        .unwrap();
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let script = js.text().await.unwrap();
    assert!(!script.contains("innerHTML"), "values go in as text only");
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn recipients_and_roles_choose_users_who_see_only_their_own() {
    let nats = NatsServer::start().await;
    let (notify, _, _) = start(&nats).await;
    let js = jetstream::new(nats.client().await);

    publish_routed(&js, "inbox", &alert("a1", "For administrators")).await;
    publish_routed(
        &js,
        "inbox-analysts",
        &alert("a2", "For analysts alice or bob"),
    )
    .await;

    let alice = login(&notify, "alice").await;
    let bob = login(&notify, "bob").await;
    let carol = login(&notify, "carol").await;
    // inbox: administrators (alice, carol); inbox-analysts: named alice or
    // bob and an analyst (bob only).
    let page = carol.wait_messages(1, Duration::from_secs(20)).await;
    bob.wait_messages(1, Duration::from_secs(20)).await;
    assert_eq!(alice.alert_ids().await, ["a1"]);
    assert_eq!(bob.alert_ids().await, ["a2"]);
    assert_eq!(ids(&page), ["a1"]);
    assert_eq!(stored(&js, "alice").await, 1);
    assert_eq!(stored(&js, "bob").await, 1);
    assert_eq!(stored(&js, "carol").await, 1);
    assert_eq!(
        stored(&js, "dave").await,
        1,
        "dave has no password, but is an administrator"
    );

    // What a message says.
    let m = &page["messages"][0];
    assert_eq!(page["unread"], 1);
    assert_eq!(m["name"], "For administrators");
    assert_eq!(m["severity"], "high");
    assert_eq!(m["read"], false);
    assert_eq!(
        m["context"],
        json!([{"key": "FileName", "value": "/home/a1.docx"}])
    );

    // Alice reads and clears everything: carol's copy of a1 is untouched,
    // and no parameter lets alice name another user.
    let carol_seq = m["seq"].as_u64().unwrap();
    let (status, read) = alice
        .post("/v1/messages/read", Some(json!({"up_to": carol_seq + 100})))
        .await;
    assert_eq!((status, read), (StatusCode::OK, json!({"unread": 0})));
    let (status, cleared) = alice
        .post(
            "/v1/messages/clear",
            Some(json!({"up_to": carol_seq + 100})),
        )
        .await;
    assert_eq!((status, cleared), (StatusCode::OK, json!({"cleared": 1})));
    assert!(alice.alert_ids().await.is_empty());
    assert_eq!(
        alice.get("/v1/messages?user=carol").await.1["messages"],
        json!([])
    );
    assert_eq!(carol.messages().await["unread"], 1);
    assert_eq!(carol.alert_ids().await, ["a1"]);
    assert_eq!(bob.messages().await["unread"], 1);
    assert_eq!(stored(&js, "alice").await, 0, "cleared for good");
    assert_eq!(stored(&js, "carol").await, 1);
    let (status, body) = alice
        .post("/v1/messages/read", Some(json!({"user": "carol"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The same alert again (a redelivery past JetStream's duplicate window,
    // say) never reaches a user twice.
    let again = alert("a2", "For analysts alice or bob");
    js.send_publish(
        talon_proto::names::inbox_subject("bob"),
        jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(&again).unwrap().into())
            .header(talon_proto::names::HEADER_ALERT_ID, "a2")
            .message_id("a2:bob:late"),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    publish_routed(&js, "inbox-analysts", &alert("a3", "Second")).await;
    bob.wait_messages(2, Duration::from_secs(20)).await;
    assert_eq!(bob.alert_ids().await, ["a3", "a2"]);
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn read_and_clear_survive_a_restart_and_sessions_too() {
    let nats = NatsServer::start().await;
    let (notify, env, config) = start(&nats).await;
    let js = jetstream::new(nats.client().await);
    for i in 1..=3 {
        publish_routed(
            &js,
            "inbox",
            &alert(&format!("r{i}"), &format!("Alert {i}")),
        )
        .await;
    }
    let alice = login(&notify, "alice").await;
    let carol = login(&notify, "carol").await;
    let page = alice.wait_messages(3, Duration::from_secs(20)).await;
    carol.wait_messages(3, Duration::from_secs(20)).await;
    assert_eq!(ids(&page), ["r3", "r2", "r1"]);
    let second = page["messages"][1]["seq"].as_u64().unwrap();
    let (_, read) = alice
        .post("/v1/messages/read", Some(json!({"up_to": second})))
        .await;
    assert_eq!(read, json!({"unread": 1}));
    let (_, cleared) = carol
        .post("/v1/messages/clear", Some(json!({"up_to": u64::MAX})))
        .await;
    assert_eq!(cleared, json!({"cleared": 3}));
    notify.stop().await.unwrap();

    // A new process: the sessions, the marks and the clear are all in NATS.
    let notify = start_notify_and_console(&nats, &config, env).await;
    let alice = alice.at(notify.http_addr);
    let carol = carol.at(notify.http_addr);
    let page = alice.messages().await;
    assert_eq!(page["unread"], 1);
    assert_eq!(ids(&page), ["r3", "r2", "r1"]);
    let read: Vec<bool> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["read"].as_bool().unwrap())
        .collect();
    assert_eq!(read, [false, true, true]);
    assert_eq!(carol.messages().await, json!({"unread": 0, "messages": []}));
    assert_eq!(stored(&js, "carol").await, 0);

    // New messages after the restart count as unread again.
    publish_routed(&js, "inbox", &alert("r4", "Alert 4")).await;
    let page = carol.wait_messages(1, Duration::from_secs(20)).await;
    assert_eq!(
        (ids(&page), &page["unread"]),
        (vec!["r4".to_owned()], &json!(1))
    );
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_serve_one_session() {
    let nats = NatsServer::start().await;
    let (a, env, config) = start(&nats).await;
    let b = start_console(&nats, &config, env).await;
    let js = jetstream::new(nats.client().await);
    for i in 1..=4 {
        publish_routed(
            &js,
            "inbox",
            &alert(&format!("t{i}"), &format!("Alert {i}")),
        )
        .await;
    }
    let on_a = login(&a, "alice").await;
    let on_b = on_a.at(b.http_addr);
    on_a.wait_messages(4, Duration::from_secs(20)).await;
    let page = on_b.wait_messages(4, Duration::from_secs(20)).await;
    // Two replicas deliver side by side: the inbox holds all four, in the
    // order they landed (newest first), the same on both replicas.
    let all = ids(&page);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, ["t1", "t2", "t3", "t4"]);
    assert_eq!(on_a.alert_ids().await, all);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(on_b.get("/v1/me").await.1["name"], "alice");

    // Paging, newest first.
    let (_, first) = on_b.get("/v1/messages?limit=3").await;
    assert_eq!(ids(&first), all[..3]);
    let before = first["next_before"].as_u64().expect("an older page");
    let (_, older) = on_a
        .get(&format!("/v1/messages?limit=3&before={before}"))
        .await;
    assert_eq!(ids(&older), all[3..]);
    assert!(older.get("next_before").is_none(), "{older}");

    // Read on B, seen on A; clear on A, seen on B.
    on_b.post("/v1/messages/read", Some(json!({"up_to": seqs[0]})))
        .await;
    wait_until(Duration::from_secs(10), || async {
        on_a.messages().await["unread"] == 0
    })
    .await;
    on_a.post("/v1/messages/clear", Some(json!({"up_to": seqs[0]})))
        .await;
    wait_until(Duration::from_secs(10), || async {
        on_b.alert_ids().await.is_empty()
    })
    .await;
    // Logging out on A ends the session on B.
    on_a.post("/v1/logout", Some(json!({}))).await;
    assert_eq!(on_b.get("/v1/messages").await.0, StatusCode::UNAUTHORIZED);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

async fn wait_until<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads server-sent events until one named `unread` arrives; its data.
async fn next_unread(
    events: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
) -> Value {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if name.as_deref() == Some("unread") {
                return serde_json::from_str(&data).expect("event data is JSON");
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("an event within 20 s")
            .expect("the stream goes on")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn events_tell_of_each_change_to_my_inbox_only() {
    let nats = NatsServer::start().await;
    let (notify, _, _) = start(&nats).await;
    let js = jetstream::new(nats.client().await);
    let alice = login(&notify, "alice").await;
    let response = alice
        .http
        .get(format!("{}/v1/events", alice.base))
        .header(reqwest::header::COOKIE, alice.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut events = response.bytes_stream();
    let mut buffer = String::new();
    assert_eq!(next_unread(&mut events, &mut buffer).await["unread"], 0);

    // Bob's message says nothing to alice; hers does.
    publish_routed(&js, "inbox-analysts", &alert("e0", "For bob")).await;
    publish_routed(&js, "inbox", &alert("e1", "For alice")).await;
    let event = next_unread(&mut events, &mut buffer).await;
    assert_eq!(event["unread"], 1, "{event}");
    let latest = event["latest"].as_u64().unwrap();
    assert_eq!(alice.messages().await["messages"][0]["seq"], latest);
    alice
        .post("/v1/messages/read", Some(json!({"up_to": latest})))
        .await;
    assert_eq!(next_unread(&mut events, &mut buffer).await["unread"], 0);
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_password_hash_stops_the_console_naming_the_key() {
    let nats = NatsServer::start().await;
    let text = test_config_text(
        &nats,
        "[console]\nhttp_listen = \"127.0.0.1:0\"\n[[console.users]]\nname = \"alice\"\npassword_hash_env = \"ALICE_HASH\"\n",
    );
    let env = talon_kit::Env::default().with("ALICE_HASH", "hunter2");
    let config = parse_config(&text, &env);
    let client = nats.client().await;
    let err = talon_console::start(talon_kit::service::Context {
        config,
        env,
        client,
        shutdown: Default::default(),
    })
    .await
    .err()
    .expect("refused");
    let line = err.to_string();
    assert!(
        line.starts_with(
            "console.users[name=alice].password_hash_env: not an argon2 password hash"
        ),
        "{line}"
    );
}

#[tokio::test]
async fn talonctl_hash_password_makes_a_hash_that_logs_in() {
    use std::io::Write;
    let mut child = std::process::Command::new(binary("talonctl"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    let hash = hash.trim();
    assert!(talon_kit::password::verify(hash, "s3cret pass"), "{hash}");
    assert!(!talon_kit::password::verify(hash, "s3cret pass\n"));

    // Users in [[notify.users]], as earlier releases had them: read as
    // [[console.users]].
    let nats = NatsServer::start().await;
    let config = "[console]\nhttp_listen = \"127.0.0.1:0\"\n[[notify.users]]\nname = \"erin\"\npassword_hash_env = \"ERIN_HASH\"\n";
    let notify = start_console(
        &nats,
        config,
        talon_kit::Env::default().with("ERIN_HASH", hash),
    )
    .await;
    Console::login(notify.http_addr, "erin", "s3cret pass")
        .await
        .unwrap_or_else(|(s, b)| panic!("{s} {b}"));
    notify.stop().await.unwrap();
}

/// A login name is written to the log escaped: a name holding a line break
/// cannot forge a log line.
#[tokio::test]
async fn a_login_name_cannot_forge_a_log_line() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(
        &config,
        test_config_text(
            &nats,
            "[console]\nhttp_listen = \"127.0.0.1:0\"\n[[console.users]]\nname = \"alice\"\n\
             roles = [\"administrator\"]\npassword_hash_env = \"ALICE_HASH\"\n",
        ),
    )
    .unwrap();
    let hash = talon_kit::password::hash("alice-secret").unwrap();
    let mut notify = ServiceProcess::spawn("talon-console", &config, &[("ALICE_HASH", &hash)]);
    let addr = notify.ready_addr(Duration::from_secs(60)).await;
    let forged =
        "eve\n2026-01-01T00:00:00.000000Z  INFO talon_console::api: console login user=admin";
    let (status, _) = Console::anonymous(&addr)
        .post("/v1/login", Some(json!({"name": forged, "password": "x"})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = notify.stderr_lines();
    let refused: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("console login refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{lines:#?}");
    assert!(refused[0].contains(r"eve\n2026"), "escaped: {}", refused[0]);
    assert!(
        !lines.iter().any(|l| l.starts_with("2026-01-01T00:00:00")),
        "a forged line: {lines:#?}"
    );
}

/// `read` and `clear` act up to the newest message the page showed: without
/// it (an empty body, `{}`) they are refused; a sequence beyond the stream's
/// last is cut to it, so a message arriving later is neither read nor
/// cleared unseen. A request a browser marks cross-site is refused.
#[tokio::test]
async fn read_and_clear_need_the_newest_shown_and_never_reach_past_the_last() {
    let nats = NatsServer::start().await;
    let (notify, _, _) = start(&nats).await;
    let js = jetstream::new(nats.client().await);
    publish_routed(&js, "inbox", &alert("u1", "First")).await;
    let alice = login(&notify, "alice").await;
    let page = alice.wait_messages(1, Duration::from_secs(20)).await;
    let first = page["messages"][0]["seq"].as_u64().unwrap();

    // An empty body, no content type: refused, nothing cleared.
    let (status, body) = alice.post("/v1/messages/clear", None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = alice.post("/v1/messages/clear", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("up_to"), "{body}");
    assert_eq!(alice.alert_ids().await, ["u1"]);

    // Read "everything for ever": cut to the stream's last sequence.
    let (status, read) = alice
        .post("/v1/messages/read", Some(json!({"up_to": u64::MAX})))
        .await;
    assert_eq!((status, read), (StatusCode::OK, json!({"unread": 0})));
    publish_routed(&js, "inbox", &alert("u2", "Second")).await;
    let page = alice.wait_messages(2, Duration::from_secs(20)).await;
    assert_eq!(page["unread"], 1, "a later message is unread: {page}");

    // Clear what the page showed (u1): u2, which came after, stays.
    let (status, cleared) = alice
        .post("/v1/messages/clear", Some(json!({"up_to": first})))
        .await;
    assert_eq!((status, cleared), (StatusCode::OK, json!({"cleared": 1})));
    assert_eq!(alice.alert_ids().await, ["u2"]);

    // Cross-site: refused whatever the body.
    let http = talon_kit::outbound::client();
    let cookie = alice.cookie.clone().expect("a session cookie");
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = http
            .post(format!("http://{}/v1/messages/clear", notify.http_addr))
            .header("cookie", &cookie)
            .header(name, value)
            .json(&json!({"up_to": u64::MAX}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    // The same origin passes.
    let response = http
        .post(format!("http://{}/v1/messages/read", notify.http_addr))
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", notify.http_addr))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"up_to": u64::MAX}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(alice.alert_ids().await, ["u2"]);
    notify.stop().await.unwrap();
}

/// A session ends when its user's password hash changes (a new password
/// logs every old session out); another user's session lives on. The
/// cookie is `Secure` when the config asks for it.
#[tokio::test]
async fn a_new_password_ends_the_old_sessions() {
    let nats = NatsServer::start().await;
    let (users, env) = console_users("127.0.0.1:0");
    let config = format!("{users}{CHANNELS}");
    let notify = start_notify_and_console(&nats, &config, env.clone()).await;
    let alice = login(&notify, "alice").await;
    let bob = login(&notify, "bob").await;
    assert!(
        !alice.set_cookie.as_deref().unwrap().contains("Secure"),
        "not Secure on loopback by default"
    );
    notify.stop().await.unwrap();

    // alice's hash changes; bob's does not.
    let new_hash = talon_kit::password::hash("a-new-password").unwrap();
    let changed = env.clone().with("ALICE_HASH", &new_hash);
    let secure = config.replacen("[console]\n", "[console]\ncookie_secure = true\n", 1);
    let notify = start_notify_and_console(&nats, &secure, changed).await;
    let alice = alice.at(notify.http_addr);
    let bob = bob.at(notify.http_addr);
    assert_eq!(alice.get("/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bob.get("/v1/me").await,
        (
            StatusCode::OK,
            json!({"name": "bob", "roles": ["analyst"], "may_triage": true})
        )
    );
    let again = Console::login(notify.http_addr, "alice", "a-new-password")
        .await
        .unwrap_or_else(|(s, b)| panic!("{s} {b}"));
    assert!(
        again.set_cookie.as_deref().unwrap().ends_with("; Secure"),
        "{:?}",
        again.set_cookie
    );
    notify.stop().await.unwrap();
}

/// Group messages through notify's inbox channel (`Inbox::deliver_group`),
/// as a grouped channel sends them: one entry per group message and user
/// however often it is sent, read and cleared like an alert's, listing
/// exactly its alerts in the alerts view; a hostile one is skipped.
#[tokio::test]
async fn a_group_message_is_one_entry_that_lists_exactly_its_alerts() {
    use jetstream::message::PublishMessage;
    use talon_notify::channels::inbox::{Inbox, User};
    use talon_proto::group::{Builder, GroupValue};
    use talon_proto::names::{inbox_subject, HEADER_GROUP, SUBJECT_HISTORY};

    const N: usize = 25;
    const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
    let nats = NatsServer::start().await;
    let (notify, _, _) = start(&nats).await;
    let js = jetstream::new(nats.client().await);

    // The alerts, recorded in HISTORY as enrich records them, and one more
    // that is in no group.
    let mut alerts = Vec::new();
    for i in 0..=N {
        let mut a = alert(&format!("h{i:02}"), "Sigma: mimikatz");
        a.client_id = Some(format!("C.{}", i % 4));
        a.severity = Some(if i % 5 == 0 { "critical" } else { "high" }.into());
        a.routed_to = Some(vec!["inbox".into()]);
        js.send_publish(
            SUBJECT_HISTORY,
            PublishMessage::build()
                .payload(serde_json::to_vec(&a).unwrap().into())
                .message_id(a.id.clone()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        alerts.push(a);
    }
    let message = |sequence: u64, alerts: &[talon_proto::Alert]| {
        let by_name = vec![GroupValue {
            field: "name".into(),
            value: "Sigma: mimikatz".into(),
        }];
        let mut b = Builder::new("inbox", KEY, by_name, sequence, None, 100);
        for a in alerts {
            b.push(a.clone());
        }
        b.finish()
    };
    let first = message(1, &alerts[..N]);

    // notify's sender, to the default recipients (administrators: alice,
    // carol, dave); the same message sent twice.
    let users: Vec<User> = talon_tests::console::USERS
        .iter()
        .map(|(name, roles, _)| User {
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
        .collect();
    let sender = Inbox::new(js.clone(), &Default::default(), &users).unwrap();
    assert_eq!(sender.users(), ["alice", "carol"]);
    sender.deliver_group(&first).await.unwrap();
    sender.deliver_group(&first).await.unwrap();
    assert_eq!(stored(&js, "alice").await, 1, "one message per user");

    let alice = login(&notify, "alice").await;
    let carol = login(&notify, "carol").await;
    let page = alice.wait_messages(1, Duration::from_secs(20)).await;
    let m = &page["messages"][0];
    assert_eq!(m["kind"], "group", "{m}");
    assert_eq!(m["id"], format!("g-{KEY}-1"));
    assert_eq!(m["name"], format!("{N} alerts: Sigma: mimikatz"));
    assert_eq!((&m["count"], &m["read"]), (&json!(N), &json!(false)));
    assert_eq!(
        m["by_severity"],
        json!([{"value": "high", "count": 20}, {"value": "critical", "count": 5}])
    );
    assert_eq!(m["by_client"].as_array().unwrap().len(), 4);
    assert_eq!(page["unread"], 1);
    let seq = m["seq"].as_u64().unwrap();

    // It opens exactly its alerts (not h25, which is in no group).
    let group = format!("{KEY}-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (status, list) = alice
            .get(&format!("/v1/alerts?group={group}&limit=100"))
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        if list["counts"]["total"] == N || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut listed: Vec<String> = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, first.alert_ids);
    let (_, narrowed) = alice
        .get(&format!("/v1/alerts?group={group}&severity=critical"))
        .await;
    assert_eq!(narrowed["counts"]["total"], 5, "{narrowed}");

    // The same message again past JetStream's duplicate window (another
    // Nats-Msg-Id), and hostile ones: a header that names no group
    // message, a body that is not one, a body of another group message.
    let hostile = [
        ("nonsense".to_owned(), serde_json::to_vec(&first).unwrap()),
        (format!("{KEY}-1"), serde_json::to_vec(&first).unwrap()),
        (format!("{KEY}-7"), b"{not json".to_vec()),
        (format!("{KEY}-8"), serde_json::to_vec(&first).unwrap()),
        (format!("{KEY}-9"), serde_json::to_vec(&alerts[0]).unwrap()),
    ];
    for (i, (header, body)) in hostile.into_iter().enumerate() {
        js.send_publish(
            inbox_subject("alice"),
            PublishMessage::build()
                .payload(body.into())
                .header(HEADER_GROUP, header.as_str())
                .message_id(format!("hostile-{i}")),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // The group's next message: an entry of its own.
    let second = message(2, &alerts[..3]);
    sender.deliver_group(&second).await.unwrap();
    let page = alice.wait_messages(2, Duration::from_secs(20)).await;
    let entries: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(entries, [format!("g-{KEY}-2"), format!("g-{KEY}-1")]);
    assert_eq!(page["messages"][0]["name"], "3 alerts: Sigma: mimikatz");
    assert_eq!(
        page["unread"], 2,
        "the hostile ones are not counted: {page}"
    );
    for bad in [7, 8, 9] {
        let (status, body) = alice.get(&format!("/v1/alerts?group={KEY}-{bad}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{KEY}-{bad}: {body}");
    }

    // Read like any entry.
    let (status, read) = alice
        .post("/v1/messages/read", Some(json!({"up_to": seq})))
        .await;
    assert_eq!((status, read), (StatusCode::OK, json!({"unread": 1})));
    let read: Vec<bool> = alice.messages().await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["read"].as_bool().unwrap())
        .collect();
    assert_eq!(read, [false, true]);

    // Only the user's own inbox resolves a group: bob never had it.
    let bob = login(&notify, "bob").await;
    let (status, body) = bob.get(&format!("/v1/alerts?group={group}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for bad in [
        "nonsense",
        "5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A-1",
        "g-5a-1",
        &format!("{KEY}-0"),
    ] {
        let (status, _) = alice.get(&format!("/v1/alerts?group={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Cleared: gone from alice's inbox and her group filter, not carol's.
    let (status, _) = alice
        .post("/v1/messages/clear", Some(json!({"up_to": u64::MAX})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alice.messages().await["messages"], json!([]));
    let (status, _) = alice.get(&format!("/v1/alerts?group={group}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(stored(&js, "alice").await, 0);
    let page = carol.wait_messages(2, Duration::from_secs(20)).await;
    assert_eq!(page["unread"], 2);
    let (status, list) = carol.get(&format!("/v1/alerts?group={group}")).await;
    assert_eq!(
        (status, &list["counts"]["total"]),
        (StatusCode::OK, &json!(N))
    );
    notify.stop().await.unwrap();
}
