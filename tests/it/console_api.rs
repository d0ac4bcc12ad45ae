//! `docs/console-api.yaml` against the console it documents: the routes in
//! the console's source are exactly the spec's paths, and every answer a
//! real console gives here — successes and refusals, on every operation —
//! has a status the spec lists for that operation and a body that
//! validates against the spec's schema for it (the alert itself against
//! `proto/schemas/alert.schema.json`, which the spec references).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_nats::jetstream;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use talon_tests::console::{console_users, password, Console};
use talon_tests::*;

const SPEC: &str = include_str!("../../docs/console-api.yaml");
const ALERT_SCHEMA: &str = include_str!("../../proto/schemas/alert.schema.json");
const ALERT_SCHEMA_ID: &str = "https://talon.dev/schemas/alert.json";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn spec() -> Value {
    serde_norway::from_str(SPEC).expect("docs/console-api.yaml is YAML")
}

/// Every `.route("<path>", …)` in the console's source.
fn source_routes() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../services/console/src");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for part in text.split(".route(").skip(1) {
                let quoted = part.trim_start().strip_prefix('"').expect("a literal path");
                routes.insert(quoted.split('"').next().unwrap().to_owned());
            }
        }
    }
    routes
}

/// The responses of the spec, checked: one validator per (operation,
/// status) with a JSON body, and what was seen.
struct Checker {
    spec: Value,
    registry: jsonschema::Registry<'static>,
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

impl Checker {
    fn new() -> Checker {
        let spec = spec();
        let alert: Value = serde_json::from_str(ALERT_SCHEMA).unwrap();
        let registry = jsonschema::Registry::new()
            .add(ALERT_SCHEMA_ID, alert)
            .expect("the alert schema's id is a URI")
            .prepare()
            .expect("the registry prepares");
        Checker {
            spec,
            registry,
            seen: BTreeMap::new(),
        }
    }

    /// `$ref` to `#/components/...` followed, once.
    fn resolve<'s>(&'s self, v: &'s Value) -> &'s Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) if r.starts_with("#/") => self
                .spec
                .pointer(&r[1..])
                .unwrap_or_else(|| panic!("{r} is not in the spec")),
            _ => v,
        }
    }

    /// Asserts that `status`, `content_type` and `body` are what the spec
    /// says `method path` answers.
    fn check(
        &mut self,
        method: &str,
        path: &str,
        status: StatusCode,
        content_type: &str,
        body: &str,
    ) {
        let op = self
            .spec
            .pointer(&format!(
                "/paths/{}/{method}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .unwrap_or_else(|| panic!("{method} {path} is not in the spec"))
            .clone();
        let code = status.as_u16().to_string();
        let response = op["responses"].get(&code).unwrap_or_else(|| {
            panic!("{method} {path} answered {status}, which the spec does not list: {body}")
        });
        let response = self.resolve(response).clone();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let content = response["content"].get(&media).unwrap_or_else(|| {
            panic!(
                "{method} {path} {status} answered {media:?}, not what the spec says: {}",
                response["content"]
            )
        });
        if media == "application/json" {
            let instance: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {body}"));
            let schema = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.spec["components"],
                "allOf": [content["schema"]],
            });
            let validator = jsonschema::draft202012::options()
                .should_validate_formats(true)
                .with_registry(&self.registry)
                .build(&schema)
                .unwrap_or_else(|e| {
                    panic!("{method} {path} {status}: the schema does not compile: {e}")
                });
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} {status}: {body}\ndoes not match the spec:\n  {}",
                errors.join("\n  ")
            );
        }
        self.seen
            .entry((method.to_owned(), path.to_owned()))
            .or_default()
            .insert(status.as_u16());
    }
}

/// A request and the status it must get: method, the spec's path, the
/// request's path, the session cookie, the body (content type, text).
type Case<'a> = (
    Method,
    &'a str,
    String,
    Option<&'a str>,
    Option<(&'a str, String)>,
    u16,
);

