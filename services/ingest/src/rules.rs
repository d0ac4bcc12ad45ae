//! The pure core of `[[rules]]`: server event artifacts as configuration.
//! A monitoring row from `Monitoring.<watch>` is checked against each rule
//! watching that artifact; a row that passes a rule's `where` becomes a raw
//! alert, as Velociraptor's `alert()` would have put it on
//! `Server.Internal.Alerts`. No I/O here; `monitor.rs` carries it out.

use chrono::{DateTime, SecondsFormat, Utc};
use regex::Regex;
use serde_json::{Map, Value};
use talon_kit::config::{RuleConfig, RuleKind};

use crate::counting::{Kind, Raise};
use talon_kit::template::{self, Client, RenderError, Template, CLIENT_ID_COLUMN};
use talon_proto::names::monitoring_subject;
use talon_proto::ClientInfo;

/// The client id of a row that names no client: Velociraptor's own.
pub const SERVER_CLIENT_ID: &str = talon_kit::inventory::SERVER_CLIENT_ID;
/// Velociraptor's column of the time the server received an event row.
pub const TS_COLUMN: &str = "_ts";
/// `artifact_type` of an alert raised for a client's row.
pub const CLIENT_EVENT: &str = "CLIENT_EVENT";
/// `artifact_type` of an alert raised for a row that names no client.
pub const SERVER_MONITORING: &str = "SERVER_MONITORING";

/// Which columns go into `event_data`.
#[derive(Debug, Clone)]
enum Fields {
    /// These, in this order; a column the row lacks is left out.
    Pick(Vec<String>),
    /// Every column but those whose name matches `exclude`.
    All { exclude: Option<Regex> },
}

/// One rule, compiled: regexes and templates parsed once.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `Monitoring.<watch>`.
    pub subject: String,
    pub watch: String,
    wheres: Vec<(String, Regex)>,
    title: Template,
    dedup: Option<i64>,
    fields: Fields,
    set: Vec<(String, Template)>,
    /// What it counts; `None`: every matching row raises (`kind = "row"`).
    pub kind: Option<Kind>,
    /// The columns forming a stateful rule's key.
    pub by: Vec<String>,
}

/// A matching row as a stateful rule counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// The values of the rule's `by` columns, as JSON text (`[]` when it
    /// has none); a missing column counts as `null`.
    pub key: String,
    /// The row's time (`_ts`, else when JetStream stored it), ms.
    pub at_ms: i64,
    /// The columns the alert shows (`alert.fields`, or all but
    /// `alert.exclude`), cut to [`MAX_SAMPLE_BYTES`].
    pub sample: Value,
}

/// Largest sample row a threshold keeps (its JSON text), and largest row an
/// absent rule keeps for its alert; a bigger one is kept as a note.
pub const MAX_SAMPLE_BYTES: usize = 4096;

/// The extra columns a stateful rule's alert carries (in `event_data`, and
/// to its templates): how many rows, when, and what they were.
pub const COUNT_COLUMN: &str = "Count";
pub const FIRST_ROW_TIME_COLUMN: &str = "FirstRowTime";
pub const LAST_ROW_TIME_COLUMN: &str = "LastRowTime";
pub const SAMPLE_ROWS_COLUMN: &str = "SampleRows";
pub const PREVIOUSLY_SEEN_COLUMN: &str = "PreviouslySeen";
pub const SILENT_SECONDS_COLUMN: &str = "SilentSeconds";

/// Why a rule does not compile (the config loader has checked the same, so
/// this only happens for a config that skipped it).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("rule {rule:?}: {key}: invalid regex {pattern:?}: {source}")]
    Regex {
        rule: String,
        key: String,
        pattern: String,
        source: regex::Error,
    },
    #[error("rule {rule:?}: {key}: bad template {text:?}: {source}")]
    Template {
        rule: String,
        key: String,
        text: String,
        source: template::ParseError,
    },
}

