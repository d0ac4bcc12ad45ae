//! The Velociraptor artifacts of deploy/velociraptor parse as artifact
//! YAML and name the queue, the URL paths and the token they must.

use serde_norway::Value;

const FORWARDER: &str =
    include_str!("../../deploy/velociraptor/Server.Monitor.TalonForwarder.yaml");
const EVENT_FORWARDER: &str =
    include_str!("../../deploy/velociraptor/Server.Monitor.TalonEventForwarder.yaml");

/// The artifact as YAML, with the checks every artifact passes: its name,
/// SERVER_EVENT, parameters with names, one source with a query. Returns
/// the query.
fn artifact(text: &str, name: &str) -> (Value, String) {
    let doc: Value = serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(doc["name"].as_str(), Some(name));
    assert_eq!(doc["type"].as_str(), Some("SERVER_EVENT"));
    assert!(doc["description"].as_str().is_some_and(|d| !d.is_empty()));
    let params = doc["parameters"].as_sequence().expect("parameters");
    for p in params {
        assert!(
            p["name"].as_str().is_some(),
            "{name}: a parameter without a name"
        );
    }
    let sources = doc["sources"].as_sequence().expect("sources");
    assert_eq!(sources.len(), 1);
    let query = sources[0]["query"].as_str().expect("a query").to_owned();
    (doc, query)
}

