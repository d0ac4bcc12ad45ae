//! docker-compose.yml's topology as processes: nats-server from
//! deploy/nats.conf, `talonctl init`, then one ingest, one dedup, one enrich
//! three notify replicas and a console, each its own binary reading the compose config
//! (deploy/talon.compose.toml) with the secrets of .env.example. Alerts
//! raised on NATS, over HTTP and with `talonctl alert` reach the web hook,
//! the mailbox and the console's inbox exactly once each.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::json;
use talon_tests::cluster::NatsFromFile;
use talon_tests::console::Console;
use talon_tests::deploy::{env_file, local_config, read, root, Suite};
use talon_tests::receiver::Receiver;
use talon_tests::smtp::SmtpServer;
use talon_tests::*;

/// How many times each name occurs.
fn counts<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in names {
        *out.entry(n.to_owned()).or_insert(0) += 1;
    }
    out
}

/// The token a deployment puts in `.env` in place of the example's.
const TOKEN: &str = "topology-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_topology_as_processes_delivers_each_alert_once_everywhere() {
    let nats = NatsFromFile::start(&root().join("deploy/nats.conf")).await;
    let smtp = SmtpServer::started().await;
    let hook = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("talon.toml");
    std::fs::write(
        &config,
        local_config(
            &read("deploy/talon.compose.toml"),
            &dir.path().join("dedup"),
            smtp.port,
        ),
    )
    .expect("write config");

    // The secrets as docker compose passes them from .env.example, and
    // TALON_NATS_URL as compose sets it; the example's siem web hook channel
    // posts to our receiver.
    let dotenv = env_file(&read(".env.example"));
    let siem_url = hook.url("/siem");
    let nats_url = nats.url();
    let mut env: Vec<(&str, &str)> = dotenv
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend([
        ("TALON_NATS_URL", nats_url.as_str()),
        ("SIEM_WEBHOOK_URL", siem_url.as_str()),
        ("SIEM_SIGNING_SECRET", "topology-secret"),
        // .env.example's token is an example value, which ingest refuses.
        ("TALON_INGEST_TOKENS", TOKEN),
    ]);
    let lookup = |k: &str| {
        dotenv
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!(".env.example has no {k}"))
    };
    let channels = format!("{},siem", lookup("TALON_NOTIFY_CHANNELS"));
    let mut suite = Suite::start(&config, &env, 3, &channels).await;

    // On NATS, as Velociraptor's forwarder publishes (one name twice: the
    // second falls in its dedup window).
    let js = jetstream::new(nats.node.client().await);
    for name in [
        "topo-nats-1",
        "topo-nats-2",
        "topo-nats-3",
        "topo-repeat",
        "topo-repeat",
    ] {
        let row = json!({
            "client_id": "server", "name": name, "artifact": "Server.Test",
            "artifact_type": "SERVER_MONITORING", "event_data": {"Severity": "high"}
        });
        js.publish(
            talon_proto::names::SUBJECT_ALERTS,
            serde_json::to_vec(&row).expect("JSON").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("ack");
    }
    // Over HTTP, with the deployment's token.
    let token = TOKEN;
    let ingest = &suite.addrs("talon-ingest")[0];
    let response = talon_kit::outbound::client()
        .post(format!("http://{ingest}/v1/alerts"))
        .bearer_auth(token)
        .json(&json!([
            {"name": "topo-http-1", "event_data": {"Severity": "high"}},
            {"name": "topo-http-2", "event_data": {"Severity": "high"}}
        ]))
        .send()
        .await
        .expect("POST /v1/alerts");
    assert_eq!(response.status(), 202);
    // And the command scripts/dev suggests.
    let config_arg = config.to_string_lossy().into_owned();
    let (code, out, err) = run_binary(
        "talonctl",
        &[
            "--config",
            &config_arg,
            "alert",
            "--name",
            "topo-ctl",
            "Hostname=web-1",
            "Severity=high",
        ],
        &env,
    );
    assert_eq!(code, 0, "talonctl alert: {out}{err}");

    let expected = counts([
        "topo-nats-1",
        "topo-nats-2",
        "topo-nats-3",
        "topo-repeat",
        "topo-http-1",
        "topo-http-2",
        "topo-ctl",
    ]);
    let n = expected.len();
    if let Err(e) = hook.wait_accepted(n, Duration::from_secs(60)).await {
        panic!("{e}\n{}", suite.logs());
    }
    let mail = smtp.wait_for_messages(n, Duration::from_secs(30)).await;
    let console = Console::login(&suite.addrs("talon-console")[0], "alice", "change-me")
        .await
        .unwrap_or_else(|e| panic!("alice logs in with .env.example's password: {e:?}"));
    let page = console.wait_messages(n, Duration::from_secs(30)).await;
    // Anything late would be a second delivery.
    tokio::time::sleep(Duration::from_secs(2)).await;
    suite.assert_running();

    let hooked = hook.accepted();
    assert_eq!(
        counts(hooked.iter().map(|b| b["name"].as_str().unwrap_or(""))),
        expected,
        "web hook deliveries"
    );
    assert!(hooked.iter().all(|b| b["channel"] == "siem"));
    let mail = smtp.messages().len().max(mail.len());
    assert_eq!(mail, n, "one mail per alert");
    let subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m.header("Subject").join(""))
        .collect();
    for name in expected.keys() {
        assert_eq!(
            subjects
                .iter()
                .filter(|s| s.ends_with(&format!(": {name}")))
                .count(),
            1,
            "one mail for {name}: {subjects:?}"
        );
    }
    let inbox: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(counts(inbox), expected, "alice's inbox");
    assert_eq!(
        console.messages().await["messages"]
            .as_array()
            .map(Vec::len),
        Some(n)
    );
    println!(
        "topology: {n} alerts, {} web hook deliveries, {mail} mails, {n} inbox messages",
        hooked.len()
    );
}
