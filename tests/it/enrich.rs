//! enrich end to end through a real nats-server: overrides, severity,
//! context, client details, routing (alone and behind ingest and dedup).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream;
use serde_json::{json, Value};
use talon_proto::names::{STREAM_NOTIFY, SUBJECT_ALERTS};
use talon_proto::Alert;
use talon_tests::*;

const CHANNELS: &str = r#"
[enrich]
http_listen = "127.0.0.1:0"

[[channels]]
id = "all"
kind = "webhook"
url = "http://127.0.0.1:9/all"

[[channels]]
id = "high-up"
kind = "webhook"
url = "http://127.0.0.1:9/high"
severity_threshold = "high"

[[channels]]
id = "exact"
kind = "webhook"
url = "http://127.0.0.1:9/exact"
severity_threshold = ["low", "critical"]

[[channels]]
id = "honey-only"
kind = "webhook"
url = "http://127.0.0.1:9/honey"
alert_include = "^Honey"

[[channels]]
id = "no-honey"
kind = "webhook"
url = "http://127.0.0.1:9/nohoney"
alert_exclude = "^Honey"

[[channels]]
id = "strict"
kind = "webhook"
url = "http://127.0.0.1:9/strict"
require_severity = true
"#;

async fn on_channel(js: &jetstream::Context, channel: &str, at_most: usize) -> Vec<Alert> {
    collect(
        js,
        STREAM_NOTIFY,
        &format!("Server.Monitor.Alerts.{channel}"),
        at_most,
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .iter()
    .map(|m| serde_json::from_slice(&m.payload).unwrap())
    .collect()
}

#[tokio::test]
async fn a_rule_alert_for_a_client_reaches_the_channel_as_that_clients_alert() {
    let nats = NatsServer::start().await;
    import_clients(
        &nats,
        r#"{"client_id":"C.42","hostname":"web-1","fqdn":"web-1.example.org","os":"linux","labels":["prod","dmz"]}"#,
    )
    .await;
    let enrich = start_enrich(&nats, CHANNELS).await;
    let js = jetstream::new(nats.client().await);

    let mut alert = accepted_alert("r1", "Honey file opened", 1_790_000_000_000, 0);
    alert.source = "rule:Server.Monitor.HoneyfileAccess".into();
    alert.client_id = Some("server".into());
    alert.event_data = json!({
        "ClientId": "C.42",
        "FlowId": "F.1",
        "Artifact": "Linux.Detection.Honeyfiles",
        "ArtifactType": "CLIENT_EVENT",
        "Level": "Warning",
        "FileName": "/home/a/honey.docx",
        "Process": {"Pid": 4120, "Cmd": ["cat", "honey.docx"]}
    })
    .as_object()
    .cloned()
    .unwrap();
    publish_unique(&js, &alert, "r1").await;

    let got = on_channel(&js, "all", 2).await;
    assert_eq!(got.len(), 1);
    let a = &got[0];
    assert_eq!(a.channel.as_deref(), Some("all"));
    assert_eq!(a.client_id.as_deref(), Some("C.42"));
    assert_eq!(a.flow_id.as_deref(), Some("F.1"));
    assert_eq!(a.artifact.as_deref(), Some("Linux.Detection.Honeyfiles"));
    assert_eq!(a.artifact_type.as_deref(), Some("CLIENT_EVENT"));
    assert_eq!(
        a.severity.as_deref(),
        Some("medium"),
        "Level Warning -> medium"
    );
    let context: Vec<(String, String)> = a
        .context
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.key.clone(), c.value.clone()))
        .collect();
    assert_eq!(
        context,
        [
            ("FileName".to_owned(), "/home/a/honey.docx".to_owned()),
            ("Process.Pid".to_owned(), "4120".to_owned()),
            ("Process.Cmd.0".to_owned(), "cat".to_owned()),
            ("Process.Cmd.1".to_owned(), "honey.docx".to_owned()),
        ],
        "overrides and the severity member leave the context"
    );
    let client = a.client.as_ref().expect("the inventory knows C.42");
    assert_eq!(client.hostname.as_deref(), Some("web-1"));
    assert_eq!(client.labels, ["prod", "dmz"]);
    // The message id is alert id + channel.
    enrich.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_and_server_clients_leave_client_null_and_imports_show_up_live() {
    let nats = NatsServer::start().await;
    let enrich = start_enrich(&nats, CHANNELS).await;
    let js = jetstream::new(nats.client().await);

    let mut unknown = accepted_alert("u1", "Sigma hit", 1_790_000_000_000, 0);
    unknown.client_id = Some("C.unknown".into());
    publish_unique(&js, &unknown, "u1").await;
    let server = accepted_alert("s1", "Server thing", 1_790_000_000_000, 0);
    publish_unique(&js, &server, "s1").await;
    let got = on_channel(&js, "all", 3).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|a| a.client.is_none()), "{got:?}");

    import_clients(&nats, "{\"client_id\":\"C.7\",\"hostname\":\"db-1\"}\n").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let mut a = accepted_alert(&format!("k{n}"), "Sigma hit", 1_790_000_000_000, 0);
        a.client_id = Some("C.7".into());
        publish_unique(&js, &a, &format!("k{n}")).await;
        let got = on_channel(&js, "all", 1).await;
        if got[0].client.as_ref().and_then(|c| c.hostname.as_deref()) == Some("db-1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an import while running never showed up"
        );
    }
    enrich.stop().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_input_yields_no_second_message_on_any_channel() {
    let nats = NatsServer::start().await;
    let enrich = start_enrich(&nats, CHANNELS).await;
    let js = jetstream::new(nats.client().await);
    let mut a = accepted_alert("same-id", "Honey pot login", 1_790_000_000_000, 0);
    a.event_data = json!({"Severity": "Critical"})
        .as_object()
        .cloned()
        .unwrap();
    // The same alert twice on UNIQUE, as a redelivery would bring it.
    publish_unique(&js, &a, "copy-1").await;
    publish_unique(&js, &a, "copy-2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (channel, expected) in [
        ("all", 1),
        ("high-up", 1),
        ("exact", 1),
        ("honey-only", 1),
        ("no-honey", 0),
        ("strict", 1),
    ] {
        let got = on_channel(&js, channel, 3).await;
        assert_eq!(got.len(), expected, "{channel}");
        if let Some(g) = got.first() {
            assert_eq!(g.severity.as_deref(), Some("critical"));
        }
    }
    enrich.stop().await.unwrap();
}