/// Why a matching row raised no alert: the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule {rule:?}: cannot render alert.{key}: {source}")]
    Render {
        rule: String,
        key: String,
        source: RenderError,
    },
}

impl Rule {
    pub fn compile(config: &RuleConfig) -> Result<Rule, CompileError> {
        let regex = |key: String, pattern: &str| {
            Regex::new(pattern).map_err(|source| CompileError::Regex {
                rule: config.name.clone(),
                key,
                pattern: pattern.to_owned(),
                source,
            })
        };
        let template = |key: String, text: &str| {
            Template::parse(text).map_err(|source| CompileError::Template {
                rule: config.name.clone(),
                key,
                text: text.to_owned(),
                source,
            })
        };
        let wheres = config
            .r#where
            .iter()
            .map(|(column, pattern)| {
                Ok((column.clone(), regex(format!("where.{column}"), pattern)?))
            })
            .collect::<Result<_, CompileError>>()?;
        let alert = &config.alert;
        let fields = if alert.all {
            let exclude = alert
                .exclude
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| regex("alert.exclude".into(), p))
                .transpose()?;
            Fields::All { exclude }
        } else {
            Fields::Pick(alert.fields.clone())
        };
        let set = alert
            .set
            .iter()
            .map(|(key, text)| Ok((key.clone(), template(format!("alert.set.{key}"), text)?)))
            .collect::<Result<_, CompileError>>()?;
        Ok(Rule {
            name: config.name.clone(),
            subject: monitoring_subject(&config.watch),
            watch: config.watch.clone(),
            wheres,
            title: template("alert.name".into(), &alert.name)?,
            dedup: alert.dedup,
            fields,
            set,
            kind: kind_of_rule(config),
            by: config.by.clone(),
        })
    }

    /// The row as a stateful rule counts it: `None` when it does not match
    /// (or the rule is a row rule).
    pub fn count(&self, row: &Map<String, Value>, published: DateTime<Utc>) -> Option<Count> {
        if self.kind.is_none() || !self.matches(row) {
            return None;
        }
        let values: Vec<Value> = self
            .by
            .iter()
            .map(|c| template::lookup(row, c).cloned().unwrap_or(Value::Null))
            .collect();
        let at = row_time(row, published);
        // An absent rule's alert is made from the key's last row later:
        // it keeps the whole row, the others only what the alert shows.
        let sample = match self.kind {
            Some(Kind::Absent { .. }) => Value::Object(row.clone()),
            _ => Value::Object(self.columns(row)),
        };
        Some(Count {
            key: Value::Array(values).to_string(),
            at_ms: at.timestamp_millis(),
            sample: cut(sample),
        })
    }

    /// Do the row's columns match every `where` regex? A `where` key is a
    /// column, else a dotted path into one (`Flow.state`). A missing (or
    /// null) column does not match; a non-string value is matched as JSON
    /// text.
    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        self.wheres
            .iter()
            .all(|(column, regex)| match template::lookup(row, column) {
                Err(_) | Ok(Value::Null) => false,
                Ok(Value::String(s)) => regex.is_match(s),
                Ok(other) => regex.is_match(&other.to_string()),
            })
    }

    fn render_error(&self, key: &str, source: RenderError) -> RuleError {
        RuleError::Render {
            rule: self.name.clone(),
            key: key.to_owned(),
            source,
        }
    }

    /// The raw alert this rule raises for `row`, or `None` when the row does
    /// not match. `published` is when JetStream stored the row (the alert's
    /// timestamp when the row has no valid `_ts`); `clients` looks a client
    /// id up in the inventory.
    pub fn evaluate(
        &self,
        row: &Map<String, Value>,
        published: DateTime<Utc>,
        clients: &dyn Fn(&str) -> Option<ClientInfo>,
    ) -> Result<Option<Value>, RuleError> {
        if self.kind.is_some() || !self.matches(row) {
            return Ok(None);
        }
        self.alert(row, published, clients, None).map(Some)
    }

    /// The columns of `row` the alert shows.
    fn columns(&self, row: &Map<String, Value>) -> Map<String, Value> {
        let mut picked = Map::new();
        match &self.fields {
            Fields::Pick(columns) => {
                for column in columns {
                    if let Ok(v) = template::lookup(row, column) {
                        picked.insert(column.clone(), v.clone());
                    }
                }
            }
            Fields::All { exclude } => {
                for (column, v) in row {
                    if !exclude.as_ref().is_some_and(|x| x.is_match(column)) {
                        picked.insert(column.clone(), v.clone());
                    }
                }
            }
        }
        picked
    }

    /// The raw alert for `row`; a stateful rule's `raise` adds its count,
    /// times and samples (to the templates and to `event_data`). `at` is
    /// the alert's time when the row has no valid `_ts`.
    pub fn alert(
        &self,
        row: &Map<String, Value>,
        at: DateTime<Utc>,
        clients: &dyn Fn(&str) -> Option<ClientInfo>,
        raise: Option<(&Raise, DateTime<Utc>)>,
    ) -> Result<Value, RuleError> {
        let extra = raise.map(|(r, now)| raise_columns(self.kind, r, now));
        let with_extra;
        let row = match &extra {
            Some(extra) => {
                let mut r = row.clone();
                r.extend(extra.clone());
                with_extra = r;
                &with_extra
            }
            None => row,
        };
        let client = client_of(row, clients);
        let name = self
            .title
            .render(row, &client)
            .map_err(|e| self.render_error("name", e))?;
        let mut event_data = self.columns(row);
        if let Some(extra) = extra {
            event_data.extend(extra);
        }
        // `set` comes last: no column overrides it.
        for (key, value) in &self.set {
            let v = value
                .render_value(row, &client)
                .map_err(|e| self.render_error(&format!("set.{key}"), e))?;
            event_data.insert(key.clone(), v);
        }
        let timestamp = match (self.kind, raise) {
            // An absence is as of when it was found.
            (Some(Kind::Absent { .. }), Some((_, now))) => now,
            _ => row_time(row, at),
        };
        let (client_id, artifact_type) = match client.id {
            Some(id) if id != SERVER_CLIENT_ID => (id, CLIENT_EVENT),
            _ => (SERVER_CLIENT_ID.to_owned(), SERVER_MONITORING),
        };
        let mut alert = Map::new();
        alert.insert("name".into(), name.into());
        alert.insert(
            "timestamp".into(),
            timestamp
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                .into(),
        );
        alert.insert("client_id".into(), client_id.into());
        alert.insert("artifact".into(), self.watch.clone().into());
        alert.insert("artifact_type".into(), artifact_type.into());
        if let Some(d) = self.dedup {
            alert.insert("dedup".into(), d.into());
        }
        alert.insert("event_data".into(), Value::Object(event_data));
        Ok(Value::Object(alert))
    }
}

