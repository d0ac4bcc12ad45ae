//! ingest's HTTP edge end to end: 202 only after the JetStream ack, 401,
//! 413, 415, mixed arrays, NDJSON, and 503 while NATS is down.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::{json, Value};
use talon_kit::Env;
use talon_proto::names::{STREAM_ACCEPTED, STREAM_DLQ};
use talon_proto::DeadLetter;
use talon_tests::*;

const INGEST: &str = "[ingest]\nhttp_listen = \"127.0.0.1:0\"\nmax_body_bytes = 2048\n";

/// Two tokens of at least 24 characters (ingest refuses shorter ones).
const TOK_A: &str = "tok-a-0123456789abcdef01234";
const TOK_B: &str = "tok-b-0123456789abcdef01234";

fn env() -> Env {
    Env::default().with("TALON_INGEST_TOKENS", &format!("{TOK_A}, {TOK_B}"))
}

struct Edge {
    url: String,
    http: reqwest::Client,
}

impl Edge {
    fn new(ingest: &InProcess) -> Edge {
        Edge {
            url: format!("http://{}/v1/alerts", ingest.http_addr),
            http: talon_kit::outbound::client(),
        }
    }

    async fn post(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }
}

const ROW: &str = r#"{"client_id":"server","name":"TestAlert","timestamp":"2020-10-07T20:43:08Z","event_data":{"field":"Field1"},"artifact":"EventTest.Alert","artifact_type":"SERVER_MONITORING","_ts":1602103388,"_Source":"VelociraptorServer"}"#;

