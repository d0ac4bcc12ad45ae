//! The console's alerts and triage, end to end through a real nats-server,
//! enrich and console replicas: every alert listed with filters and counts,
//! one alert whole with its links and audit trail, triage with its roles,
//! transitions and compare-and-set, a repeat that links back to the
//! resolved alert before it, one session on two replicas, and a rebuild
//! after a SIGKILL.

use std::time::Duration;

use async_nats::jetstream;
use reqwest::StatusCode;
use serde_json::{json, Value};
use talon_proto::Alert;
use talon_tests::console::{console_users, password, Console};
use talon_tests::*;

fn config() -> (String, talon_kit::Env) {
    let (users, env) = console_users("127.0.0.1:0");
    let text = format!(
        r#"{users}
[enrich]
http_listen = "127.0.0.1:0"
[velociraptor]
gui_url = "https://vr.example.org:8889"
[[channels]]
id = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/hook"
severity_threshold = "high"
require_severity = true
"#
    );
    (text, env)
}

fn alert(id: &str, name: &str, severity: &str, client: &str, i: i64) -> Alert {
    let mut a = accepted_alert(id, name, 1_790_000_000_000 + i * 1000, 0);
    a.client_id = Some(client.into());
    a.dedup = Some(talon_proto::DedupInfo {
        key: format!("{name}|{client}"),
        window_start: a.received_at,
        window_end: a.received_at,
        suppressed_before: 0,
    });
    a.flow_id = Some(format!("F.{i}"));
    a.event_data = json!({"Severity": severity, "FileName": format!("/home/{id}/doc.txt")})
        .as_object()
        .cloned()
        .unwrap();
    a
}

async fn login(addr: std::net::SocketAddr, user: &str) -> Console {
    Console::login(addr, user, password(user))
        .await
        .unwrap_or_else(|(s, b)| panic!("{user} logs in: {s} {b}"))
}