/// One request, as a script would make it: the status, content type and
/// body text.
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<(&str, String)>,
) -> (StatusCode, String, String) {
    let mut r = http.request(method, format!("{base}{path}"));
    if let Some(cookie) = auth {
        r = r.header(reqwest::header::COOKIE, cookie);
    }
    if let Some((content_type, text)) = body {
        r = r
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(text);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // An event stream never ends: its first bytes are enough.
    let text = if content_type.starts_with("text/event-stream") {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, content_type, text)
}

#[test]
fn the_spec_lists_exactly_the_routes_the_console_serves() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
    let mut served = source_routes();
    assert!(served.len() >= 15, "routes found in the source: {served:?}");
    // Every service's health and metrics, served by the kit.
    served.extend(["/healthz", "/readyz", "/metrics"].map(str::to_owned));
    assert_eq!(paths, served, "the spec's paths and the console's routes");
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            assert!(
                op["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|k| k.starts_with('2'))),
                "{method} {path} documents a success"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_console_matches_its_openapi_spec() {
    let nats = NatsServer::start().await;
    let (users, env) = console_users("127.0.0.1:0");
    let text = format!(
        r#"{users}
[enrich]
http_listen = "127.0.0.1:0"
[velociraptor]
gui_url = "https://vr.example.org:8889"
[[channels]]
id = "inbox"
kind = "inbox"
recipients = ".+"
recipient_roles = ".+"
"#
    );
    let enrich = start_enrich(&nats, &text).await;
    let suite = start_notify_and_console(&nats, &text, env).await;
    let js = jetstream::new(nats.client().await);
    for (i, id) in ["s1", "s2", "s3"].into_iter().enumerate() {
        let mut a = accepted_alert(id, "Honey file opened", 1_790_000_000_000 + i as i64, 0);
        a.client_id = Some(format!("C.{i}"));
        a.flow_id = Some("F.1".into());
        a.event_data = json!({"Severity": "high", "FileName": "/home/a/honey.docx"})
            .as_object()
            .cloned()
            .unwrap();
        a.dedup = Some(talon_proto::DedupInfo {
            key: "Honey file opened".into(),
            window_start: a.received_at,
            window_end: a.received_at,
            suppressed_before: 2,
        });
        publish_unique(&js, &a, id).await;
    }
    let alice = Console::login(suite.http_addr, "alice", password("alice"))
        .await
        .unwrap();
    let rita = Console::login(suite.http_addr, "rita", password("rita"))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = alice.get("/v1/alerts").await;
        let (_, inbox) = alice.get("/v1/messages").await;
        if page["counts"]["total"] == 3
            && inbox["messages"].as_array().is_some_and(|m| m.len() == 3)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page} {inbox}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut spec = Checker::new();
    let http = talon_kit::outbound::client();
    let base = format!("http://{}", suite.http_addr);
    let a = alice.cookie.clone().unwrap();
    let r = rita.cookie.clone().unwrap();
    let json_body = |v: Value| Some(("application/json", v.to_string()));
    // (method, spec path, request path, cookie, body)
    let big = "x".repeat(17 * 1024);
    let mut bulk_ids: Vec<String> = (0..500).map(|i| format!("{:0>30}", i)).collect();
    let near_limit = json!({"ids": bulk_ids, "action": "ack"}).to_string();
    assert!(near_limit.len() > 16 * 1024, "{}", near_limit.len());
    bulk_ids.truncate(400);
    let under_limit = json!({"ids": bulk_ids, "action": "ack"}).to_string();
    assert!(under_limit.len() < 16 * 1024);
    let too_many: Vec<String> = (0..501).map(|i| i.to_string()).collect();
    // Two silences: one changed, one expired below.
    let ends = chrono::Utc::now() + chrono::Duration::hours(2);
    let silence = |comment: &str| {
        json!({"matchers": [{"field": "hostname", "op": "=", "value": "scanner-01"}],
               "ends_at": ends, "comment": comment})
    };
    let (status, kept) = alice.post("/v1/silences", Some(silence("kept"))).await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    let (_, ended) = alice.post("/v1/silences", Some(silence("ended"))).await;
    let kept_id = kept["id"].as_str().unwrap().to_owned();
    let ended_id = ended["id"].as_str().unwrap().to_owned();
    let mut edit = silence("kept, longer");
    edit["id"] = kept["id"].clone();
    edit["expected_revision"] = kept["revision"].clone();
    let preview = json!({"matchers": [{"field": "name", "op": "=~", "value": "Honey.*"}]});
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&r),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/silences",
            "/v1/silences?state=active,expired".into(),
            Some(&r),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/silences",
            "/v1/silences?state=gone".into(),
            Some(&r),
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/silences",
            "/v1/silences".into(),
            None,
            None,
            401,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            json_body(silence("new")),
            201,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            json_body(edit.clone()),
            200,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            json_body(edit),
            409,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            json_body(
                json!({"matchers": [{"field": "name", "op": "=~", "value": ".*"}], "ends_at": ends, "comment": "all"}),
            ),
            422,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            json_body(json!({"matchers": []})),
            400,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&r),
            json_body(silence("reader")),
            403,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            Some(("text/plain", "{}".into())),
            415,
        ),
        (
            Method::POST,
            "/v1/silences",
            "/v1/silences".into(),
            Some(&a),
            Some(("application/json", big.clone())),
            413,
        ),
        (
            Method::POST,
            "/v1/silences/preview",
            "/v1/silences/preview".into(),
            Some(&r),
            json_body(preview),
            200,
        ),
        (
            Method::POST,
            "/v1/silences/preview",
            "/v1/silences/preview".into(),
            Some(&r),
            json_body(json!({"matchers": [{"field": "nope", "op": "=", "value": "x"}]})),
            422,
        ),
        (
            Method::POST,
            "/v1/silences/preview",
            "/v1/silences/preview".into(),
            Some(&r),
            json_body(json!({})),
            400,
        ),
        (
            Method::GET,
            "/v1/silences/{id}",
            format!("/v1/silences/{kept_id}"),
            Some(&r),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/silences/{id}",
            format!("/v1/silences/{}", "0".repeat(32)),
            Some(&r),
            None,
            404,
        ),
        (
            Method::POST,
            "/v1/silences/{id}/expire",
            format!("/v1/silences/{ended_id}/expire"),
            Some(&r),
            json_body(json!({})),
            403,
        ),
        (
            Method::POST,
            "/v1/silences/{id}/expire",
            format!("/v1/silences/{ended_id}/expire"),
            Some(&a),
            json_body(json!({})),
            200,
        ),
        (
            Method::POST,
            "/v1/silences/{id}/expire",
            "/v1/silences/x/expire".into(),
            Some(&a),
            json_body(json!({})),
            404,
        ),
        (Method::GET, "/", "/".into(), None, None, 200),
        (Method::GET, "/app.js", "/app.js".into(), None, None, 200),
        (Method::GET, "/app.css", "/app.css".into(), None, None, 200),
        (Method::GET, "/healthz", "/healthz".into(), None, None, 200),
        (Method::GET, "/readyz", "/readyz".into(), None, None, 200),
        (Method::GET, "/metrics", "/metrics".into(), None, None, 200),
        (Method::GET, "/v1/me", "/v1/me".into(), Some(&a), None, 200),
        (Method::GET, "/v1/me", "/v1/me".into(), None, None, 401),
        (
            Method::GET,
            "/v1/users",
            "/v1/users".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/alerts",
            "/v1/alerts".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/alerts",
            "/v1/alerts?limit=1&severity=high&q=honey".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/alerts",
            "/v1/alerts?sevrity=high".into(),
            Some(&a),
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/alerts",
            "/v1/alerts?cursor=18446744073709551615".into(),
            Some(&a),
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/alerts",
            "/v1/alerts".into(),
            None,
            None,
            401,
        ),
        (
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/s3".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/s1".into(),
            Some(&r),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/nope".into(),
            Some(&a),
            None,
            404,
        ),
        (
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/a%0Ab".into(),
            Some(&a),
            None,
            404,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s1/triage".into(),
            Some(&a),
            json_body(json!({"action": "ack", "note": "on it"})),
            200,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s1/triage".into(),
            Some(&a),
            json_body(json!({"action": "resolve", "verdict": "benign", "expected_version": 0})),
            409,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s1/triage".into(),
            Some(&a),
            json_body(json!({"action": "ack"})),
            422,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s1/triage".into(),
            Some(&a),
            json_body(json!({"action": "resolve"})),
            422,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s2/triage".into(),
            Some(&r),
            json_body(json!({"action": "ack"})),
            403,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/nope/triage".into(),
            Some(&a),
            json_body(json!({"action": "ack"})),
            404,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s2/triage".into(),
            Some(&a),
            json_body(json!({"action": "close"})),
            400,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s2/triage".into(),
            Some(&a),
            Some(("text/plain", "{}".into())),
            415,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s2/triage".into(),
            Some(&a),
            json_body(json!({"action": "note", "note": big})),
            413,
        ),
        (
            Method::POST,
            "/v1/alerts/{id}/triage",
            "/v1/alerts/s2/triage".into(),
            None,
            json_body(json!({"action": "ack"})),
            401,
        ),
        (
            Method::POST,
            "/v1/alerts/triage",
            "/v1/alerts/triage".into(),
            Some(&a),
            json_body(
                json!({"ids": ["s2", "s3", "nope", "s1"], "action": "resolve", "verdict": "true_positive"}),
            ),
            200,
        ),
        (
            Method::POST,
            "/v1/alerts/triage",
            "/v1/alerts/triage".into(),
            Some(&a),
            Some(("application/json", under_limit)),
            200,
        ),
        (
            Method::POST,
            "/v1/alerts/triage",
            "/v1/alerts/triage".into(),
            Some(&a),
            Some(("application/json", near_limit)),
            413,
        ),
        (
            Method::POST,
            "/v1/alerts/triage",
            "/v1/alerts/triage".into(),
            Some(&a),
            json_body(json!({"ids": too_many, "action": "ack"})),
            400,
        ),
        (
            Method::POST,
            "/v1/alerts/triage",
            "/v1/alerts/triage".into(),
            Some(&a),
            json_body(json!({"ids": [], "action": "ack"})),
            400,
        ),
        (
            Method::POST,
            "/v1/alerts/triage",
            "/v1/alerts/triage".into(),
            Some(&r),
            json_body(json!({"ids": ["s1"], "action": "reopen"})),
            403,
        ),
        (
            Method::GET,
            "/v1/alerts/{id}",
            "/v1/alerts/s1".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/messages",
            "/v1/messages?limit=2".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/messages",
            "/v1/messages?before=-1".into(),
            Some(&a),
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/messages",
            "/v1/messages".into(),
            None,
            None,
            401,
        ),
        (
            Method::POST,
            "/v1/messages/read",
            "/v1/messages/read".into(),
            Some(&a),
            json_body(json!({"up_to": u64::MAX})),
            200,
        ),
        (
            Method::POST,
            "/v1/messages/read",
            "/v1/messages/read".into(),
            Some(&a),
            json_body(json!({"up_to": -1})),
            400,
        ),
        (
            Method::POST,
            "/v1/messages/clear",
            "/v1/messages/clear".into(),
            Some(&r),
            json_body(json!({"up_to": 2})),
            200,
        ),
        (
            Method::GET,
            "/v1/events",
            "/v1/events".into(),
            Some(&a),
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/events",
            "/v1/events".into(),
            None,
            None,
            401,
        ),
        (
            Method::POST,
            "/v1/login",
            "/v1/login".into(),
            None,
            json_body(json!({"name": "bob", "password": "wrong"})),
            401,
        ),
        (
            Method::POST,
            "/v1/login",
            "/v1/login".into(),
            None,
            json_body(json!({"name": "bob", "password": password("bob")})),
            200,
        ),
        (
            Method::POST,
            "/v1/login",
            "/v1/login".into(),
            None,
            json_body(json!({"name": "bob", "pw": "x"})),
            400,
        ),
        (
            Method::POST,
            "/v1/login",
            "/v1/login".into(),
            None,
            Some(("text/plain", "{}".into())),
            415,
        ),
        (
            Method::POST,
            "/v1/logout",
            "/v1/logout".into(),
            Some(&r),
            json_body(json!({})),
            200,
        ),
    ];
    for (method, template, path, cookie, body, expected) in cases {
        let (status, content_type, text) =
            call(&http, &base, method.clone(), &path, cookie, body).await;
        assert_eq!(status.as_u16(), expected, "{method} {path}: {text}");
        spec.check(
            &method.as_str().to_lowercase(),
            template,
            status,
            &content_type,
            &text,
        );
    }
    // The bulk resolve reached s1 (acknowledged before) as well.
    let (_, s1) = alice.get("/v1/alerts/s1").await;
    assert_eq!(s1["triage"]["verdict"], "true_positive", "{s1}");
    let (_, s3) = alice.get("/v1/alerts/s3").await;
    assert_eq!(s3["repeat_of"]["id"], "s2", "{s3}");

    // Cross-site writes, as a browser on another site would send them.
    let (status, content_type, text) = {
        let resp = http
            .post(format!("{base}/v1/messages/read"))
            .header("cookie", &a)
            .header("origin", "https://evil.example")
            .json(&json!({"up_to": 1}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        (status, ct, resp.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::FORBIDDEN);
    spec.check("post", "/v1/messages/read", status, &content_type, &text);

    // Every operation of the spec was exercised, each with a success.
    for (path, item) in spec.spec["paths"].as_object().unwrap().clone() {
        for method in item.as_object().unwrap().keys() {
            let statuses = spec.seen.get(&(method.clone(), path.clone()));
            assert!(
                statuses.is_some_and(|s| s.iter().any(|c| (200..300).contains(c))),
                "{method} {path} never answered a success here: {statuses:?}"
            );
        }
    }
    suite.stop().await.unwrap();
    enrich.stop().await.unwrap();
}