/// The row's time: its `_ts` when valid, else `published`.
fn row_time(row: &Map<String, Value>, published: DateTime<Utc>) -> DateTime<Utc> {
    row.get(TS_COLUMN)
        .and_then(|ts| talon_proto::raw::parse_timestamp(ts).ok())
        .unwrap_or(published)
}

fn rfc3339_ms(ms: i64) -> Value {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or(Value::Null, |t| {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true).into()
    })
}

/// The columns a stateful rule's alert adds, found at `now`.
fn raise_columns(kind: Option<Kind>, raise: &Raise, now: DateTime<Utc>) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert(COUNT_COLUMN.into(), raise.count.into());
    extra.insert(FIRST_ROW_TIME_COLUMN.into(), rfc3339_ms(raise.first_ms));
    extra.insert(LAST_ROW_TIME_COLUMN.into(), rfc3339_ms(raise.last_ms));
    match kind {
        Some(Kind::Threshold { .. }) => {
            extra.insert(
                SAMPLE_ROWS_COLUMN.into(),
                Value::Array(raise.samples.clone()),
            );
        }
        Some(Kind::FirstSeen { .. }) => {
            if let Some(previous) = raise.previous_ms {
                extra.insert(PREVIOUSLY_SEEN_COLUMN.into(), rfc3339_ms(previous));
            }
        }
        Some(Kind::Absent { .. }) => {
            let silent = now.timestamp_millis().saturating_sub(raise.last_ms) / 1000;
            extra.insert(SILENT_SECONDS_COLUMN.into(), silent.into());
        }
        None => {}
    }
    extra
}