/// Through ingest, dedup and enrich: every channel subject holds exactly
/// what routing says.
#[tokio::test]
async fn ingest_dedup_enrich_route_counts_per_channel() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ingest = start_ingest(
        &nats,
        "[ingest]\nhttp_listen = \"127.0.0.1:0\"\n",
        Default::default(),
    )
    .await;
    let dedup = start_dedup(&nats, &dedup_table(dir.path())).await;
    let enrich = start_enrich(&nats, CHANNELS).await;
    let js = jetstream::new(nats.client().await);

    // (name, severity member and value, times published)
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, usize);
    let cases: [Case; 7] = [
        ("Honey file opened", Some(("Severity", "High")), 3),
        ("Honey pot login", None, 2),
        ("Sigma: mimikatz", Some(("Level", "ERROR")), 1),
        ("Sigma: whoami", Some(("level", "warning")), 4),
        ("Bad host", Some(("Severity", "critical")), 2),
        ("Low thing", Some(("Severity", "low")), 1),
        ("Odd thing", Some(("Severity", "urgent")), 1),
    ];
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, sev, times) in cases {
        let severity = sev.map(|(member, value)| {
            let s = value.to_lowercase();
            match (member, s.as_str()) {
                (_, "warning") => "medium".to_owned(),
                (m, "error") if m.eq_ignore_ascii_case("level") => "high".to_owned(),
                _ => s,
            }
        });
        let rank = |s: &str| {
            ["info", "low", "medium", "high", "critical"]
                .iter()
                .position(|l| *l == s)
        };
        for _ in 0..times {
            let mut event_data = serde_json::Map::new();
            if let Some((member, value)) = sev {
                event_data.insert(member.into(), Value::String(value.into()));
            }
            let row = json!({"name": name, "dedup": -1, "event_data": event_data});
            js.publish(SUBJECT_ALERTS, row.to_string().into())
                .await
                .unwrap()
                .await
                .unwrap();
            let sev = severity.as_deref();
            *expected.entry("all").or_default() += 1;
            if sev.is_none() || sev.and_then(rank).is_some_and(|r| r >= 3) {
                *expected.entry("high-up").or_default() += 1;
            }
            if sev.is_none() || matches!(sev, Some("low" | "critical")) {
                *expected.entry("exact").or_default() += 1;
            }
            if name.starts_with("Honey") {
                *expected.entry("honey-only").or_default() += 1;
            } else {
                *expected.entry("no-honey").or_default() += 1;
            }
            if sev.is_some() {
                *expected.entry("strict").or_default() += 1;
            }
        }
    }
    // Wait until the pipeline settled: ALERTS consumed and UNIQUE drained.
    let total: usize = cases.iter().map(|c| c.2).sum();
    wait_for_messages(
        &js,
        STREAM_NOTIFY,
        expected["all"] as u64,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for channel in [
        "all",
        "high-up",
        "exact",
        "honey-only",
        "no-honey",
        "strict",
    ] {
        let got = on_channel(&js, channel, total + 1).await;
        assert_eq!(
            got.len(),
            expected.get(channel).copied().unwrap_or(0),
            "{channel}"
        );
        for a in &got {
            assert_eq!(a.channel.as_deref(), Some(channel));
            assert!(a.dedup.is_some(), "dedup ran before enrich");
        }
    }
    enrich.stop().await.unwrap();
    dedup.stop().await.unwrap();
    ingest.stop().await.unwrap();
}