#[tokio::test]
async fn one_alert_is_202_with_its_sequence_and_arrives_with_source_http() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, env()).await;
    let edge = Edge::new(&ingest);
    let (status, body) = edge.post(Some(TOK_B), "application/json", ROW).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"][0]["index"], 0);
    assert!(body["accepted"][0]["seq"].as_u64().unwrap() >= 1);
    assert_eq!(body["rejected"], json!([]));

    let js = jetstream::new(nats.client().await);
    let got = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        1,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let alert = json(&got[0]);
    assert_eq!(alert["source"], "http");
    assert_eq!(alert["name"], "TestAlert");
    assert_eq!(alert["event_data"]["field"], "Field1");
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn refusals_401_413_415() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, env()).await;
    let edge = Edge::new(&ingest);

    let (status, body) = edge.post(None, "application/json", ROW).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "missing bearer token")
    );
    let (status, body) = edge.post(Some("tok-c"), "application/json", ROW).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (401, "invalid bearer token")
    );
    let (status, body) = edge.post(Some(TOK_A), "text/plain", ROW).await;
    assert_eq!(status, 415, "{body}");
    let (status, _) = edge.post(Some(TOK_A), "application/xml", ROW).await;
    assert_eq!(status, 415);
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(3000));
    let (status, body) = edge
        .post(Some(TOK_A), "application/json", big.clone())
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("2048"));
    // Without a Content-Length (chunked), the limit still holds.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let (status, _) = edge
        .post(
            Some(TOK_A),
            "application/json",
            reqwest::Body::wrap_stream(stream),
        )
        .await;
    assert_eq!(status, 413);

    // Nothing of the refused requests reached the pipeline.
    let js = jetstream::new(nats.client().await);
    assert_eq!(stream_messages(&js, "ALERTS").await, 0);
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn without_configured_tokens_every_request_is_refused() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(
        &nats,
        INGEST,
        Env::default().with("TALON_INGEST_TOKENS", " , "),
    )
    .await;
    let edge = Edge::new(&ingest);
    for token in [None, Some(""), Some("anything")] {
        let (status, body) = edge.post(token, "application/json", ROW).await;
        assert_eq!(status, 401);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("TALON_INGEST_TOKENS"),
            "{body}"
        );
    }
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn a_mixed_array_and_ndjson_answer_per_item_and_dead_letter_the_bad_ones() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, env()).await;
    let edge = Edge::new(&ingest);
    let js = jetstream::new(nats.client().await);

    let array = json!([{"name": "one"}, {"name": ""}, 7, {"name": "two", "dedup": 60}, {"name": "x", "event_data": []}]);
    let (status, body) = edge
        .post(Some(TOK_A), "application/json", array.to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    let accepted: Vec<u64> = body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["index"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, [0, 3]);
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["reason"], "`name` is empty");
    assert_eq!(
        rejected[1]["reason"],
        "alert must be a JSON object, got an integer"
    );
    assert!(rejected[2]["reason"]
        .as_str()
        .unwrap()
        .contains("event_data"));

    let ndjson = "{\"name\":\"three\"}\n\nnot json\n{\"name\":\"four\"}\n";
    let (status, body) = edge.post(Some(TOK_A), "application/x-ndjson", ndjson).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 2);
    assert_eq!(body["rejected"][0]["index"], 1);

    // All bad: 400, still dead-lettered.
    let (status, body) = edge.post(Some(TOK_A), "application/json", "{oops").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not JSON"));

    let names: Vec<String> = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        4,
        Duration::from_secs(10),
    )
    .await
    .unwrap()
    .iter()
    .map(|m| json(m)["name"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(names, ["one", "two", "three", "four"]);
    // One dead letter per request, holding every rejected item.
    let letters = collect(
        &js,
        STREAM_DLQ,
        "talon.dlq.ingest",
        5,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 3);
    let first: DeadLetter = serde_json::from_slice(&letters[0].payload).unwrap();
    assert_eq!(first.subject, "http:/v1/alerts");
    assert_eq!(
        first.raw.as_deref(),
        Some("{\"name\":\"\"}\n7\n{\"name\":\"x\",\"event_data\":[]}")
    );
    assert!(
        first.reason.starts_with(
            "3 of 5 alerts in one request rejected; item 1: `name` is empty; item 2: alert must be a JSON object"
        ),
        "{}",
        first.reason
    );
    let second: DeadLetter = serde_json::from_slice(&letters[1].payload).unwrap();
    assert_eq!(second.raw.as_deref(), Some("not json"));
    let last: DeadLetter = serde_json::from_slice(&letters[2].payload).unwrap();
    assert_eq!(last.raw.as_deref(), Some("{oops"));
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn more_items_than_max_items_is_413_before_any_is_looked_at() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, &format!("{INGEST}max_items = 3\n"), env()).await;
    let edge = Edge::new(&ingest);
    let js = jetstream::new(nats.client().await);
    let four = json!([{"name": "a"}, {"name": "b"}, {"name": ""}, {"name": "d"}]).to_string();
    let (status, body) = edge.post(Some(TOK_A), "application/json", four).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "the body holds 4 alerts, over max_items (3)");
    let nd = "{\"name\":\"a\"}\n{\"name\":\"b\"}\n\n{\"name\":\"c\"}\n{\"name\":\"d\"}\n";
    let (status, _) = edge.post(Some(TOK_A), "application/x-ndjson", nd).await;
    assert_eq!(status, 413);
    let three = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]).to_string();
    let (status, body) = edge.post(Some(TOK_A), "application/json", three).await;
    assert_eq!(status, 202, "{body}");
    wait_for_messages(&js, STREAM_ACCEPTED, 3, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        stream_messages(&js, STREAM_ACCEPTED).await,
        3,
        "only the accepted request"
    );
    assert_eq!(
        stream_messages(&js, STREAM_DLQ).await,
        0,
        "a refused request is no dead letter"
    );
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn nats_down_is_503_then_202_once_it_is_back() {
    let mut nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, env()).await;
    let edge = Edge::new(&ingest);
    let (status, _) = edge.post(Some(TOK_A), "application/json", ROW).await;
    assert_eq!(status, 202);

    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = edge.post(Some(TOK_A), "application/json", ROW).await;
        if status == 503 {
            assert!(body["error"].as_str().unwrap().contains("NATS"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never 503 while NATS was down (last {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    nats.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let seq = loop {
        let (status, body) = edge.post(Some(TOK_A), "application/json", ROW).await;
        if status == 202 {
            break body["accepted"][0]["seq"].as_u64().unwrap();
        }
        assert_eq!(status, 503, "only 503 while reconnecting: {body}");
        assert!(Instant::now() < deadline, "never 202 after NATS came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        seq >= 2,
        "the stream kept the first alert across the restart"
    );
    let js = jetstream::new(nats.client().await);
    let got = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        2,
        // ingest's pull notices the restart by its missed heartbeats (5 s
        // each) and then pulls again: give it room on a loaded machine.
        Duration::from_secs(45),
    )
    .await
    .unwrap();
    assert!(
        got.len() >= 2,
        "alerts accepted before and after the restart both arrive"
    );
    ingest.stop().await.unwrap();
}