/// Waits until the list holds `n` alerts.
async fn wait_list(console: &Console, n: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, page) = console.get("/v1/alerts").await;
        if status == StatusCode::OK && page["counts"]["total"] == n {
            return page;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(page: &Value) -> Vec<&str> {
    page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_listed_triaged_audited_served_by_two_replicas_and_survive_a_kill() {
    let nats = NatsServer::start().await;
    let (text, env) = config();
    let enrich = start_enrich(&nats, &text).await;
    let console = start_console(&nats, &text, env.clone()).await;
    let js = jetstream::new(nats.client().await);
    publish_unique(
        &js,
        &alert("a1", "Honey file opened", "High", "C.1", 1),
        "a1",
    )
    .await;
    publish_unique(
        &js,
        &alert("a2", "Sigma: Mimikatz", "Critical", "C.2", 2),
        "a2",
    )
    .await;
    publish_unique(
        &js,
        &alert("a3", "Honey file opened", "Low", "C.2", 3),
        "a3",
    )
    .await;

    let alice = login(console.http_addr, "alice").await;
    let bob = login(console.http_addr, "bob").await;
    let rita = login(console.http_addr, "rita").await;
    let page = wait_list(&alice, 3).await;
    assert_eq!(ids(&page), ["a3", "a2", "a1"], "newest first");
    assert_eq!(page["counts"]["severity"]["high"], 1);
    assert_eq!(page["counts"]["state"]["open"], 3);
    assert_eq!(page["alerts"][2]["routed_to"], json!(["hook"]));
    assert_eq!(
        page["alerts"][0]["routed_to"],
        json!([]),
        "low: routed nowhere, listed all the same"
    );

    // Filters.
    let (_, honey) = alice.get("/v1/alerts?q=honey&client=C.2").await;
    assert_eq!(ids(&honey), ["a3"]);
    let (_, sev) = alice.get("/v1/alerts?severity=critical,high").await;
    assert_eq!(ids(&sev), ["a2", "a1"]);
    let (_, by_file) = alice.get("/v1/alerts?q=doc.txt%20a1").await;
    assert_eq!(ids(&by_file), ["a1"]);
    let (_, paged) = alice.get("/v1/alerts?limit=2").await;
    assert_eq!(ids(&paged), ["a3", "a2"]);
    let cursor = paged["next_cursor"].as_str().unwrap();
    let (_, rest) = alice
        .get(&format!("/v1/alerts?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest), ["a1"]);
    assert_eq!(
        alice.get("/v1/alerts?sevrity=high").await.0,
        StatusCode::BAD_REQUEST
    );

    // One alert whole.
    let (status, detail) = alice.get("/v1/alerts/a1").await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["alert"]["name"], "Honey file opened");
    assert_eq!(
        detail["alert"]["links"]["flow"],
        "https://vr.example.org:8889/app/index.html?org_id=root#/collected/C.1/F.1"
    );
    assert_eq!(
        detail["triage"],
        json!({"state": "open", "assignee": null, "verdict": null, "version": 0})
    );
    assert_eq!(detail["audit"], json!([]));
    assert_eq!(alice.get("/v1/alerts/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(alice.get("/v1/alerts/a.b").await.0, StatusCode::NOT_FOUND);

    // Triage: a reader may not; bob acknowledges; alice's resolve on the
    // version she saw loses with 409 and the current state; then wins.
    let ack = json!({"action": "ack"});
    assert_eq!(
        rita.post("/v1/alerts/a1/triage", Some(ack.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, acked) = bob.post("/v1/alerts/a1/triage", Some(ack.clone())).await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    let v1 = acked["version"].as_u64().unwrap();
    assert!(v1 > 0);
    let stale = json!({"action": "resolve", "verdict": "false_positive", "expected_version": 0});
    let (status, conflict) = alice.post("/v1/alerts/a1/triage", Some(stale)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["triage"]["state"], "acknowledged");
    assert_eq!(conflict["triage"]["version"], v1);
    let fresh = json!({"action": "resolve", "verdict": "false_positive", "note": "scanner", "expected_version": v1});
    let (status, resolved) = alice.post("/v1/alerts/a1/triage", Some(fresh)).await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(
        (resolved["state"].as_str(), resolved["verdict"].as_str()),
        (Some("resolved"), Some("false_positive"))
    );
    let (status, refused) = bob.post("/v1/alerts/a1/triage", Some(ack.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let assign = json!({"action": "assign", "assignee": "mallory"});
    assert_eq!(
        bob.post("/v1/alerts/a2/triage", Some(assign)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let assign = json!({"action": "assign", "assignee": "bob"});
    assert_eq!(
        bob.post("/v1/alerts/a2/triage", Some(assign)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        bob.post("/v1/alerts/nope/triage", Some(ack.clone()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.post(
            "/v1/alerts/a2/triage",
            Some(json!({"action": "ack", "state": "resolved"}))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );

    // The audit trail: who, what, before and after, oldest first.
    let (_, detail) = alice.get("/v1/alerts/a1").await;
    let audit = detail["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(
        (audit[0]["by"].as_str(), audit[0]["action"].as_str()),
        (Some("bob"), Some("ack"))
    );
    assert_eq!(audit[0]["before"]["state"], "open");
    assert_eq!(audit[1]["by"], "alice");
    assert_eq!(audit[1]["note"], "scanner");
    assert_eq!(audit[1]["after"]["verdict"], "false_positive");
    assert_eq!(detail["triage"]["state"], "resolved");

    // Two notes at once both land; two acks at once: one wins, the other
    // is refused on the state that won.
    let (n1, n2) = tokio::join!(
        bob.post(
            "/v1/alerts/a3/triage",
            Some(json!({"action": "note", "note": "one"}))
        ),
        alice.post(
            "/v1/alerts/a3/triage",
            Some(json!({"action": "note", "note": "two"}))
        ),
    );
    assert_eq!(
        (n1.0, n2.0),
        (StatusCode::OK, StatusCode::OK),
        "{n1:?} {n2:?}"
    );
    let (k1, k2) = tokio::join!(
        bob.post("/v1/alerts/a3/triage", Some(ack.clone())),
        alice.post("/v1/alerts/a3/triage", Some(ack.clone())),
    );
    let mut statuses = [k1.0, k2.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY],
        "{k1:?} {k2:?}"
    );
    let (_, a3) = alice.get("/v1/alerts/a3").await;
    assert_eq!(a3["audit"].as_array().unwrap().len(), 3);

    // Bulk: each alert answered on its own.
    let (status, bulk) = alice
        .post("/v1/alerts/triage", Some(json!({"ids": ["a2", "a3", "nope", "a.b"], "action": "resolve", "verdict": "true_positive"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{bulk}");
    let codes: Vec<u64> = bulk["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [200, 200, 404, 404]);

    // The list shows triage, and filters on it.
    let (_, open) = alice.get("/v1/alerts?state=open").await;
    assert_eq!(ids(&open), Vec::<&str>::new());
    let (_, mine) = alice.get("/v1/alerts?assignee=bob").await;
    assert_eq!(ids(&mine), ["a2"]);

    // A repeat of a1's dedup key after a1 was resolved is a new alert that
    // links back to a1 and its verdict.
    publish_unique(
        &js,
        &alert("a4", "Honey file opened", "High", "C.1", 4),
        "a4",
    )
    .await;
    let page = wait_list(&alice, 4).await;
    assert_eq!(page["alerts"][0]["state"], "open", "{page}");
    let (_, a4) = alice.get("/v1/alerts/a4").await;
    assert_eq!(
        (
            a4["repeat_of"]["id"].as_str(),
            a4["repeat_of"]["state"].as_str(),
            a4["repeat_of"]["verdict"].as_str()
        ),
        (Some("a1"), Some("resolved"), Some("false_positive")),
        "{a4}"
    );
    let (_, a3) = alice.get("/v1/alerts/a3").await;
    assert_eq!(a3["repeat_of"], Value::Null, "another client's key");

    // Two replicas serve one session: a console process of its own, started
    // now, rebuilds from NATS, takes alice's cookie, and each replica sees
    // the other's triage.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(&config, test_config_text(&nats, &text)).unwrap();
    let vars: Vec<(&str, &str)> = env
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut process = ServiceProcess::spawn("talon-console", &config, &vars);
    let second = process.ready_addr(Duration::from_secs(60)).await;
    let alice2 = alice.at(&second);
    let rebuilt = wait_list(&alice2, 4).await;
    let (_, before) = alice.get("/v1/alerts").await;
    assert_eq!(rebuilt, before, "the same list on both replicas");
    let (status, acked) = alice2.post("/v1/alerts/a4/triage", Some(ack.clone())).await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, a4) = alice.get("/v1/alerts/a4").await;
        if a4["triage"]["state"] == "acknowledged" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a4}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGKILL of a replica loses nothing: a new one rebuilds the same
    // list and the same triage and audit of every alert.
    let mut seen = Vec::new();
    for id in ["a1", "a2", "a3", "a4"] {
        seen.push(alice2.get(&format!("/v1/alerts/{id}")).await.1);
    }
    let (_, list) = alice2.get("/v1/alerts").await;
    process.kill9();
    console.stop().await.unwrap();
    let mut process = ServiceProcess::spawn("talon-console", &config, &vars);
    let third = process.ready_addr(Duration::from_secs(60)).await;
    let alice3 = alice.at(&third);
    let page = wait_list(&alice3, 4).await;
    assert_eq!(page, list, "the list as it was");
    assert_eq!(page["counts"]["state"]["resolved"], 3, "{page}");
    assert_eq!(page["counts"]["state"]["acknowledged"], 1, "{page}");
    for (id, before) in ["a1", "a2", "a3", "a4"].into_iter().zip(seen) {
        let (_, rebuilt) = alice3.get(&format!("/v1/alerts/{id}")).await;
        assert_eq!(rebuilt, before, "{id} as it was");
    }
    assert_eq!(
        page["alerts"][0]["state"], "acknowledged",
        "a4's ack, made on the killed replica"
    );
    process.kill9();
    enrich.stop().await.unwrap();
}

/// Where an alert went: notify tells each attempt's end, the console's
/// alert shows them — a failure being retried, then sent; a permanent
/// refusal, dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_shows_each_delivery_attempt() {
    use talon_tests::receiver::{Receiver, Reply};
    let nats = NatsServer::start().await;
    let flaky = Receiver::start(vec![Reply::status(503), Reply::status(200)]).await;
    let refusing = Receiver::start(vec![Reply::status(400)]).await;
    let (users, env) = console_users("127.0.0.1:0");
    let text = format!(
        r#"{users}
[enrich]
http_listen = "127.0.0.1:0"
[[channels]]
id = "flaky"
kind = "webhook"
url = "{}"
rate_per_minute = 0
[[channels]]
id = "refusing"
kind = "webhook"
url = "{}"
rate_per_minute = 0
"#,
        flaky.url("/in"),
        refusing.url("/in")
    );
    let enrich = start_enrich(&nats, &text).await;
    let both = start_notify_and_console(&nats, &text, env).await;
    let js = jetstream::new(nats.client().await);
    publish_unique(&js, &alert("d1", "Known bad host", "High", "C.1", 1), "d1").await;
    let alice = login(both.http_addr, "alice").await;
    wait_list(&alice, 1).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let (_, d) = alice.get("/v1/alerts/d1").await;
        let list = d["deliveries"].as_array().cloned().unwrap_or_default();
        let done = |c: &str, o: &str| list.iter().any(|x| x["channel"] == c && x["outcome"] == o);
        if done("flaky", "sent") && done("refusing", "dead_lettered") {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let flaky_steps: Vec<(&str, u64)> = deliveries
        .iter()
        .filter(|d| d["channel"] == "flaky")
        .map(|d| {
            (
                d["outcome"].as_str().unwrap(),
                d["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flaky_steps,
        [("retrying", 1), ("sent", 2)],
        "{deliveries:?}"
    );
    let retry = deliveries
        .iter()
        .find(|d| d["outcome"] == "retrying")
        .unwrap();
    assert!(retry["reason"].as_str().unwrap().contains("503"), "{retry}");
    let refused: Vec<&Value> = deliveries
        .iter()
        .filter(|d| d["channel"] == "refusing")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["reason"].as_str().unwrap().contains("400"),
        "{}",
        refused[0]
    );
    both.stop().await.unwrap();
    enrich.stop().await.unwrap();
}

const BOT_TOKEN: &str = "bot-token-0123456789abcdef0123";
const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdef01";

/// `talonctl alerts …` in its own process, as `args` say.
async fn talonctl(args: Vec<String>, env: Vec<(&'static str, String)>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_binary("talonctl", &args, &env)
    })
    .await
    .unwrap()
}

/// Scripted triage: `talonctl alerts` lists, shows and triages with a
/// user's API token or a login, and says why when it may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talonctl_alerts_triage_with_an_api_token_or_a_login() {
    let nats = NatsServer::start().await;
    let (text, env) = config();
    let text = format!(
        "{text}\n[[console.users]]\nname = \"triage-bot\"\nroles = [\"analyst\"]\ntokens_env = \"BOT_TOKENS\"\n\
         [[console.users]]\nname = \"viewer\"\nroles = [\"reader\"]\ntokens_env = \"VIEWER_TOKENS\"\n"
    );
    let env = env
        .with(
            "BOT_TOKENS",
            &format!("old-token-0123456789abcdef012, {BOT_TOKEN}"),
        )
        .with("VIEWER_TOKENS", VIEWER_TOKEN);
    let enrich = start_enrich(&nats, &text).await;
    let console = start_console(&nats, &text, env).await;
    let js = jetstream::new(nats.client().await);
    for (i, (id, name, severity, client)) in [
        ("t1", "Honey file opened", "High", "C.1"),
        ("t2", "Sigma: Mimikatz", "Critical", "C.2"),
        ("t3", "Known bad host", "Low", "C.1"),
    ]
    .into_iter()
    .enumerate()
    {
        publish_unique(&js, &alert(id, name, severity, client, i as i64), id).await;
    }
    let alice = login(console.http_addr, "alice").await;
    wait_list(&alice, 3).await;

    let url = console.http_addr.to_string();
    let ctl = |args: &[&str], env: Vec<(&'static str, String)>| {
        let mut all: Vec<String> = vec!["alerts".into(), "--url".into(), url.clone()];
        all.extend(args.iter().map(|s| s.to_string()));
        talonctl(all, env)
    };
    let bot = || vec![("TALON_CONSOLE_TOKEN", BOT_TOKEN.to_owned())];

    // The bearer token reads what a session reads.
    let http = talon_kit::outbound::client();
    let me: Value = http
        .get(format!("http://{url}/v1/me"))
        .bearer_auth(BOT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "triage-bot");
    assert_eq!(me["may_triage"], true);
    let wrong = http
        .get(format!("http://{url}/v1/alerts"))
        .bearer_auth("not-a-token-0123456789abcdef")
        .header("cookie", alice.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        wrong.status(),
        401,
        "a wrong token is refused, cookie or not"
    );

    let (code, out, err) = ctl(&["list", "--severity", "high,critical"], bot()).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(
        (rows[0][0], rows[0][2], rows[0][3], rows[0][6]),
        ("t2", "critical", "open", "Sigma: Mimikatz")
    );
    assert_eq!(rows[1][0], "t1");
    let (code, out, _) = ctl(&["list", "--limit", "1", "--json"], bot()).await;
    assert_eq!(code, 0);
    let first: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(first["id"], "t3", "newest first, one line");

    let (code, out, err) = ctl(&["ack", "t1"], bot()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("t1\tacknowledged"), "{out}");
    let (code, out, err) = ctl(&["assign", "t1", "bob"], bot()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("assignee=bob"), "{out}");
    let (code, out, err) = ctl(&["note", "t1", "looked at the share"], bot()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("t1\tacknowledged"), "{out}");
    let (code, out, err) = ctl(
        &[
            "resolve",
            "t1",
            "t2",
            "--verdict",
            "false_positive",
            "--note",
            "backup job",
        ],
        bot(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .all(|l| l.contains("resolved") && l.contains("verdict=false_positive")),
        "{out}"
    );
    let (code, _, err) = ctl(&["resolve", "t1", "--verdict", "benign"], bot()).await;
    assert_eq!(code, 1);
    assert!(err.contains("422"), "resolving a resolved alert: {err}");
    let (code, _, err) = ctl(&["ack", "t3", "../v1/login"], bot()).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("1 of 2 not changed") || err.contains("not an alert id"),
        "{err}"
    );

    // Every change is in the audit trail, as the token's user.
    let (code, out, err) = ctl(&["show", "t1"], bot()).await;
    assert_eq!(code, 0, "{err}");
    let audit: Vec<&str> = out.lines().filter(|l| l.starts_with("audit")).collect();
    assert_eq!(audit.len(), 4, "{out}");
    assert!(audit.iter().all(|l| l.contains(" triage-bot ")), "{out}");
    assert!(audit[2].ends_with("note: looked at the share"), "{out}");
    assert!(
        out.contains(
            "host        https://vr.example.org:8889/app/index.html?org_id=root#/host/C.1"
        ),
        "{out}"
    );
    let (_, detail) = alice.get("/v1/alerts/t1").await;
    assert_eq!(detail["triage"]["verdict"], "false_positive");
    assert_eq!(detail["audit"][3]["note"], "backup job");

    // A login instead of a token; a reader's token views but cannot triage.
    let login_env = || {
        vec![
            ("TALON_CONSOLE_USER", "carol".to_owned()),
            ("TALON_CONSOLE_PASSWORD", password("carol").to_owned()),
        ]
    };
    let (code, out, err) = ctl(&["reopen", "t1"], login_env()).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("t1\topen"), "{out}");
    let (code, _, err) = ctl(
        &["list"],
        vec![
            ("TALON_CONSOLE_USER", "carol".to_owned()),
            ("TALON_CONSOLE_PASSWORD", "wrong".to_owned()),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let viewer = || vec![("TALON_CONSOLE_TOKEN", VIEWER_TOKEN.to_owned())];
    let (code, out, _) = ctl(&["list", "--state", "resolved"], viewer()).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "t2: {out}");
    let (code, _, err) = ctl(&["ack", "t3"], viewer()).await;
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    let (code, _, err) = ctl(&["list"], vec![]).await;
    assert_eq!(code, 1);
    assert!(err.contains("--token"), "says who must act: {err}");

    console.stop().await.unwrap();
    enrich.stop().await.unwrap();
}
