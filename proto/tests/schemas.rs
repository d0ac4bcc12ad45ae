#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The JSON Schemas in `proto/schemas/` against the Rust types they document.
//!
//! - What the types serialize validates against its schema.
//! - The raw-alert schema and `RawAlert::from_value` agree on every row of
//!   the table: a producer can check a row with the schema alone.
//! - For `Alert` and `DeadLetter` the schema is at most as lenient as serde:
//!   whatever the schema accepts, the type deserializes. The tables record
//!   where serde is more lenient than the schema.
//! - `known_gaps` pins the few places where the two cannot agree.
//! - The group schema refers to the alert schema for its whole alerts; its
//!   validator finds it in a registry, as a receiver's would.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use jsonschema::Validator;
use serde_json::{json, Value};
use talon_proto::group::{Builder, GroupValue};
use talon_proto::key::{alert_id_from_stream, dedup_key};
use talon_proto::names::{Stage, SUBJECT_ALERTS};
use talon_proto::{
    Alert, ClientInfo, ContextEntry, DeadLetter, DedupInfo, DedupKeyField, GroupMessage, Links,
    RawAlert,
};

const RAW_ALERT: &str = include_str!("../schemas/raw-alert.schema.json");
const ALERT: &str = include_str!("../schemas/alert.schema.json");
const DEAD_LETTER: &str = include_str!("../schemas/dead-letter.schema.json");
const GROUP: &str = include_str!("../schemas/group.schema.json");

/// The alert schema's `$id`, which the group schema refers to.
const ALERT_ID: &str = "https://talon.dev/schemas/alert.json";

/// Velociraptor's own `Server.Internal.Alerts` row.
const VELOCIRAPTOR_ROW: &str = r#"{"client_id":"server","name":"TestAlert","timestamp":"2020-10-07T20:43:08Z","event_data":{"field":"Field1"},"artifact":"EventTest.Alert","artifact_type":"SERVER_MONITORING","_ts":1602103388,"_Source":"VelociraptorServer"}"#;

fn schema_value(text: &str) -> Value {
    serde_json::from_str(text).expect("the schema files are JSON: checked by every test")
}

/// A draft 2020-12 validator that also asserts `format` (`date-time`).
fn compile(text: &str) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema_value(text))
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

static RAW_ALERT_SCHEMA: LazyLock<Validator> = LazyLock::new(|| compile(RAW_ALERT));
static ALERT_SCHEMA: LazyLock<Validator> = LazyLock::new(|| compile(ALERT));
static DEAD_LETTER_SCHEMA: LazyLock<Validator> = LazyLock::new(|| compile(DEAD_LETTER));

/// The schemas another one may refer to, by `$id`.
static REGISTRY: LazyLock<jsonschema::Registry<'static>> = LazyLock::new(|| {
    jsonschema::Registry::new()
        .add(ALERT_ID, schema_value(ALERT))
        .and_then(|r| r.prepare())
        .unwrap_or_else(|e| panic!("the registry of talon's schemas: {e}"))
});

static GROUP_SCHEMA: LazyLock<Validator> = LazyLock::new(|| {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .with_registry(&REGISTRY)
        .build(&schema_value(GROUP))
        .unwrap_or_else(|e| panic!("group schema does not compile: {e}"))
});

fn check(schema: &Validator, instance: &Value, expect_valid: bool) {
    let errors: Vec<String> = schema
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    match (errors.is_empty(), expect_valid) {
        (true, true) | (false, false) => {}
        (false, true) => panic!(
            "{instance}\nshould be valid, but:\n  {}",
            errors.join("\n  ")
        ),
        (true, false) => panic!("{instance}\nshould be invalid, but the schema accepts it"),
    }
}

fn time(s: &str) -> DateTime<Utc> {
    s.parse().expect("test times are RFC 3339")
}

/// An `Alert` as ingest makes it from a raw alert read from `ALERTS`.
fn ingested(raw: RawAlert, seq: u64, received_at: DateTime<Utc>) -> Alert {
    raw.into_alert(
        alert_id_from_stream("ALERTS", seq),
        received_at,
        "nats".into(),
    )
}

fn velociraptor_alert() -> Alert {
    let raw = RawAlert::parse(VELOCIRAPTOR_ROW.as_bytes(), 1 << 20)
        .expect("Velociraptor's row is a valid raw alert");
    ingested(raw, 42, time("2020-10-07T20:43:09.123456789Z"))
}