/// `value`, or a note saying it was too big to keep.
pub fn cut(value: Value) -> Value {
    let size = value.to_string().len();
    if size <= MAX_SAMPLE_BYTES {
        value
    } else {
        serde_json::json!({ "_cut": format!("a row of {size} bytes, over the {MAX_SAMPLE_BYTES} kept") })
    }
}

/// The counting of a rule's config, `None` for `kind = "row"`.
fn kind_of_rule(config: &RuleConfig) -> Option<Kind> {
    let ms = |secs: Option<u64>| {
        i64::try_from(secs.unwrap_or(0))
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    };
    match config.kind {
        RuleKind::Row => None,
        RuleKind::Threshold => Some(Kind::Threshold {
            count: config.count.unwrap_or(1) as usize,
            within_ms: ms(config.within),
            samples: config.samples.unwrap_or(DEFAULT_SAMPLES) as usize,
        }),
        RuleKind::FirstSeen => Some(Kind::FirstSeen {
            lookback_ms: ms(config.lookback),
        }),
        RuleKind::Absent => Some(Kind::Absent {
            after_ms: ms(config.after),
        }),
    }
}

/// Sample rows a threshold alert carries when `samples` is not set.
pub const DEFAULT_SAMPLES: u64 = 5;

/// The row's client (from its `ClientId` column) and what the inventory
/// knows of it.
fn client_of(row: &Map<String, Value>, clients: &dyn Fn(&str) -> Option<ClientInfo>) -> Client {
    let id = row
        .get(CLIENT_ID_COLUMN)
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let info = id.as_deref().and_then(clients);
    Client {
        hostname: info.as_ref().and_then(|i| i.hostname.clone()),
        fqdn: info.and_then(|i| i.fqdn),
        id,
    }
}

/// Every rule of the config, compiled.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// What one rule did with a row.
#[derive(Debug, Clone)]
pub struct Verdict<'r> {
    pub rule: &'r str,
    /// The raw alert, `None` when the row did not match (or the rule has
    /// state).
    pub outcome: Result<Option<Value>, RuleError>,
    /// A stateful rule's matching row: what its key's state is given.
    pub count: Option<(&'r Rule, Count)>,
}

/// A row and what each rule watching its subject made of it.
#[derive(Debug)]
pub struct Evaluated<'r> {
    /// The row (empty when no rule watches the subject: it is not read).
    pub row: Map<String, Value>,
    pub verdicts: Vec<Verdict<'r>>,
}

impl Rules {
    pub fn compile(configs: &[RuleConfig]) -> Result<Rules, CompileError> {
        Ok(Rules {
            rules: configs
                .iter()
                .map(Rule::compile)
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Does any rule count (threshold, first_seen, absent)?
    pub fn with_state(&self) -> bool {
        self.rules.iter().any(|r| r.kind.is_some())
    }

    /// The absent rules.
    pub fn absent(&self) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(|r| matches!(r.kind, Some(Kind::Absent { .. })))
    }

    /// Does any rule read the client inventory?
    pub fn use_clients(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.title.uses_client() || r.set.iter().any(|(_, t)| t.uses_client()))
    }

    /// The row on `subject` (its payload) against every rule watching that
    /// subject, in config order; `Err` when the payload is not a JSON
    /// object (the dead-letter reason).
    pub fn evaluate<'r>(
        &'r self,
        subject: &str,
        payload: &[u8],
        published: DateTime<Utc>,
        clients: &dyn Fn(&str) -> Option<ClientInfo>,
    ) -> Result<Evaluated<'r>, String> {
        let watching: Vec<&Rule> = self.rules.iter().filter(|r| r.subject == subject).collect();
        if watching.is_empty() {
            return Ok(Evaluated {
                row: Map::new(),
                verdicts: Vec::new(),
            });
        }
        let row = serde_json::from_slice::<Value>(payload)
            .map_err(|e| format!("a monitoring row must be a JSON object: {e}"))
            .and_then(row_of)?;
        let verdicts = watching
            .into_iter()
            .map(|rule| Verdict {
                rule: &rule.name,
                outcome: rule.evaluate(&row, published, clients),
                count: rule.count(&row, published).map(|c| (rule, c)),
            })
            .collect();
        Ok(Evaluated { row, verdicts })
    }
}

