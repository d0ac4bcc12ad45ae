//! The chat and incident kinds end to end: a real nats-server, notify
//! in-process, alerts published as enrich routes them, and a local HTTP
//! receiver standing in for each service, checking the shape the service
//! documents. Also: Slack's and Discord's 429 with `Retry-After`, and
//! PagerDuty's dedup key across windows and its 400s.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::{json, Value};
use talon_kit::Env;
use talon_proto::{Alert, ClientInfo, ContextEntry, DeadLetter, DedupInfo};
use talon_tests::receiver::{Hit, Receiver, Reply};
use talon_tests::*;

const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";

/// A `[notify]` table and one channel of `kind` posting to `url`.
fn config(kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[notify]\nhttp_listen = \"127.0.0.1:0\"\n\n[[channels]]\nid = \"{kind}-test\"\n\
         kind = \"{kind}\"\nurl = \"{url}\"\nrate_per_minute = 0\n{extra}\n"
    )
}

/// An alert as enrich hands it over, in the window of `key` that starts
/// at `window_start`.
fn enriched(id: &str, key: &str, window_start: &str) -> Alert {
    let mut a = accepted_alert(id, "Honey file opened", 1_790_000_000_000, 0);
    a.client_id = Some("C.1234abcd".into());
    a.flow_id = Some("F.CQ1OF8ME4BN2U".into());
    a.artifact = Some("Linux.Detection.Honeyfiles".into());
    a.severity = Some("critical".into());
    let start = window_start.parse().expect("a time");
    a.dedup = Some(DedupInfo {
        key: key.into(),
        window_start: start,
        window_end: start + chrono::Duration::hours(2),
        suppressed_before: 2,
    });
    a.client = Some(ClientInfo {
        client_id: Some("C.1234abcd".into()),
        hostname: Some("web-01".into()),
        ..Default::default()
    });
    a.context = Some(
        [
            ("FileName", "/home/alice/honey.docx"),
            ("CommandLine", "cat <x> && echo @everyone"),
        ]
        .iter()
        .map(|(k, v)| ContextEntry {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect(),
    );
    a
}

/// Starts notify with one `kind` channel on a receiver answering `script`,
/// publishes `alerts` to it and waits until `accepted` of them were taken.
async fn deliver(
    kind: &str,
    extra: &str,
    env: Env,
    script: Vec<Reply>,
    alerts: &[Alert],
    accepted: usize,
) -> (NatsServer, Receiver, InProcess) {
    let nats = NatsServer::start().await;
    let receiver = Receiver::start(script).await;
    let text = config(kind, &receiver.url(&format!("/{kind}/T0KEN")), extra);
    let notify = start_notify(&nats, &text, env).await;
    let js = jetstream::new(nats.client().await);
    for alert in alerts {
        publish_routed(&js, &format!("{kind}-test"), alert).await;
    }
    if accepted > 0 {
        receiver
            .wait_accepted(accepted, Duration::from_secs(30))
            .await
            .unwrap();
    }
    (nats, receiver, notify)
}

/// [`deliver`] on a pagerduty channel with its routing key in the
/// environment.
async fn deliver_pagerduty(
    script: Vec<Reply>,
    alerts: &[Alert],
    accepted: usize,
) -> (NatsServer, Receiver, InProcess) {
    let env = Env::default().with("PD_ROUTING_KEY", ROUTING_KEY);
    let extra = "routing_key_env = \"PD_ROUTING_KEY\"";
    deliver("pagerduty", extra, env, script, alerts, accepted).await
}

/// The one accepted request, with its body as JSON.
fn only_accepted(receiver: &Receiver) -> (Hit, Value) {
    let hits: Vec<Hit> = receiver
        .hits()
        .into_iter()
        .filter(|h| (200..300).contains(&h.status))
        .collect();
    assert_eq!(hits.len(), 1, "one delivery");
    let hit = hits[0].clone();
    assert_eq!(hit.headers["content-type"], "application/json");
    let body = serde_json::from_slice(&hit.body).expect("a JSON body");
    (hit, body)
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

fn array_of<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"))
}

fn chars(v: &Value, what: &str) -> usize {
    str_of(v, what).chars().count()
}

/// Slack's incoming-webhook message with Block Kit blocks.
fn check_slack(body: &Value) {
    assert!(chars(&body["text"], "text") > 0, "a text fallback");
    let blocks = array_of(&body["blocks"], "blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50, "{body}");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(chars(&blocks[0]["text"]["text"], "header") <= 150);
    for block in blocks {
        match str_of(&block["type"], "block type") {
            "header" => {}
            "section" => {
                if let Some(fields) = block["fields"].as_array() {
                    assert!(fields.len() <= 10);
                    for f in fields {
                        assert_eq!(f["type"], "mrkdwn");
                        assert!(chars(&f["text"], "field") <= 2000);
                    }
                } else {
                    assert_eq!(block["text"]["type"], "mrkdwn");
                    assert!(chars(&block["text"]["text"], "section") <= 3000);
                }
            }
            "context" => assert!(array_of(&block["elements"], "elements").len() <= 10),
            other => panic!("unexpected block type {other}"),
        }
    }
    let all = body.to_string();
    assert!(
        all.contains("web-01") && all.contains("Linux.Detection.Honeyfiles"),
        "{all}"
    );
    assert!(!all.contains("<x>"), "mrkdwn is escaped: {all}");
}

#[tokio::test]
async fn slack_gets_block_kit() {
    let alert = enriched("s1", "Honey file opened", "2026-09-21T10:00:00Z");
    let (_nats, receiver, notify) = deliver(
        "slack",
        "",
        Env::default(),
        vec![Reply::status(200)],
        &[alert],
        1,
    )
    .await;
    let (hit, body) = only_accepted(&receiver);
    assert_eq!(hit.uri, "/slack/T0KEN");
    check_slack(&body);
    assert_eq!(
        body["text"],
        "Alert from client web-01 (critical): Honey file opened"
    );
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn mattermost_gets_text_and_attachments() {
    let extra =
        "channel = \"town-square\"\nusername = \"talon\"\nicon_url = \"https://example.org/t.png\"";
    let alert = enriched("m1", "Honey file opened", "2026-09-21T10:00:00Z");
    let (_nats, receiver, notify) = deliver(
        "mattermost",
        extra,
        Env::default(),
        vec![Reply::status(200)],
        &[alert],
        1,
    )
    .await;
    let (_, body) = only_accepted(&receiver);
    assert!(chars(&body["text"], "text") > 0);
    assert_eq!(body["channel"], "town-square");
    assert_eq!(body["username"], "talon");
    assert_eq!(body["icon_url"], "https://example.org/t.png");
    let attachments = array_of(&body["attachments"], "attachments");
    assert_eq!(attachments.len(), 1);
    let a = &attachments[0];
    assert!(chars(&a["fallback"], "fallback") > 0);
    assert_eq!(a["color"], "#82071e", "critical's colour");
    for f in array_of(&a["fields"], "fields") {
        str_of(&f["title"], "field title");
        str_of(&f["value"], "field value");
        assert!(f["short"].is_boolean());
    }
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn teams_gets_an_adaptive_card() {
    let alert = enriched("t1", "Honey file opened", "2026-09-21T10:00:00Z");
    let (_nats, receiver, notify) = deliver(
        "teams",
        "",
        Env::default(),
        vec![Reply::status(202)],
        &[alert],
        1,
    )
    .await;
    let (hit, body) = only_accepted(&receiver);
    assert!(hit.body.len() < 28 * 1024);
    assert_eq!(body["type"], "message");
    let attachments = array_of(&body["attachments"], "attachments");
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let items = array_of(&card["body"], "card body");
    assert_eq!(items[0]["type"], "TextBlock");
    assert_eq!(
        items[0]["text"],
        "Alert from client web-01 (critical): Honey file opened"
    );
    let fact_sets: Vec<&Value> = items.iter().filter(|i| i["type"] == "FactSet").collect();
    assert!(!fact_sets.is_empty());
    for set in fact_sets {
        for fact in array_of(&set["facts"], "facts") {
            str_of(&fact["title"], "fact title");
            str_of(&fact["value"], "fact value");
        }
    }
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn google_chat_threads_repeats_of_one_key() {
    let key = "Honey file opened | C.1234abcd";
    let alerts = [
        enriched("g1", key, "2026-09-21T10:00:00Z"),
        enriched("g2", key, "2026-09-21T12:00:00Z"),
        enriched("g3", "Another key", "2026-09-21T12:00:00Z"),
    ];
    let (_nats, receiver, notify) = deliver(
        "googlechat",
        "",
        Env::default(),
        vec![Reply::status(200)],
        &alerts,
        3,
    )
    .await;
    let mut keys = Vec::new();
    for hit in receiver.hits() {
        assert_eq!(
            hit.uri,
            "/googlechat/T0KEN?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        );
        let body: Value = serde_json::from_slice(&hit.body).unwrap();
        let cards = array_of(&body["cardsV2"], "cardsV2");
        assert_eq!(cards.len(), 1);
        let card = &cards[0]["card"];
        assert!(chars(&card["header"]["title"], "header title") > 0);
        for section in array_of(&card["sections"], "sections") {
            for widget in array_of(&section["widgets"], "widgets") {
                let w = widget
                    .get("decoratedText")
                    .or_else(|| widget.get("textParagraph"))
                    .unwrap_or_else(|| panic!("unexpected widget {widget}"));
                str_of(&w["text"], "widget text");
            }
        }
        keys.push(str_of(&body["thread"]["threadKey"], "threadKey").to_owned());
    }
    keys.sort();
    assert_eq!(keys, ["Another key", key, key]);
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn discord_gets_an_embed_that_pings_no_one() {
    let extra = "username = \"talon\"\nicon_url = \"https://example.org/t.png\"";
    let alert = enriched("d1", "Honey file opened", "2026-09-21T10:00:00Z");
    let (_nats, receiver, notify) = deliver(
        "discord",
        extra,
        Env::default(),
        vec![Reply::status(204)],
        &[alert],
        1,
    )
    .await;
    let (_, body) = only_accepted(&receiver);
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    assert!(chars(&body["content"], "content") <= 2000);
    assert_eq!(body["username"], "talon");
    assert_eq!(body["avatar_url"], "https://example.org/t.png");
    let embeds = array_of(&body["embeds"], "embeds");
    assert_eq!(embeds.len(), 1);
    let embed = &embeds[0];
    assert_eq!(embed["title"], "Honey file opened");
    assert_eq!(embed["color"], 0x82071e);
    let fields = array_of(&embed["fields"], "fields");
    assert!(!fields.is_empty() && fields.len() <= 25);
    for f in fields {
        assert!((1..=256).contains(&chars(&f["name"], "field name")));
        assert!((1..=1024).contains(&chars(&f["value"], "field value")));
        assert!(f["inline"].is_boolean());
    }
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn pagerduty_gets_a_trigger_event() {
    let alert = enriched("p1", "Honey file opened", "2026-09-21T10:00:00Z");
    let (_nats, receiver, notify) = deliver_pagerduty(vec![Reply::status(202)], &[alert], 1).await;
    let (_, event) = only_accepted(&receiver);
    assert_eq!(event["routing_key"], ROUTING_KEY);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], "Honey file opened");
    let payload = &event["payload"];
    assert!((1..=1024).contains(&chars(&payload["summary"], "summary")));
    assert_eq!(payload["source"], "web-01");
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["timestamp"], "2026-09-21T14:13:20Z");
    assert_eq!(
        payload["custom_details"],
        json!({"FileName": "/home/alice/honey.docx", "CommandLine": "cat <x> && echo @everyone"})
    );
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn pagerduty_sends_one_dedup_key_for_repeats_across_windows() {
    let key = "Honey file opened | C.1234abcd";
    let alerts = [
        enriched("w1", key, "2026-09-21T10:00:00Z"),
        enriched("w2", key, "2026-09-21T12:00:00Z"),
    ];
    let (_nats, receiver, notify) = deliver_pagerduty(vec![Reply::status(202)], &alerts, 2).await;
    let events = receiver.accepted();
    assert_eq!(events.len(), 2, "each window's alert is sent");
    for event in &events {
        assert_eq!(event["dedup_key"], key);
    }
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn a_pagerduty_400_is_dead_lettered() {
    let alert = enriched("bad-pd", "Honey file opened", "2026-09-21T10:00:00Z");
    let (nats, receiver, notify) = deliver_pagerduty(vec![Reply::status(400)], &[alert], 0).await;
    let js = jetstream::new(nats.client().await);
    wait_for_messages(&js, "DLQ", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let letters = collect(&js, "DLQ", "talon.dlq.notify", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let letter: DeadLetter = serde_json::from_slice(&letters[0].payload).unwrap();
    assert_eq!(letter.channel.as_deref(), Some("pagerduty-test"));
    assert_eq!(letter.alert_id.as_deref(), Some("bad-pd"));
    assert!(letter.reason.contains("400"), "{}", letter.reason);
    assert!(!letter.reason.contains("T0KEN"), "the URL is redacted");
    assert_eq!(
        receiver.hits().len(),
        1,
        "a permanent failure is not retried"
    );
    notify.stop().await.unwrap();
}

/// A 429 with `Retry-After: 2` on `kind`: the retry comes no sooner.
async fn honours_retry_after(kind: &str) {
    let alert = enriched("r1", "Honey file opened", "2026-09-21T10:00:00Z");
    let (_nats, receiver, notify) = deliver(
        kind,
        "",
        Env::default(),
        vec![Reply::status(429).retry_after("2"), Reply::status(200)],
        &[alert],
        1,
    )
    .await;
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2, "one 429, one success");
    assert_eq!(hits[0].status, 429);
    assert_eq!(hits[0].body, hits[1].body, "the same message again");
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "{kind}: retried after {gap:?}, before Retry-After"
    );
    notify.stop().await.unwrap();
}

#[tokio::test]
async fn slack_429_retry_after_is_honoured() {
    honours_retry_after("slack").await;
}

#[tokio::test]
async fn discord_429_retry_after_is_honoured() {
    honours_retry_after("discord").await;
}