/// Every alert, routed or not, is recorded once on `talon.alerts.history`
/// with the channels it went to and its links into the Velociraptor GUI; a
/// redelivered input records nothing twice.
#[tokio::test]
async fn every_alert_is_recorded_in_history_with_routes_and_links() {
    use talon_proto::names::{STREAM_HISTORY, SUBJECT_HISTORY};
    let nats = NatsServer::start().await;
    let config = r#"
[enrich]
http_listen = "127.0.0.1:0"
[velociraptor]
gui_url = "https://vr.example.org:8889/"
default_org_id = "root"
[[channels]]
id = "honey-only"
kind = "webhook"
url = "http://127.0.0.1:9/honey"
alert_include = "^Honey"
[[channels]]
id = "critical"
kind = "webhook"
url = "http://127.0.0.1:9/critical"
severity_threshold = "critical"
require_severity = true
"#;
    let enrich = start_enrich(&nats, config).await;
    let js = jetstream::new(nats.client().await);

    let mut honey = accepted_alert("h1", "Honey file opened", 1_790_000_000_000, 0);
    honey.client_id = Some("C.1234abcd".into());
    honey.flow_id = Some("F.CQ2R1".into());
    honey.event_data = json!({"Severity": "Critical", "HuntId": "H.77AB"})
        .as_object()
        .cloned()
        .unwrap();
    // Routed nowhere: not a honey name, and no severity.
    let mut plain = accepted_alert("p1", "Plain", 1_790_000_000_001, 0);
    plain.org_id = Some("O42".into());
    publish_unique(&js, &honey, "h1").await;
    publish_unique(&js, &honey, "h1-again").await;
    publish_unique(&js, &plain, "p1").await;

    let records: Vec<Alert> = collect(
        &js,
        STREAM_HISTORY,
        SUBJECT_HISTORY,
        3,
        Duration::from_secs(3),
    )
    .await
    .unwrap()
    .iter()
    .map(|m| serde_json::from_slice(&m.payload).unwrap())
    .collect();
    assert_eq!(records.len(), 2, "one record per alert: {records:#?}");
    let h = records.iter().find(|r| r.id == "h1").expect("h1 recorded");
    assert_eq!(
        h.routed_to.as_deref(),
        Some(&["honey-only", "critical"].map(String::from)[..])
    );
    assert_eq!(h.channel, None, "the record is not any channel's message");
    assert_eq!(h.severity.as_deref(), Some("critical"));
    let links = h.links.as_ref().expect("links");
    assert_eq!(
        links.host.as_deref(),
        Some("https://vr.example.org:8889/app/index.html?org_id=root#/host/C.1234abcd")
    );
    assert_eq!(
        links.flow.as_deref(),
        Some(
            "https://vr.example.org:8889/app/index.html?org_id=root#/collected/C.1234abcd/F.CQ2R1"
        )
    );
    assert_eq!(
        links.hunt.as_deref(),
        Some("https://vr.example.org:8889/app/index.html?org_id=root#/hunts/H.77AB")
    );
    // The channel messages carry the same links.
    let on_all = on_channel(&js, "critical", 3).await;
    let h_on_all = on_all
        .iter()
        .find(|a| a.id == "h1")
        .expect("h1 on critical");
    assert_eq!(h_on_all.links.as_ref(), Some(links));

    let p = records.iter().find(|r| r.id == "p1").expect("p1 recorded");
    assert_eq!(
        p.routed_to.as_deref(),
        Some(&[][..]),
        "recorded, routed nowhere"
    );
    // Its own org; the server's page (Velociraptor's `server` client).
    assert_eq!(
        p.links.as_ref().and_then(|l| l.host.as_deref()),
        Some("https://vr.example.org:8889/app/index.html?org_id=O42#/host/server")
    );
    assert_eq!(p.links.as_ref().and_then(|l| l.flow.as_deref()), None);
    enrich.stop().await.unwrap();
}