fn parameter<'d>(doc: &'d Value, name: &str) -> &'d Value {
    doc["parameters"]
        .as_sequence()
        .and_then(|ps| ps.iter().find(|p| p["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("no parameter {name}"))
}

fn common(doc: &Value, query: &str) {
    assert_eq!(
        parameter(doc, "TalonURL")["default"].as_str(),
        Some("http://127.0.0.1:8470"),
        "ingest's default http_listen"
    );
    assert_eq!(
        parameter(doc, "TokenMetadataKey")["default"].as_str(),
        Some("TalonIngestToken")
    );
    for needle in [
        "server_metadata()",
        "field=TokenMetadataKey",
        "\"Bearer \" + Token",
        "method=\"POST\"",
        "`Content-Type`=\"application/json\"",
        "`Idempotency-Key`=Key",
        "range(start=1, end=MaxAttempts + 1",
        "sleep(time=RetryDelay * Attempt)",
        "serialize(format=\"json\"",
    ] {
        assert!(query.contains(needle), "the query lacks {needle:?}");
    }
    // Balanced brackets: a cheap guard against a broken edit of the VQL.
    for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
        assert_eq!(
            query.matches(open).count(),
            query.matches(close).count(),
            "{open}{close} unbalanced"
        );
    }
}

#[test]
fn the_alert_forwarder_watches_server_internal_alerts_and_posts_to_v1_alerts() {
    let (doc, query) = artifact(FORWARDER, "Server.Monitor.TalonForwarder");
    common(&doc, &query);
    assert!(query.contains(&format!(
        "watch_monitoring(artifact=\"{}\")",
        talon_proto::names::SUBJECT_ALERTS
    )));
    assert!(query.contains("TalonURL + \"/v1/alerts\""));
    for column in [
        "client_id=client_id",
        "name=name",
        "timestamp=timestamp",
        "event_data=event_data",
        "artifact=artifact",
        "artifact_type=artifact_type",
        "flow_id=flow_id",
    ] {
        assert!(query.contains(column), "the row sent lacks {column}");
    }
}

#[test]
fn the_event_forwarder_posts_each_listed_artifact_to_v1_events() {
    let (doc, query) = artifact(EVENT_FORWARDER, "Server.Monitor.TalonEventForwarder");
    common(&doc, &query);
    assert!(query.contains("TalonURL + \"/v1/events/\" + Artifact"));
    assert!(query.contains("watch_monitoring(artifact=Artifact)"));
    assert!(query.contains("row=Artifacts"));
    assert!(
        query.contains("dict(ClientId=_value.ClientId || \"server\")"),
        "each row carries its client id"
    );
    let artifacts = parameter(&doc, "Artifacts");
    assert_eq!(artifacts["type"].as_str(), Some("csv"));
    let listed: Vec<&str> = artifacts["default"]
        .as_str()
        .unwrap()
        .lines()
        .map(str::trim)
        .collect();
    assert_eq!(
        listed[0], "Artifact",
        "the csv header is the column the query uses"
    );
    // The default list is what the example rules watch.
    let example = talon_kit::Config::parse(
        include_str!("../../deploy/talon.example.toml"),
        &talon_kit::Env::default(),
    )
    .expect("the example config parses");
    for rule in example
        .rules
        .iter()
        .filter(|r| r.watch != "Custom.Client.Detections")
    {
        assert!(
            listed.contains(&rule.watch.as_str()),
            "{} is watched by rule {} but not forwarded",
            rule.watch,
            rule.name
        );
    }
    for artifact in &listed[1..] {
        assert!(talon_proto::names::is_artifact_name(artifact), "{artifact}");
    }
}

const CLIENT_ERRORS: &str =
    include_str!("../../deploy/velociraptor/Server.Monitor.TalonClientEventErrors.yaml");
const FAILED_LOGONS: &str =
    include_str!("../../deploy/velociraptor/Windows.Events.FailedLogons.yaml");

/// The example config's rule called `name`.
fn example_rule(name: &str) -> talon_kit::config::RuleConfig {
    talon_kit::Config::parse(
        include_str!("../../deploy/talon.example.toml"),
        &talon_kit::Env::default(),
    )
    .expect("the example config parses")
    .rules
    .into_iter()
    .find(|r| r.name == name)
    .unwrap_or_else(|| panic!("the example has rule {name}"))
}

/// Every column the rule reads (`where`, `by`, `alert.fields`) is one the
/// query selects (`AS <Column>`), the first part of a dotted path included;
/// `ClientId` is added to every row by the event forwarder.
fn reads_only_selected_columns(rule: &talon_kit::config::RuleConfig, query: &str) {
    let columns = rule
        .r#where
        .keys()
        .chain(&rule.by)
        .chain(&rule.alert.fields);
    for column in columns.filter(|c| *c != "ClientId") {
        let top = column.split('.').next().unwrap();
        assert!(
            query.contains(&format!("AS {top},")) || query.contains(&format!("AS {top}\n")),
            "rule {} reads {column}, which the artifact does not select",
            rule.name
        );
    }
}

#[test]
fn the_client_errors_artifact_reads_every_monitored_log_and_selects_what_the_rule_reads() {
    let (doc, query) = artifact(CLIENT_ERRORS, "Server.Monitor.TalonClientEventErrors");
    for needle in [
        "get_client_monitoring().artifacts.specs",
        "get_client_monitoring().label_events",
        "FROM clients()",
        "monitoring_logs(client_id=ClientId, artifact=Artifact",
        "WHERE level =~ Levels",
        "clock(period=Period)",
        "Since=Unix - Period - Overlap",
    ] {
        assert!(query.contains(needle), "the query lacks {needle:?}");
    }
    assert_eq!(parameter(&doc, "Period")["default"].as_str(), Some("300"));
    assert_eq!(
        parameter(&doc, "Levels")["default"].as_str(),
        Some("(?i)^error$")
    );
    reads_only_selected_columns(
        &example_rule("Server.Monitor.ClientEventQueryErrors"),
        &query,
    );
}

#[test]
fn the_failed_logons_artifact_is_a_client_event_of_4625_with_the_columns_the_rule_reads() {
    let doc: Value = serde_norway::from_str(FAILED_LOGONS).unwrap();
    assert_eq!(doc["name"].as_str(), Some("Windows.Events.FailedLogons"));
    assert_eq!(doc["type"].as_str(), Some("CLIENT_EVENT"));
    let query = doc["sources"][0]["query"].as_str().unwrap();
    assert!(query.contains("FROM watch_evtx(filename=SecurityLog)"));
    assert!(query.contains("WHERE System.EventID.Value = 4625"));
    let rule = example_rule("Server.Monitor.FailedLogonBurst");
    assert_eq!(rule.watch, "Windows.Events.FailedLogons");
    reads_only_selected_columns(&rule, query);
}

/// The README's rules (its one TOML block of `[[rules]]`) load as written.
#[test]
fn the_readme_rules_load() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n[[rules]]").expect("a rules block") + "```toml\n".len();
    let block = &readme[start..];
    let block = &block[..block.find("```").expect("the block ends")];
    let config = talon_kit::Config::parse(
        &format!("[ingest]\nhttp_listen = \"127.0.0.1:0\"\n{block}"),
        &talon_kit::Env::default(),
    )
    .unwrap_or_else(|e| panic!("the README's rules: {e}"));
    let kinds: Vec<String> = config
        .rules
        .iter()
        .map(|r| format!("{:?}", r.kind).to_lowercase())
        .collect();
    assert_eq!(kinds, ["threshold", "firstseen", "absent"]);
}