/// Serializes `value`, checks it against `schema` and that it reads back equal.
fn check_round_trip<T>(schema: &Validator, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(value).expect("talon's types serialize");
    check(schema, &json, true);
    let back: T = serde_json::from_value(json).expect("what serializes deserializes");
    assert_eq!(&back, value);
}

#[test]
fn schemas_are_draft_2020_12_and_document_every_property() {
    fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        if prop.get("description").and_then(Value::as_str).is_none() {
                            out.push(format!("{path}/properties/{name}"));
                        }
                    }
                }
                for (k, v) in map {
                    undocumented(v, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    undocumented(v, &format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    for (file, text, id) in [
        (
            "raw-alert",
            RAW_ALERT,
            "https://talon.dev/schemas/raw-alert.json",
        ),
        ("alert", ALERT, "https://talon.dev/schemas/alert.json"),
        (
            "dead-letter",
            DEAD_LETTER,
            "https://talon.dev/schemas/dead-letter.json",
        ),
        ("group", GROUP, "https://talon.dev/schemas/group.json"),
    ] {
        let schema = schema_value(text);
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{file}: not a valid draft 2020-12 schema: {e}");
        }
        assert_eq!(schema["$id"], id, "{file}");
        for key in ["title", "description"] {
            assert!(schema[key].is_string(), "{file}: no {key}");
        }
        let mut missing = Vec::new();
        undocumented(&schema, "#", &mut missing);
        assert!(missing.is_empty(), "{file}: undocumented {missing:?}");
    }
}

#[test]
fn velociraptor_row_is_a_valid_raw_alert() {
    let row: Value = serde_json::from_str(VELOCIRAPTOR_ROW).unwrap();
    check(&RAW_ALERT_SCHEMA, &row, true);
    let raw = RawAlert::from_value(row).expect("RawAlert accepts Velociraptor's row");
    assert_eq!(raw.name, "TestAlert");
}

#[test]
fn alert_as_ingest_makes_it_is_valid() {
    let alert = velociraptor_alert();
    check_round_trip(&ALERT_SCHEMA, &alert);
    // And from a row with only a name: no optional field, no timestamp.
    let bare = RawAlert::from_value(json!({"name": "Bare"})).unwrap();
    check_round_trip(&ALERT_SCHEMA, &ingested(bare, 1, Utc::now()));
}

#[test]
fn alert_with_every_later_stage_field_is_valid() {
    let mut alert = velociraptor_alert();
    alert.source = "rule:suspicious-process".into();
    alert.org_id = Some("root".into());
    alert.flow_id = Some("F.CHOH3NDSFJ0P2".into());
    alert.dedup_seconds = -1;
    let key = dedup_key(&alert, &[DedupKeyField::Name, DedupKeyField::ClientId]);
    alert.dedup = Some(DedupInfo {
        key,
        window_start: alert.received_at,
        window_end: alert.received_at + chrono::Duration::seconds(300),
        suppressed_before: 17,
    });
    alert.severity = Some("high".into());
    alert.context = Some(vec![
        ContextEntry {
            key: "name".into(),
            value: "TestAlert".into(),
        },
        ContextEntry {
            key: "event_data.field".into(),
            value: "Field1".into(),
        },
    ]);
    alert.client = Some(ClientInfo {
        client_id: Some("C.1234abcd".into()),
        hostname: Some("ws-17".into()),
        fqdn: Some("ws-17.corp.example".into()),
        os: Some("windows".into()),
        labels: vec!["finance".into(), "vip".into()],
    });
    alert.channel = Some("slack-secops".into());
    check_round_trip(&ALERT_SCHEMA, &alert);

    alert.client = Some(ClientInfo::default());
    alert.context = Some(Vec::new());
    check_round_trip(&ALERT_SCHEMA, &alert);
}

#[test]
fn dead_letters_are_valid() {
    let text = DeadLetter::new(
        Stage::Ingest,
        "`name` is missing",
        SUBJECT_ALERTS,
        Some(7),
        br#"{"timestamp":1}"#,
    );
    assert!(text.raw.is_some() && text.raw_base64.is_none());
    check_round_trip(&DEAD_LETTER_SCHEMA, &text);

    for bytes in [
        &[0xff][..],
        &[0xff, 0xfe],
        &[0xff, 0xfe, b'a'],
        b"\x80{}\xc3",
    ] {
        let bin = DeadLetter::new(Stage::Ingest, "not UTF-8", "http:/v1/alerts", None, bytes);
        assert!(bin.raw.is_none() && bin.raw_base64.is_some());
        check_round_trip(&DEAD_LETTER_SCHEMA, &bin);
    }

    let mut notify = DeadLetter::new(
        Stage::Notify,
        "HTTP 400",
        "Server.Monitor.Alerts.pd",
        Some(9),
        b"{}",
    );
    notify.alert_id = Some(alert_id_from_stream("ALERTS", 42));
    notify.channel = Some("pd".into());
    notify.headers.insert("Nats-Msg-Id".into(), "abc".into());
    check_round_trip(&DEAD_LETTER_SCHEMA, &notify);
}

/// A group message as notify builds it: `alerts` of a channel grouped by
/// name, listing at most `listed`.
fn group_of(alerts: Vec<Alert>, listed: usize, digest: Option<&str>) -> GroupMessage {
    let mut b = Builder::new(
        "email-soc",
        "6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f",
        vec![GroupValue {
            field: "name".into(),
            value: "TestAlert".into(),
        }],
        1,
        digest.map(str::to_owned),
        listed,
    );
    for a in alerts {
        b.push(a);
    }
    b.finish()
}

/// Alerts of a group: from the server, from known and unknown clients, with
/// and without severity and links.
fn group_alerts(n: u64) -> Vec<Alert> {
    (0..n)
        .map(|i| {
            let mut a = velociraptor_alert();
            a.id = alert_id_from_stream("ALERTS", i);
            a.timestamp += chrono::Duration::seconds(i as i64);
            if i % 3 > 0 {
                a.client_id = Some(format!("C.{i}"));
                a.severity = Some(if i % 2 == 0 { "high" } else { "low" }.into());
            }
            if i % 3 == 1 {
                a.client = Some(ClientInfo {
                    client_id: a.client_id.clone(),
                    hostname: Some(format!("ws-{i}")),
                    ..ClientInfo::default()
                });
                a.links = Some(Links {
                    host: Some(format!("https://vr.example.org/app/index.html#/host/C.{i}")),
                    ..Links::default()
                });
            }
            a
        })
        .collect()
}

#[test]
fn group_messages_are_valid() {
    check_round_trip(&GROUP_SCHEMA, &group_of(group_alerts(1), 100, None));
    check_round_trip(&GROUP_SCHEMA, &group_of(group_alerts(50), 10, None));
    let mut digest = group_of(group_alerts(7), 100, Some("daily 08:00 Europe/Berlin"));
    digest.group.clear();
    digest.sequence = u64::MAX;
    check_round_trip(&GROUP_SCHEMA, &digest);
    // Listing none still carries the counts and the ids.
    check_round_trip(&GROUP_SCHEMA, &group_of(group_alerts(3), 0, None));
}

/// `serde` says whether `GroupMessage` deserializes the instance, as for
/// the alert schema.
#[test]
fn group_schema_refuses_bad_group_messages() {
    let good = serde_json::to_value(group_of(group_alerts(12), 5, None)).unwrap();
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let row = |extra: (&str, Value)| {
        let mut row = good["rows"][0].clone();
        row[extra.0] = extra.1;
        with("rows", json!([row]))
    };
    let mut bad_alert = good["alerts"][0].clone();
    bad_alert["source"] = json!("email");
    // (instance, valid by the schema, deserialized by serde)
    let table: Vec<(Value, bool, bool)> = vec![
        (good.clone(), true, true),
        (with("digest", json!("hourly")), true, true),
        (with("group", json!([])), true, true),
        (with("alerts", json!([])), true, true),
        (with("rows", json!([])), true, true),
        (
            row(("link", json!("https://vr.example.org/#/host/C.1"))),
            true,
            true,
        ),
        // Refused by both.
        (with("unknown", json!(1)), false, false),
        (without("type"), false, false),
        (without("group_key"), false, false),
        (without("alert_ids"), false, false),
        (without("first_at"), false, false),
        (with("first_at", json!("yesterday")), false, false),
        (with("sequence", json!(-1)), false, false),
        (with("count", json!(1.5)), false, false),
        (with("group", json!([{"field": "name"}])), false, false),
        (
            with("by_client", json!([{"value": "ws-1", "count": "3"}])),
            false,
            false,
        ),
        (row(("ip", json!("10.0.0.1"))), false, false),
        (row(("timestamp", json!(1602103388))), false, false),
        (with("alerts", json!([{"id": "x"}])), false, false),
        // Refused by the schema only: `type`, the key's form, the bounds
        // and the whole alerts' `source` are not types in Rust; serde
        // reads null as `None`.
        (with("type", json!("alert")), false, true),
        (with("group_key", json!("6F1C")), false, true),
        (with("sequence", json!(0)), false, true),
        (with("count", json!(10_001)), false, true),
        (
            with("by_client", json!([{"value": "ws-1", "count": 0}])),
            false,
            true,
        ),
        (with("alerts", json!([bad_alert])), false, true),
        (
            with(
                "alerts",
                json!([
                    good["alerts"][0],
                    good["alerts"][0],
                    good["alerts"][0],
                    good["alerts"][0]
                ]),
            ),
            false,
            true,
        ),
        (with("digest", json!(null)), false, true),
    ];
    for (instance, valid, deserializes) in &table {
        check(&GROUP_SCHEMA, instance, *valid);
        let read = serde_json::from_value::<GroupMessage>(instance.clone());
        assert_eq!(
            read.is_ok(),
            *deserializes,
            "{instance}: serde says {read:?}"
        );
    }
}

/// Rows on which the raw-alert schema and `RawAlert::from_value` must agree.
#[test]
fn raw_alert_schema_and_parser_agree() {
    let table: &[(Value, bool)] = &[
        // Accepted.
        (json!({"name": "a"}), true),
        (json!({"name": " a "}), true),
        (json!({"name": "a", "dedup": -1}), true),
        (json!({"name": "a", "dedup": 0, "condition": false}), true),
        (json!({"name": "a", "dedup": i64::MIN}), true),
        (json!({"name": "a", "dedup": i64::MAX}), true),
        (json!({"name": "a", "timestamp": 1602103388}), true),
        (json!({"name": "a", "timestamp": 1602103388.5}), true),
        (json!({"name": "a", "timestamp": -1.5}), true),
        (
            json!({"name": "a", "timestamp": "2020-10-07T20:43:08.123456789+02:00"}),
            true,
        ),
        (
            json!({"name": "a", "timestamp": "2020-10-07t20:43:08z"}),
            true,
        ),
        (
            json!({"name": "a", "timestamp": "2016-12-31T23:59:60Z"}),
            true,
        ),
        (
            json!({"name": "a", "timestamp": null, "event_data": null}),
            true,
        ),
        (
            json!({"name": "a", "flow_id": null, "client_id": "", "unknown": [1]}),
            true,
        ),
        (json!({"name": "a", "_ts": "anything", "_Source": 5}), true),
        (
            json!({"name": "a", "event_data": {"nested": {"deep": [1, null]}}}),
            true,
        ),
        // Epoch seconds of years 0000 to 9999, at both ends.
        (json!({"name": "a", "timestamp": -62_167_219_200_i64}), true),
        (json!({"name": "a", "timestamp": 253_402_300_799_i64}), true),
        (json!({"name": "a", "timestamp": 253_402_300_799.5}), true),
        // Refused.
        (json!({}), false),
        (json!({"name": null}), false),
        (json!({"name": ""}), false),
        (json!({"name": " \t\n"}), false),
        (json!({"name": 7}), false),
        (json!({"name": "a", "event_data": []}), false),
        (json!({"name": "a", "event_data": "x"}), false),
        (json!({"name": "a", "dedup": 1.5}), false),
        (json!({"name": "a", "dedup": "300"}), false),
        (
            json!({"name": "a", "dedup": 9_223_372_036_854_775_808_u64}),
            false,
        ),
        (json!({"name": "a", "condition": "no"}), false),
        (json!({"name": "a", "condition": 0}), false),
        (json!({"name": "a", "timestamp": "yesterday"}), false),
        (
            json!({"name": "a", "timestamp": "2020-10-07T20:43:08"}),
            false,
        ),
        (
            json!({"name": "a", "timestamp": "2020-02-30T20:43:08Z"}),
            false,
        ),
        (
            json!({"name": "a", "timestamp": "2020-10-07T20:43:08+24:00"}),
            false,
        ),
        (json!({"name": "a", "timestamp": true}), false),
        (json!({"name": "a", "timestamp": 1e300}), false),
        (json!({"name": "a", "timestamp": -62_167_219_200.5}), false),
        (
            json!({"name": "a", "timestamp": 253_402_300_800_i64}),
            false,
        ),
        (json!({"name": "a", "client_id": {}}), false),
        (json!({"name": "a", "artifact": 1}), false),
        (json!({"name": "a", "org_id": ["x"]}), false),
        (json!({"name": "a", "flow_id": false}), false),
        (json!({"name": "a", "artifact_type": 2.5}), false),
        (json!([]), false),
        (json!([{"name": "a"}]), false),
        (json!("a"), false),
        (json!(null), false),
    ];
    for (row, ok) in table {
        check(&RAW_ALERT_SCHEMA, row, *ok);
        let parsed = RawAlert::from_value(row.clone());
        assert_eq!(parsed.is_ok(), *ok, "{row}: the parser says {parsed:?}");
    }
}

/// `name` is "not only whitespace" to both, whatever the whitespace.
#[test]
fn raw_alert_name_whitespace_agrees_over_the_bmp() {
    for c in ('\0'..='\u{ffff}').filter(|c| !c.is_ascii_alphanumeric()) {
        for name in [c.to_string(), format!(" {c}{c} ")] {
            let row = json!({ "name": name });
            let by_schema = RAW_ALERT_SCHEMA.is_valid(&row);
            let by_parser = RawAlert::from_value(row).is_ok();
            assert_eq!(
                by_schema, by_parser,
                "U+{:04X}: schema {by_schema}, parser {by_parser}",
                c as u32
            );
        }
    }
}

/// `serde` says whether `Alert` deserializes the instance: it never refuses
/// what the schema accepts, and refuses what the schema refuses but where the
/// schema is stricter than the type (`source`).
#[test]
fn alert_schema_refuses_bad_alerts() {
    let good = serde_json::to_value(velociraptor_alert()).unwrap();
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let dedup = |suppressed_before: Value| {
        json!({
            "key": "TestAlert",
            "window_start": "2020-10-07T20:43:09Z",
            "window_end": "2020-10-07T20:48:09Z",
            "suppressed_before": suppressed_before,
        })
    };
    // (instance, valid by the schema, deserialized by serde)
    let table: Vec<(Value, bool, bool)> = vec![
        (good.clone(), true, true),
        (with("source", json!("http")), true, true),
        (with("source", json!("rule:r")), true, true),
        (without("event_data"), true, true),
        (without("dedup_seconds"), true, true),
        (with("dedup", dedup(json!(0))), true, true),
        (with("dedup", dedup(json!(u64::MAX))), true, true),
        (with("client", json!({})), true, true),
        (with("context", json!([])), true, true),
        // Refused by both.
        (with("unknown", json!(1)), false, false),
        (without("id"), false, false),
        (without("received_at"), false, false),
        (without("source"), false, false),
        (without("name"), false, false),
        (without("timestamp"), false, false),
        (with("received_at", json!("yesterday")), false, false),
        (with("timestamp", json!(1602103388)), false, false),
        (with("dedup_seconds", json!(1.5)), false, false),
        (with("dedup", dedup(json!(-1))), false, false),
        (with("dedup", dedup(json!(1.5))), false, false),
        (with("dedup", json!({"key": "k"})), false, false),
        (
            with("context", json!([{"key": "k", "value": 1}])),
            false,
            false,
        ),
        (
            with("context", json!([{"key": "k", "value": "v", "x": 1}])),
            false,
            false,
        ),
        (with("client", json!({"labels": "vip"})), false, false),
        (
            with("client", json!({"hostname": "h", "ip": "10.0.0.1"})),
            false,
            false,
        ),
        (with("event_data", json!([])), false, false),
        (with("severity", json!(3)), false, false),
        // Refused by the schema only: `source` and the optional fields are
        // `String`/`Option` in Rust, and serde reads null as `None`.
        (with("source", json!("email")), false, true),
        (with("source", json!("rule:")), false, true),
        (with("source", json!("nats ")), false, true),
        (with("org_id", json!(null)), false, true),
        (with("dedup", json!(null)), false, true),
    ];
    for (instance, valid, deserializes) in &table {
        check(&ALERT_SCHEMA, instance, *valid);
        let read = serde_json::from_value::<Alert>(instance.clone());
        assert_eq!(
            read.is_ok(),
            *deserializes,
            "{instance}: serde says {read:?}"
        );
    }
}

#[test]
fn dead_letter_schema_refuses_bad_dead_letters() {
    let good = serde_json::to_value(DeadLetter::new(
        Stage::Ingest,
        "`name` is missing",
        SUBJECT_ALERTS,
        Some(7),
        b"{}",
    ))
    .unwrap();
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let base64_only = |b64: &str| {
        let mut v = without("raw");
        v["raw_base64"] = json!(b64);
        v
    };
    // (instance, valid by the schema, deserialized by serde)
    let table: Vec<(Value, bool, bool)> = vec![
        (good.clone(), true, true),
        (without("raw"), true, true),
        (without("stream_seq"), true, true),
        (with("stage", json!("rules")), true, true),
        (with("stage", json!("dedup")), true, true),
        (with("stage", json!("enrich")), true, true),
        (with("stage", json!("notify")), true, true),
        (with("headers", json!({})), true, true),
        (with("stream_seq", json!(u64::MAX)), true, true),
        (base64_only(""), true, true),
        (base64_only("/w=="), true, true),
        (base64_only("//4="), true, true),
        // Refused by both.
        (with("unknown", json!(1)), false, false),
        (without("stage"), false, false),
        (without("reason"), false, false),
        (without("subject"), false, false),
        (without("received_at"), false, false),
        (with("received_at", json!("yesterday")), false, false),
        (with("stream_seq", json!(-1)), false, false),
        (with("headers", json!({"a": 1})), false, false),
        (with("raw", json!([123, 125])), false, false),
        // Refused by the schema only: `stage` and `raw_base64` are `String`
        // in Rust, and nothing stops a record from holding both forms.
        (with("raw_base64", json!("e30=")), false, true),
        (with("stage", json!("bogus")), false, true),
        (with("stage", json!("INGEST")), false, true),
        (base64_only("not base64!"), false, true),
        (base64_only("e30"), false, true),
        (base64_only("e3=0"), false, true),
        (base64_only("e30=\n"), false, true),
        (with("alert_id", json!(null)), false, true),
    ];
    for (instance, valid, deserializes) in &table {
        check(&DEAD_LETTER_SCHEMA, instance, *valid);
        let read = serde_json::from_value::<DeadLetter>(instance.clone());
        assert_eq!(
            read.is_ok(),
            *deserializes,
            "{instance}: serde says {read:?}"
        );
    }
}

/// Where the schemas and the Rust code cannot agree. Each row pins today's
/// behaviour, so a change on either side shows up here.
#[test]
fn known_gaps() {
    // JSON Schema's `integer` is any number with a zero fraction; the parser
    // wants serde_json's i64, which `1.0` and `1e2` are not.
    for row in [
        json!({"name": "a", "dedup": 1.0}),
        json!({"name": "a", "dedup": 1e2}),
    ] {
        check(&RAW_ALERT_SCHEMA, &row, true);
        assert!(RawAlert::from_value(row).is_err());
    }
    // Timestamps that would not serialize back as RFC 3339 (a space for
    // `T`, a leap second, a year outside 0000..=9999) are refused by the
    // parser as the schema refuses them.
    for ts in [
        json!("2020-10-07 20:43:08Z"),
        json!("2020-10-07T20:43:60Z"),
        json!(8_210_266_876_799_i64),
        json!(-62_167_219_201_i64),
    ] {
        let row = json!({"name": "a", "timestamp": ts});
        check(&RAW_ALERT_SCHEMA, &row, false);
        assert!(RawAlert::from_value(row).is_err());
    }
    // RFC 3339 text in year 0000 with a positive offset is year -1 in UTC:
    // the schema cannot see that, the parser refuses it.
    let row = json!({"name": "a", "timestamp": "0000-01-01T00:00:00+01:00"});
    check(&RAW_ALERT_SCHEMA, &row, true);
    assert!(RawAlert::from_value(row).is_err());
    // A group message's counts agree with its lists (`count` is the number
    // of `alert_ids`, `not_listed` is `count` minus the rows): JSON Schema
    // cannot compare two fields, and serde does not check them either.
    let mut group = serde_json::to_value(group_of(group_alerts(4), 2, None)).unwrap();
    group["count"] = json!(9);
    group["not_listed"] = json!(0);
    check(&GROUP_SCHEMA, &group, true);
    assert!(serde_json::from_value::<GroupMessage>(group).is_ok());
}