/// The row a monitoring message holds: a JSON object (the dead-letter
/// reason otherwise).
pub fn row_of(value: Value) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(row) => Ok(row),
        other => Err(format!(
            "a monitoring row must be a JSON object, got {}",
            kind_of(&other)
        )),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PUBLISHED: &str = "2026-01-01T00:00:00Z";

    fn rule(toml: &str) -> Rule {
        let text = format!("[[rules]]\nname = \"R\"\n{toml}\n");
        let config = talon_kit::Config::parse(&text, &talon_kit::Env::default())
            .unwrap_or_else(|e| panic!("{e}"));
        Rule::compile(&config.rules[0]).expect("compiles")
    }

    fn inventory(id: &str) -> Option<ClientInfo> {
        (id == "C.1").then(|| ClientInfo {
            client_id: Some("C.1".into()),
            hostname: Some("web-1".into()),
            fqdn: Some("web-1.example.org".into()),
            os: None,
            labels: vec![],
        })
    }

    /// Evaluates the rule `toml` on `row`; `expected` is the raw alert,
    /// `null` for no match, or the error text.
    fn check(toml: &str, row: Value, expected: Result<Value, &str>) {
        let Value::Object(row) = row else {
            panic!("rows are objects")
        };
        let got = rule(toml)
            .evaluate(&row, PUBLISHED.parse().unwrap(), &inventory)
            .map(|a| a.unwrap_or(Value::Null))
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "{toml}");
    }

    const HONEY: &str = r#"
watch = "Linux.Detection.Honeyfiles"
alert.name = 'Honey file "{FileName}" accessed on {client.hostname}'
alert.dedup = 300
alert.fields = ["FileName", "Pid", "ProcessName"]
alert.set = { ClientId = "{ClientId}", Artifact = "Linux.Detection.Honeyfiles", ArtifactType = "CLIENT_EVENT" }
"#;

    const SIGMA: &str = r#"
watch = "Sigma.Windows.Hayabusa.Monitoring"
where = { Level = "(?i)high|critical" }
alert.name = "{Title}"
alert.dedup = 300
alert.fields = ["Level", "Channel", "EID", "Details"]
"#;

    const ALL: &str = r#"
