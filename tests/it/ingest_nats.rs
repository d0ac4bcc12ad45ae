//! ingest end to end through a real nats-server: Velociraptor's row, the
//! bad-input table, SIGKILL in the middle of a run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use talon_proto::key::alert_id_from_stream;
use talon_proto::names::{STREAM_ACCEPTED, STREAM_DLQ, SUBJECT_ALERTS};
use talon_proto::{Alert, DeadLetter};
use talon_tests::*;

const ROW: &str = r#"{"client_id":"server","name":"TestAlert","timestamp":"2020-10-07T20:43:08Z","event_data":{"field":"Field1"},"artifact":"EventTest.Alert","artifact_type":"SERVER_MONITORING","_ts":1602103388,"_Source":"VelociraptorServer"}"#;

const INGEST: &str = "[ingest]\nhttp_listen = \"127.0.0.1:0\"\nmax_body_bytes = 32768\n";

async fn publish(js: &jetstream::Context, payload: Vec<u8>) -> u64 {
    js.publish(SUBJECT_ALERTS, payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack")
        .sequence
}

#[tokio::test]
async fn velociraptor_row_is_accepted_with_every_field() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, Default::default()).await;
    let js = jetstream::new(nats.client().await);

    let seq = publish(&js, ROW.as_bytes().to_vec()).await;
    let got = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        1,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject.as_str(), "talon.alerts.accepted.0");
    let alert: Alert = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!(alert.id, alert_id_from_stream("ALERTS", seq));
    assert_eq!(alert.name, "TestAlert");
    assert_eq!(alert.source, "nats");
    assert_eq!(alert.client_id.as_deref(), Some("server"));
    assert_eq!(alert.artifact.as_deref(), Some("EventTest.Alert"));
    assert_eq!(alert.artifact_type.as_deref(), Some("SERVER_MONITORING"));
    assert_eq!(alert.event_data["field"], "Field1");
    assert_eq!(json(&got[0])["timestamp"], "2020-10-07T20:43:08Z");
    assert_eq!(alert.dedup_seconds, 0);
    let msg_id = got[0]
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .unwrap();
    assert_eq!(msg_id.as_str(), alert.id, "Nats-Msg-Id is the alert id");
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn producer_msg_id_gives_the_id_and_a_redelivered_input_no_second_copy() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, Default::default()).await;
    let js = jetstream::new(nats.client().await);
    for _ in 0..2 {
        // The same producer id twice: JetStream keeps one input.
        js.send_publish(
            SUBJECT_ALERTS,
            jetstream::message::PublishMessage::build()
                .payload(r#"{"name":"dup","dedup":-1}"#.into())
                .message_id("producer-1"),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    publish(&js, br#"{"name":"skip","condition":false}"#.to_vec()).await;
    publish(&js, br#"{"name":"after"}"#.to_vec()).await;
    let got = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        3,
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    let names: Vec<String> = got
        .iter()
        .map(|m| json(m)["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["dup", "after"], "condition:false is not forwarded");
    let dup: Alert = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!(dup.id, talon_proto::key::alert_id_from_msg_id("producer-1"));
    assert_eq!(dup.dedup_seconds, -1);
    ingest.stop().await.unwrap();
}

/// (payload, a piece of the reason it must be dead-lettered with)
fn bad_inputs() -> Vec<(Vec<u8>, &'static str)> {
    let deep = format!(
        r#"{{"name":"deep","event_data":{{"x":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let s = |t: &str| t.as_bytes().to_vec();
    vec![
        (s("hello"), "not JSON"),
        (s(r#"{"name":"a""#), "not JSON"),
        (s(""), "not JSON"),
        (
            s(r#"[{"name":"a"}]"#),
            "must be a JSON object, got an array",
        ),
        (s(r#""alert""#), "must be a JSON object, got a string"),
        (s("42"), "must be a JSON object, got an integer"),
        (s("null"), "must be a JSON object, got null"),
        (s("true"), "must be a JSON object, got a boolean"),
        (s(r#"{"event_data":{}}"#), "`name` is missing"),
        (s(r#"{"name":null}"#), "`name` is missing"),
        (s(r#"{"name":""}"#), "`name` is empty"),
        (s(r#"{"name":"   "}"#), "`name` is empty"),
        (
            s(r#"{"name":5}"#),
            "`name` must be a non-empty string, got an integer",
        ),
        (
            s(r#"{"name":["a"]}"#),
            "`name` must be a non-empty string, got an array",
        ),
        (
            s(r#"{"name":"a","event_data":[1]}"#),
            "`event_data` must be an object, got an array",
        ),
        (
            s(r#"{"name":"a","event_data":"x"}"#),
            "`event_data` must be an object, got a string",
        ),
        (
            s(r#"{"name":"a","timestamp":"yesterday"}"#),
            "is not RFC 3339",
        ),
        (
            s(r#"{"name":"a","timestamp":true}"#),
            "`timestamp` must be RFC 3339 text or epoch seconds",
        ),
        (s(r#"{"name":"a","timestamp":1e300}"#), "out of range"),
        (
            s(r#"{"name":"a","timestamp":"2020-10-07 20:43:08Z"}"#),
            "expected `T`",
        ),
        (
            s(r#"{"name":"a","dedup":1.5}"#),
            "`dedup` must be an integer number of seconds, got a number with a fraction",
        ),
        (
            s(r#"{"name":"a","dedup":"300"}"#),
            "`dedup` must be an integer number of seconds, got a string",
        ),
        (
            s(r#"{"name":"a","condition":"false"}"#),
            "`condition` must be a boolean",
        ),
        (
            s(r#"{"name":"a","client_id":7}"#),
            "`client_id` must be a string",
        ),
        (
            s(r#"{"name":"a","artifact":{}}"#),
            "`artifact` must be a string",
        ),
        (
            s(r#"{"name":"a","flow_id":[]}"#),
            "`flow_id` must be a string",
        ),
        (s(r#"{"name":"a","org_id":1}"#), "`org_id` must be a string"),
        (
            s(r#"{"name":"a","artifact_type":false}"#),
            "`artifact_type` must be a string",
        ),
        (
            format!(r#"{{"name":"{}"}}"#, "x".repeat(40_000)).into_bytes(),
            "over the limit of 32768 bytes",
        ),
        (
            b"{\"name\":\"caf\xe9\"}".to_vec(),
            "not valid UTF-8 (first bad byte at offset 12)",
        ),
        (deep.into_bytes(), "recursion limit exceeded"),
        (s("\u{feff}{\"name\":\"bom\"}"), "not JSON"),
    ]
}

#[tokio::test]
async fn bad_inputs_are_dead_lettered_with_their_reason_and_good_input_still_flows() {
    let nats = NatsServer::start().await;
    let ingest = start_ingest(&nats, INGEST, Default::default()).await;
    let js = jetstream::new(nats.client().await);

    let table = bad_inputs();
    assert!(table.len() >= 25);
    let mut expected = BTreeMap::new();
    for (payload, reason) in &table {
        let seq = publish(&js, payload.clone()).await;
        expected.insert(seq, (payload.clone(), *reason));
    }
    publish(&js, ROW.as_bytes().to_vec()).await;

    let letters = collect(
        &js,
        STREAM_DLQ,
        "talon.dlq.ingest",
        table.len() + 1,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(
        letters.len(),
        table.len(),
        "one dead letter per bad input, no more"
    );
    let mut reasons = BTreeSet::new();
    for m in &letters {
        let letter: DeadLetter = serde_json::from_slice(&m.payload).unwrap();
        let seq = letter.stream_seq.expect("stream_seq recorded");
        let (payload, reason) = &expected[&seq];
        assert_eq!(letter.stage, "ingest");
        assert_eq!(letter.subject, SUBJECT_ALERTS);
        assert!(
            letter.reason.contains(reason),
            "input {seq}: {:?} lacks {reason:?}",
            letter.reason
        );
        assert_eq!(
            &letter.raw_bytes().unwrap(),
            payload,
            "raw bytes kept for input {seq}"
        );
        assert_eq!(letter.raw.is_none(), std::str::from_utf8(payload).is_err());
        reasons.insert(letter.reason.clone());
    }
    assert!(
        reasons.len() >= 25,
        "each bad input has its own reason: {reasons:#?}"
    );

    let good = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        1,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(good.len(), 1, "the service keeps serving good input");
    assert_eq!(json(&good[0])["name"], "TestAlert");
    ingest.stop().await.unwrap();
}

#[tokio::test]
async fn sigkill_in_the_middle_of_5000_alerts_loses_and_doubles_nothing() {
    const N: usize = 5000;
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("talon.toml");
    std::fs::write(
        &config,
        test_config_text(
            &nats,
            "[ingest]\nhttp_listen = \"127.0.0.1:0\"\npartitions = 4\n",
        ),
    )
    .unwrap();
    let mut ingest = ServiceProcess::spawn("talon-ingest", &config, &[]);
    ingest.ready_addr(Duration::from_secs(60)).await;
    let js = jetstream::new(nats.client().await);

    let mut expected_ids = BTreeSet::new();
    let mut acks = Vec::with_capacity(N);
    for i in 0..N {
        let row = format!(r#"{{"name":"alert-{}","event_data":{{"i":{i}}}}}"#, i % 97);
        acks.push(
            js.publish(SUBJECT_ALERTS, row.into_bytes().into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        expected_ids.insert(alert_id_from_stream("ALERTS", ack.await.unwrap().sequence));
    }
    // Kill it while it works through the backlog.
    wait_for_messages(&js, STREAM_ACCEPTED, 500, Duration::from_secs(60))
        .await
        .unwrap();
    ingest.kill9();
    let at_kill = stream_messages(&js, STREAM_ACCEPTED).await;
    assert!(
        (at_kill as usize) < N,
        "killed after the run ended ({at_kill}); nothing was tested"
    );

    let mut ingest = ServiceProcess::spawn("talon-ingest", &config, &[]);
    wait_for_messages(&js, STREAM_ACCEPTED, N as u64, Duration::from_secs(120))
        .await
        .unwrap();
    // Let a redelivery (ack wait 30 s) have its chance to double something.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let got = collect(
        &js,
        STREAM_ACCEPTED,
        "talon.alerts.accepted.*",
        N + 1,
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    let mut ids = BTreeSet::new();
    for m in &got {
        let alert: Alert = serde_json::from_slice(&m.payload).unwrap();
        assert!(ids.insert(alert.id.clone()), "{} delivered twice", alert.id);
        let key_partition = talon_proto::partition_of(&alert.name, 4);
        assert_eq!(
            m.subject.as_str(),
            format!("talon.alerts.accepted.{key_partition}")
        );
    }
    assert_eq!(got.len(), N, "every alert exactly once");
    assert_eq!(ids, expected_ids, "none missing, none invented");
    assert_eq!(
        ingest
            .terminate(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0),
        "SIGTERM exits 0"
    );
}
