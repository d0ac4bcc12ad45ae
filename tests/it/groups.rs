//! Grouping and digests end to end, against a real nats-server, a real
//! SMTP server and real HTTP receivers: a storm of one rule on 500 clients
//! becomes one message per channel; two notify replicas, one SIGKILLed
//! mid-group, still count every alert once; a daily digest fires once per
//! schedule across a restart (its time from a clock the test moves).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde_json::Value;
use talon_kit::config::{ChannelConfig, ChannelKind};
use talon_kit::Env;
use talon_notify::channels::webhook::Webhook;
use talon_notify::groups::{Clock, Groups};
use talon_notify::ledger::Ledger;
use talon_notify::metrics::Metrics;
use talon_notify::worker::{Channel, Sender, Shared};
use talon_proto::Alert;
use talon_tests::receiver::{Receiver, Reply};
use talon_tests::smtp::SmtpServer;
use talon_tests::*;

/// An alert of rule `name` on client `C.<client>`, as enrich routes it.
fn storm_alert(id: &str, name: &str, client: usize) -> Alert {
    let mut a = accepted_alert(id, name, 1_790_000_000_000 + client as i64, 0);
    a.client_id = Some(format!("C.{client:04}"));
    a.severity = Some(
        if client.is_multiple_of(10) {
            "critical"
        } else {
            "high"
        }
        .into(),
    );
    a
}

/// The group messages a receiver accepted, as JSON.
fn group_messages(hook: &Receiver) -> Vec<Value> {
    hook.accepted()
        .into_iter()
        .filter(|b| b["type"] == "group")
        .collect()
}

/// Every alert id of `messages`, with the number of messages naming it.
fn counted(messages: &[Value]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for m in messages {
        for id in m["alert_ids"].as_array().expect("alert_ids") {
            *ids.entry(id.as_str().expect("an id").to_owned())
                .or_default() += 1;
        }
    }
    ids
}