watch = "Custom.Detections"
alert.name = "Detection {Rule} on {client.hostname}"
alert.all = true
alert.exclude = "^(foo|bar|baz)$"
alert.set = { Severity = "high", Pid = "{Pid}" }
"#;

    #[test]
    fn evaluation() {
        let cases: Vec<(&str, Value, Result<Value, &str>)> = vec![
            // A honey file: name per client and file, the overrides set.
            (
                HONEY,
                json!({"FileName": "/home/a/honey.docx", "Pid": 42, "ProcessName": "cat",
                       "Uid": 0, "ClientId": "C.1", "_ts": 1602103388}),
                Ok(json!({
                    "name": "Honey file \"/home/a/honey.docx\" accessed on web-1",
                    "timestamp": "2020-10-07T20:43:08Z",
                    "client_id": "C.1",
                    "artifact": "Linux.Detection.Honeyfiles",
                    "artifact_type": "CLIENT_EVENT",
                    "dedup": 300,
                    "event_data": {"FileName": "/home/a/honey.docx", "Pid": 42, "ProcessName": "cat",
                                   "Artifact": "Linux.Detection.Honeyfiles",
                                   "ArtifactType": "CLIENT_EVENT", "ClientId": "C.1"},
                })),
            ),
            // An unknown client: its id stands in for the hostname; a
            // missing picked column is left out; no _ts: the stored time.
            (
                HONEY,
                json!({"FileName": "/h", "ClientId": "C.7"}),
                Ok(json!({
                    "name": "Honey file \"/h\" accessed on C.7",
                    "timestamp": PUBLISHED,
                    "client_id": "C.7",
                    "artifact": "Linux.Detection.Honeyfiles",
                    "artifact_type": "CLIENT_EVENT",
                    "dedup": 300,
                    "event_data": {"FileName": "/h", "Artifact": "Linux.Detection.Honeyfiles",
                                   "ArtifactType": "CLIENT_EVENT", "ClientId": "C.7"},
                })),
            ),
            // A template naming a missing column.
            (
                HONEY,
                json!({"Pid": 1, "ClientId": "C.1"}),
                Err("rule \"R\": cannot render alert.name: the row has no column \"FileName\""),
            ),
            (
                HONEY,
                json!({"FileName": "/h"}),
                Err("rule \"R\": cannot render alert.name: the row has no column \"ClientId\""),
            ),
            // Sigma: where on Level; the row names no client.
            (
                SIGMA,
                json!({"Title": "Mimikatz Use", "Level": "critical", "Channel": "Security",
                       "EID": 4688, "Details": {"Cmd": "m.exe"}, "Computer": "dc1"}),
                Ok(json!({
                    "name": "Mimikatz Use",
                    "timestamp": PUBLISHED,
                    "client_id": "server",
                    "artifact": "Sigma.Windows.Hayabusa.Monitoring",
                    "artifact_type": "SERVER_MONITORING",
                    "dedup": 300,
                    "event_data": {"Level": "critical", "Channel": "Security", "EID": 4688,
                                   "Details": {"Cmd": "m.exe"}},
                })),
            ),
            (
                SIGMA,
                json!({"Title": "t", "Level": "HIGH"}),
                Ok(json!({
                    "name": "t", "timestamp": PUBLISHED, "client_id": "server",
                    "artifact": "Sigma.Windows.Hayabusa.Monitoring", "artifact_type": "SERVER_MONITORING",
                    "dedup": 300, "event_data": {"Level": "HIGH"},
                })),
            ),
            (
                SIGMA,
                json!({"Title": "t", "Level": "medium"}),
                Ok(Value::Null),
            ),
            (SIGMA, json!({"Title": "t"}), Ok(Value::Null)),
            (SIGMA, json!({"Title": "t", "Level": null}), Ok(Value::Null)),
            // All columns but the excluded ones; set wins over a column.
            (
                ALL,
                json!({"Rule": "r1", "foo": 1, "bar": 2, "baz": 3, "food": 4, "Severity": "low",
                       "Pid": 9, "ClientId": "C.1"}),
                Ok(json!({
                    "name": "Detection r1 on web-1",
                    "timestamp": PUBLISHED,
                    "client_id": "C.1",
                    "artifact": "Custom.Detections",
                    "artifact_type": "CLIENT_EVENT",
                    "event_data": {"Rule": "r1", "food": 4, "Severity": "high", "Pid": 9,
                                   "ClientId": "C.1"},
                })),
            ),
            (
                ALL,
                json!({"Rule": "r1"}),
                Err("rule \"R\": cannot render alert.name: the row has no column \"ClientId\""),
            ),
            (
                ALL,
                json!({"Rule": "r1", "ClientId": "C.1"}),
                Err("rule \"R\": cannot render alert.set.Pid: the row has no column \"Pid\""),
            ),
        ];
        for (toml, row, expected) in cases {
            check(toml, row, expected);
        }
    }

    #[test]
    fn where_matches_anywhere_and_non_strings_as_json_text() {
        let r = rule("watch = 'W'\nwhere = { EID = '^46(24|25)$', Ok = 'true', Name = 'sh' }\nalert.name = 'x'");
        let row = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        assert!(r.matches(&row(json!({"EID": 4624, "Ok": true, "Name": "bash"}))));
        assert!(!r.matches(&row(json!({"EID": 4688, "Ok": true, "Name": "bash"}))));
        assert!(!r.matches(&row(json!({"EID": "4625", "Ok": false, "Name": "bash"}))));
        assert!(!r.matches(&row(json!({"EID": 4624, "Ok": true}))));
    }

    #[test]
    fn rows_go_to_the_rules_that_watch_their_subject() {
        let config = talon_kit::Config::parse(
            "[[rules]]\nname = 'a'\nwatch = 'X.Y'\nalert.name = '{N}'\n\
             [[rules]]\nname = 'b'\nwatch = 'Z'\nalert.name = 'z'\n\
             [[rules]]\nname = 'c'\nwatch = 'X.Y'\nalert.name = 'c'\n",
            &talon_kit::Env::default(),
        )
        .unwrap();
        let rules = Rules::compile(&config.rules).unwrap();
        assert!(!rules.use_clients());
        let at = PUBLISHED.parse().unwrap();
        let verdicts = rules
            .evaluate("Monitoring.X.Y", br#"{"N": 1}"#, at, &inventory)
            .unwrap()
            .verdicts;
        let names: Vec<(&str, bool)> = verdicts
            .iter()
            .map(|v| (v.rule, matches!(v.outcome, Ok(Some(_)))))
            .collect();
        assert_eq!(names, [("a", true), ("c", true)]);
        assert!(
            rules
                .evaluate("Monitoring.Other", b"not json", at, &inventory)
                .is_ok_and(|v| v.verdicts.is_empty() && v.row.is_empty()),
            "a row no rule watches is not even parsed"
        );
        assert_eq!(
            rules.evaluate("Monitoring.Z", b"[1]", at, &inventory).err(),
            Some("a monitoring row must be a JSON object, got an array".into())
        );
        assert!(rules
            .evaluate("Monitoring.Z", b"{", at, &inventory)
            .unwrap_err()
            .starts_with("a monitoring row must be a JSON object: EOF"));
    }

    #[test]
    fn raised_alerts_are_valid_raw_alerts() {
        let Value::Object(row) = json!({"FileName": "/h", "ClientId": "C.1", "_ts": 1.5}) else {
            unreachable!("an object")
        };
        let alert = rule(HONEY)
            .evaluate(&row, PUBLISHED.parse().unwrap(), &inventory)
            .unwrap()
            .unwrap();
        let raw = talon_proto::RawAlert::from_value(alert).expect("valid");
        assert_eq!(raw.timestamp.unwrap().timestamp_millis(), 1500);
        assert_eq!(raw.dedup, Some(300));
    }

    #[test]
    fn a_stateful_rule_counts_rows_and_its_alert_carries_the_count() {
        let r = rule(
            "watch = 'W'\nkind = 'threshold'\nby = ['ClientId', 'User']\ncount = 2\nwithin = 60\n\
             where = { EventID = '4625' }\nalert.name = '{Count} failed on {client.hostname}'\n\
             alert.fields = ['User']\nalert.set = { ClientId = '{ClientId}' }",
        );
        let published = PUBLISHED.parse().unwrap();
        let Value::Object(row) =
            json!({"ClientId": "C.1", "User": "bob", "EventID": 4625, "_ts": 100, "Other": 1})
        else {
            unreachable!("an object")
        };
        let count = r.count(&row, published).expect("a matching row is counted");
        assert_eq!(count.key, r#"["C.1","bob"]"#);
        assert_eq!(count.at_ms, 100_000);
        assert_eq!(count.sample, json!({"User": "bob"}));
        assert_eq!(
            r.evaluate(&row, published, &inventory).unwrap(),
            None,
            "a rule with state never raises for a row by itself"
        );
        let Value::Object(other) = json!({"ClientId": "C.1", "EventID": 4624}) else {
            unreachable!("an object")
        };
        assert_eq!(r.count(&other, published), None, "where filters first");
        let Value::Object(no_user) = json!({"ClientId": "C.1", "EventID": 4625}) else {
            unreachable!("an object")
        };
        let count = r.count(&no_user, published).unwrap();
        assert_eq!(count.key, r#"["C.1",null]"#);
        assert_eq!(
            count.at_ms,
            published.timestamp_millis(),
            "no _ts: when stored"
        );

        let raise = Raise {
            count: 2,
            first_ms: 50_000,
            last_ms: 100_000,
            samples: vec![json!({"User": "bob"}), json!({"User": "eve"})],
            previous_ms: None,
        };
        let alert = r
            .alert(&row, published, &inventory, Some((&raise, published)))
            .unwrap();
        assert_eq!(alert["name"], "2 failed on web-1");
        assert_eq!(alert["timestamp"], "1970-01-01T00:01:40Z", "the row's time");
        let data = &alert["event_data"];
        assert_eq!(data["Count"], 2);
        assert_eq!(data["FirstRowTime"], "1970-01-01T00:00:50Z");
        assert_eq!(data["LastRowTime"], "1970-01-01T00:01:40Z");
        assert_eq!(
            data["SampleRows"],
            json!([{"User": "bob"}, {"User": "eve"}])
        );
        talon_proto::RawAlert::from_value(alert).expect("a valid raw alert");
    }

    #[test]
    fn an_absence_is_dated_when_found_and_says_how_long() {
        let r = rule(
            "watch = 'W'\nkind = 'absent'\nby = ['ClientId']\nafter = 60\n\
             alert.name = 'silent {SilentSeconds} s on {ClientId}'",
        );
        let Value::Object(row) = json!({"ClientId": "C.7", "_ts": 100}) else {
            unreachable!("an object")
        };
        let count = r.count(&row, PUBLISHED.parse().unwrap()).unwrap();
        assert_eq!(
            count.sample,
            Value::Object(row.clone()),
            "the whole row is kept"
        );
        let now: DateTime<Utc> = "1970-01-01T00:05:00Z".parse().unwrap();
        let raise = Raise {
            count: 0,
            first_ms: 100_000,
            last_ms: 100_000,
            samples: vec![],
            previous_ms: None,
        };
        let alert = r.alert(&row, now, &inventory, Some((&raise, now))).unwrap();
        assert_eq!(alert["name"], "silent 200 s on C.7");
        assert_eq!(alert["timestamp"], "1970-01-01T00:05:00Z");
        assert_eq!(alert["client_id"], "C.7");
    }

    #[test]
    fn oversized_samples_are_kept_as_a_note() {
        let big = json!({"x": "a".repeat(MAX_SAMPLE_BYTES)});
        assert!(cut(big)["_cut"].as_str().unwrap().contains("bytes"));
        assert_eq!(cut(json!({"x": 1})), json!({"x": 1}));
    }

    #[test]
    fn where_reads_a_dotted_path_into_a_column() {
        let r = rule("watch = 'System.Flow.Completion'\nwhere = { 'Flow.state' = '^ERROR$' }\nalert.name = 'x'");
        let row = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        assert!(r.matches(&row(json!({"Flow": {"state": "ERROR"}}))));
        assert!(!r.matches(&row(json!({"Flow": {"state": "FINISHED"}}))));
        assert!(!r.matches(&row(json!({"Flow": "ERROR"}))));
        // A column named with the dot itself wins.
        assert!(r.matches(&row(json!({"Flow.state": "ERROR", "Flow": {"state": "X"}}))));
    }
}