#[tokio::test]
async fn a_storm_on_500_clients_is_one_mail_one_slack_message_and_one_hook_post() {
    const N: usize = 500;
    let nats = NatsServer::start().await;
    let smtp = SmtpServer::started().await;
    let slack = Receiver::start(vec![]).await;
    let hook = Receiver::start(vec![]).await;
    let grouped = "group_by = [\"name\"]\ngroup_wait = 5\ngroup_interval = 25\nrate_per_minute = 0";
    let config = format!(
        "[notify]\nhttp_listen = \"127.0.0.1:0\"\n[console]\npublic_url = \"https://talon.example.org\"\n\n\
         [[channels]]\nid = \"mail\"\nkind = \"email\"\nsecret = \"smtp\"\nrecipients = [\"soc@example.org\"]\n{grouped}\n\n\
         [[channels]]\nid = \"slack\"\nkind = \"slack\"\nurl = \"{}\"\n{grouped}\n\n\
         [[channels]]\nid = \"hook\"\nkind = \"webhook\"\nurl = \"{}\"\n{grouped}\n\n{}",
        slack.url("/slack"),
        hook.url("/hook"),
        smtp.secret_toml("smtp"),
    );
    let notify = start_notify(&nats, &config, Env::default()).await;
    let js = jetstream::new(nats.client().await);
    for i in 0..N {
        let alert = storm_alert(&format!("s{i:04}"), "Sigma: Mimikatz Use", i);
        for channel in ["mail", "slack", "hook"] {
            publish_routed(&js, channel, &alert).await;
        }
    }
    let mail = smtp.wait_for_messages(1, Duration::from_secs(60)).await;
    slack
        .wait_accepted(1, Duration::from_secs(60))
        .await
        .unwrap();
    hook.wait_accepted(1, Duration::from_secs(60))
        .await
        .unwrap();
    // group_wait has passed for all of them: nothing more comes.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mail = if mail.len() == 1 {
        smtp.messages()
    } else {
        mail
    };
    let (mails, posts, hooks) = (mail.len(), slack.accepted().len(), group_messages(&hook));
    println!(
        "storm of {N}: {mails} mail, {posts} Slack message, {} web hook post",
        hooks.len()
    );
    assert_eq!((mails, posts, hooks.len()), (1, 1, 1));
    let ids = counted(&hooks);
    assert_eq!(ids.len(), N, "every alert in the one message");
    assert!(ids.values().all(|n| *n == 1));
    assert_eq!(hooks[0]["count"], N);
    let subject = mail[0].header("Subject").join(" ");
    assert!(subject.contains("500"), "{subject}");
    let text = mail[0].part("text/plain").unwrap_or_default();
    assert!(text.contains("500"), "{text}");
    // Each alert links to its page in the console.
    let html = mail[0].part("text/html").unwrap_or_default();
    for id in ["s0000", "s0042"] {
        let link = format!("https://talon.example.org/?alert={id}");
        assert!(html.contains(&link), "{link} in the mail");
    }
    let slack_body = slack.accepted()[0].to_string();
    assert!(slack_body.contains("500"), "{slack_body}");

    // More of the same rule: held until group_interval after the first
    // message, then one message with just the new ones.
    let first_at = hook.hits().last().expect("a hit").at;
    for i in N..N + 20 {
        publish_routed(
            &js,
            "hook",
            &storm_alert(&format!("s{i:04}"), "Sigma: Mimikatz Use", i),
        )
        .await;
    }
    hook.wait_accepted(2, Duration::from_secs(60))
        .await
        .unwrap();
    let second = group_messages(&hook);
    let gap = hook.hits().last().expect("a hit").at - first_at;
    println!(
        "then 20 more: a second message {gap:?} after the first, with {}",
        second[1]["count"]
    );
    assert!(
        gap >= Duration::from_secs(20),
        "{gap:?}: before group_interval"
    );
    assert_eq!(second[1]["count"], 20);
    assert_eq!(second[1]["sequence"], 2);
    assert_eq!(second[1]["group_key"], second[0]["group_key"]);
    assert_eq!(counted(&second).len(), N + 20);
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_one_killed_mid_group_count_every_alert_once() {
    const N: usize = 600;
    let nats = NatsServer::start().await;
    let hook = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    // group_interval beyond the ack wait: what the killed replica had
    // pulled comes back within one interval.
    let channel = format!(
        "[notify]\nhttp_listen = \"127.0.0.1:0\"\n\n[[channels]]\nid = \"hook\"\nkind = \"webhook\"\n\
         url = \"{}\"\nrate_per_minute = 0\nmax_in_flight = 8\ngroup_by = [\"name\"]\ngroup_wait = 5\ngroup_interval = 40\n",
        hook.url("/hook")
    );
    std::fs::write(&config, test_config_text(&nats, &channel)).unwrap();
    let mut a = ServiceProcess::spawn("talon-notify", &config, &[]);
    let mut b = ServiceProcess::spawn("talon-notify", &config, &[]);
    a.ready_addr(Duration::from_secs(60)).await;
    b.ready_addr(Duration::from_secs(60)).await;
    let js = jetstream::new(nats.client().await);
    let names = ["Rule A", "Rule B", "Rule C"];
    for i in 0..N {
        if i == N / 3 {
            // Mid-group: both replicas are taking alerts in.
            a.kill9();
        }
        let alert = storm_alert(&format!("k{i:04}"), names[i % 3], i);
        publish_routed(&js, "hook", &alert).await;
    }
    // Every group's first message, then whatever the killed replica held
    // (redelivered after the ack wait) in at most one more per group.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ids = counted(&group_messages(&hook));
        if ids.len() >= N || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages = group_messages(&hook);
    let ids = counted(&messages);
    let twice = ids.values().filter(|n| **n > 1).count();
    let mut per_group: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in &messages {
        per_group
            .entry(m["group"][0]["value"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["count"].as_u64().unwrap());
    }
    println!(
        "{N} alerts, 3 groups, replica killed after {}: {} messages {per_group:?}; {} alerts counted, {twice} twice, {} missing",
        N / 3,
        messages.len(),
        ids.len(),
        N - ids.len().min(N)
    );
    assert_eq!(ids.len(), N, "every alert counted");
    assert_eq!(twice, 0, "no alert counted twice");
    assert_eq!(per_group.len(), 3);
    for (group, counts) in &per_group {
        assert!(
            (1..=2).contains(&counts.len()),
            "{group}: one message, and one more at most for the redelivered: {counts:?}"
        );
    }
    // No (group, sequence) sent twice.
    let sent: BTreeSet<(String, u64)> = messages
        .iter()
        .map(|m| {
            (
                m["group_key"].as_str().unwrap().to_owned(),
                m["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sent.len(), messages.len());
    drop(b);
}

/// A clock the test moves.
struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    fn set(&self, at: &str) {
        *self.0.lock().unwrap() = at.parse().unwrap();
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A digest channel's groups over `hook`, as replica `replica` opens them.
async fn digest_groups(
    js: &jetstream::Context,
    hook: &Receiver,
    clock: Arc<TestClock>,
    replica: &str,
) -> Groups {
    in_process_groups(js, hook, clock, replica, |c| {
        c.digest = Some("daily 08:00 Europe/Berlin".into());
    })
    .await
}

/// Channel `digest` (a web hook to `hook`, as `edit` makes it), its groups
/// opened in this process by replica `replica`.
async fn in_process_groups(
    js: &jetstream::Context,
    hook: &Receiver,
    clock: Arc<TestClock>,
    replica: &str,
    edit: impl FnOnce(&mut ChannelConfig),
) -> Groups {
    let ledger = Ledger::open(js, 1, Duration::from_secs(3 * 86_400), replica.into())
        .await
        .unwrap();
    let shared = Arc::new(Shared {
        js: js.clone(),
        ledger,
        held: Default::default(),
        metrics: Metrics::new(&prometheus::Registry::new()).unwrap(),
        topology: 1.into(),
    });
    let mut config = ChannelConfig::new("digest", ChannelKind::Webhook);
    edit(&mut config);
    let webhook = Webhook::new(hook.url("/digest"), Default::default(), None).unwrap();
    let channel = Arc::new(Channel::new(
        "digest".into(),
        Sender::Webhook(webhook),
        4,
        0,
        Duration::from_secs(86_400),
    ));
    Groups::open(
        shared,
        channel,
        config.grouping().unwrap(),
        clock,
        replica.into(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_daily_digest_fires_once_per_schedule_across_restarts() {
    let nats = NatsServer::start().await;
    let js = jetstream::new(nats.client().await);
    // The first try fails: the digest is retried, not sent twice.
    let hook = Receiver::start(vec![Reply::status(503), Reply::status(200)]).await;
    let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
    clock.set("2026-12-04T09:00:00Z");
    let groups = digest_groups(&js, &hook, clock.clone(), "r1").await;
    for i in 0..3 {
        let a = storm_alert(&format!("d{i}"), &format!("Rule {i}"), i);
        groups
            .add(&a, serde_json::to_vec(&a).unwrap().into())
            .await
            .unwrap();
    }
    // Again, as a redelivery would: stored once.
    let a = storm_alert("d0", "Rule 0", 0);
    groups
        .add(&a, serde_json::to_vec(&a).unwrap().into())
        .await
        .unwrap();
    // Whatever else lands on the group's subject is skipped, not sent.
    let config = {
        let mut c = ChannelConfig::new("digest", ChannelKind::Webhook);
        c.digest = Some("daily 08:00 Europe/Berlin".into());
        c
    };
    let (key, _) = talon_notify::groups::group_of(&config.grouping().unwrap(), "digest", &a);
    for junk in [&b"not json"[..], b"{\"id\": 7}", b""] {
        js.publish(format!("talon.groups.digest.{key}"), junk.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(groups.tick().await.unwrap(), 0, "not before 08:00 Berlin");
    clock.set("2026-12-05T06:59:59Z");
    assert_eq!(groups.tick().await.unwrap(), 0);
    clock.set("2026-12-05T07:00:00Z");
    assert_eq!(groups.tick().await.unwrap(), 0, "503: retried later");
    assert_eq!(hook.hits().len(), 1);
    // A restart (another replica, say) while the digest waits for its retry.
    drop(groups);
    let groups = digest_groups(&js, &hook, clock.clone(), "r2").await;
    clock.set("2026-12-05T07:00:00.500Z");
    assert_eq!(
        groups.tick().await.unwrap(),
        0,
        "the retry's wait (0.8 s at least) is kept"
    );
    // The lease of the first try runs out, then the retry goes.
    clock.set("2026-12-05T07:02:00Z");
    assert_eq!(groups.tick().await.unwrap(), 1);
    assert_eq!(groups.tick().await.unwrap(), 0);
    let sent = group_messages(&hook);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["count"], 3);
    assert_eq!(sent[0]["digest"], "daily 08:00 Europe/Berlin");
    // Restarted again after the digest: nothing is sent again.
    drop(groups);
    let groups = digest_groups(&js, &hook, clock.clone(), "r3").await;
    clock.set("2026-12-05T07:30:00Z");
    assert_eq!(groups.tick().await.unwrap(), 0);
    // The next day's digest holds only what came since.
    let a = storm_alert("d9", "Rule 9", 9);
    groups
        .add(&a, serde_json::to_vec(&a).unwrap().into())
        .await
        .unwrap();
    clock.set("2026-12-06T06:59:00Z");
    assert_eq!(groups.tick().await.unwrap(), 0);
    clock.set("2026-12-06T07:00:05Z");
    assert_eq!(groups.tick().await.unwrap(), 1);
    let sent = group_messages(&hook);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["alert_ids"], serde_json::json!(["d9"]));
    assert_eq!(sent[1]["sequence"], 2);
    println!(
        "digest: {} sends tried, {} accepted ({} and {} alerts)",
        hook.hits().len(),
        sent.len(),
        sent[0]["count"],
        sent[1]["count"]
    );
}

#[tokio::test]
async fn a_group_message_refused_for_good_dead_letters_each_of_its_alerts() {
    let nats = NatsServer::start().await;
    let js = jetstream::new(nats.client().await);
    let hook = Receiver::start(vec![Reply::status(400)]).await;
    let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
    clock.set("2026-12-05T10:00:00Z");
    let groups = in_process_groups(&js, &hook, clock.clone(), "r1", |c| {
        c.group_by = Some(vec!["name".into()]);
        c.group_wait = 0;
    })
    .await;
    for i in 0..5 {
        let a = storm_alert(&format!("x{i}"), "Refused", i);
        groups
            .add(&a, serde_json::to_vec(&a).unwrap().into())
            .await
            .unwrap();
    }
    assert_eq!(groups.tick().await.unwrap(), 1, "given up is finished too");
    assert_eq!(hook.hits().len(), 1, "a 400 is not retried");
    let letters: Vec<talon_proto::DeadLetter> =
        collect_as(&js, "DLQ", "talon.dlq.notify", 10).await;
    let mut ids: Vec<_> = letters.iter().filter_map(|l| l.alert_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["x0", "x1", "x2", "x3", "x4"]);
    for l in &letters {
        assert_eq!(
            l.subject, "Server.Monitor.Alerts.digest",
            "replayed onto its channel"
        );
        assert_eq!(l.channel.as_deref(), Some("digest"));
        assert!(
            l.reason.starts_with("group message 1 not sent: "),
            "{}",
            l.reason
        );
    }
    // Nothing is tried again.
    clock.set("2026-12-05T11:00:00Z");
    assert_eq!(groups.tick().await.unwrap(), 0);
    assert_eq!(hook.hits().len(), 1);
}

#[tokio::test]
async fn an_inbox_gets_one_entry_per_group_message_that_opens_its_alerts() {
    use talon_tests::console::{console_users, password, Console};
    const N: usize = 30;
    let nats = NatsServer::start().await;
    let (users, env) = console_users("127.0.0.1:0");
    let config = format!(
        "{users}\n[[channels]]\nid = \"inbox\"\nkind = \"inbox\"\nrecipients = \"^alice$\"\n\
         recipient_roles = \".*\"\nrate_per_minute = 0\ngroup_by = [\"name\"]\ngroup_wait = 1\n"
    );
    let suite = start_notify_and_console(&nats, &config, env).await;
    let js = jetstream::new(nats.client().await);
    for i in 0..N {
        let mut a = storm_alert(&format!("i{i:03}"), "Honey file opened", i);
        a.routed_to = Some(vec!["inbox".into()]);
        js.send_publish(
            talon_proto::names::SUBJECT_HISTORY,
            jetstream::message::PublishMessage::build()
                .payload(serde_json::to_vec(&a).unwrap().into())
                .message_id(a.id.clone()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        publish_routed(&js, "inbox", &a).await;
    }
    let alice = Console::login(suite.http_addr, "alice", password("alice"))
        .await
        .unwrap_or_else(|(s, b)| panic!("alice logs in: {s} {b}"));
    let page = alice.wait_messages(1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let page = if page["messages"].as_array().unwrap().len() == 1 {
        alice.messages().await
    } else {
        page
    };
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "one entry for the group: {page}");
    let m = &messages[0];
    assert_eq!(m["kind"], "group");
    assert_eq!(m["count"], N);
    assert_eq!(m["read"], false);
    assert_eq!(page["unread"], 1);
    assert!(m["name"].as_str().unwrap().starts_with("30 alerts"), "{m}");
    let group = format!("{}-{}", m["group_key"].as_str().unwrap(), m["sequence"]);
    // The entry opens its alerts.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (status, list) = alice
            .get(&format!("/v1/alerts?group={group}&limit=100"))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{list}");
        if list["counts"]["total"] == N || std::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(listed["counts"]["total"], N, "{listed}");
    // Read like any entry.
    let (status, read) = alice
        .post(
            "/v1/messages/read",
            Some(serde_json::json!({"up_to": m["seq"]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{read}");
    assert_eq!(read["unread"], 0);
    // Another user's inbox holds no such message: nothing is listed.
    let bob = Console::login(suite.http_addr, "bob", password("bob"))
        .await
        .unwrap_or_else(|(s, b)| panic!("bob logs in: {s} {b}"));
    let (status, _) = bob.get(&format!("/v1/alerts?group={group}")).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    let (status, _) = alice.get("/v1/alerts?group=nonsense").await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    suite.stop().await.unwrap();
}
