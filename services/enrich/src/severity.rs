//! Severity: `[[enrich.severity_transforms]]` rows (member, regex, replace)
//! turn a context value into a severity, as Velociraptor's
//! `Server.Monitor.Alerts` `SeverityTransforms` table does.
//!
//! The rows are tried in order; the first row whose `member` names a
//! top-level key of `event_data` and whose `regex` matches that key's value
//! decides. The severity is `replace` with its capture groups (`$1`,
//! `${name}`) expanded, or the value itself when `replace` is empty,
//! lowercased and trimmed. The member that decided leaves the context (the
//! caller removes it).
//!
//! Where this differs from Velociraptor, on purpose:
//!
//! - Velociraptor applies every row and the *last* matching row wins; here
//!   the *first* matching row decides, so a specific row can be put before a
//!   catch-all one.
//! - In Velociraptor a Regex+Replace row whose regex does not match the
//!   value still yields the raw value (so an unrecognised `level` becomes the
//!   severity); here a row whose regex does not match falls through to the
//!   next row, and an alert no row matches has no severity.
//! - A row whose result is empty (an empty value kept as it is, a replace
//!   that expands to nothing) falls through as well, rather than deciding
//!   "no severity".
//! - Velociraptor's `SeverityThreshold` is set membership; talon's channel
//!   `severity_threshold` is "at or above" when it is a string (see
//!   [`crate::route`]).
//!
//! Values are examined as text: strings as they are, numbers and booleans as
//! their JSON text (`3`, `2.5`, `true`); objects, lists and null match no row.
//! The match is a search, not anchored: `(?i)warn` matches `Warning`.

use std::borrow::Cow;

use regex::Regex;
use serde_json::{Map, Value};
use talon_kit::config::SeverityTransform;

/// One compiled row.
#[derive(Debug, Clone)]
struct Row {
    member: String,
    /// `""` compiles to a regex that matches any value.
    regex: Regex,
    replace: String,
}

/// The compiled `[[enrich.severity_transforms]]` rows.
#[derive(Debug, Clone)]
pub struct Severity {
    rows: Vec<Row>,
}

impl Severity {
    /// Compiles `rows`; `None` (no `[[enrich.severity_transforms]]` in the
    /// file) takes [`default_rows`]. `Some(&[])` is no rows: no alert gets a
    /// severity.
    pub fn new(rows: Option<&[SeverityTransform]>) -> Result<Severity, regex::Error> {
        let defaults;
        let rows = match rows {
            Some(rows) => rows,
            None => {
                defaults = default_rows();
                &defaults
            }
        };
        let rows = rows
            .iter()
            .map(|row| {
                Ok(Row {
                    member: row.member.clone(),
                    regex: Regex::new(&row.regex)?,
                    replace: row.replace.clone(),
                })
            })
            .collect::<Result<_, regex::Error>>()?;
        Ok(Severity { rows })
    }

    /// The severity of an alert with this `event_data`, and the member that
    /// decided it; `None` when no row matches (see the module docs).
    pub fn decide(&self, event_data: &Map<String, Value>) -> Option<(String, String)> {
        self.rows.iter().find_map(|row| {
            let value = event_data.get(&row.member).and_then(as_text)?;
            let captures = row.regex.captures(&value)?;
            let severity = if row.replace.is_empty() {
                value.trim().to_lowercase()
            } else {
                let mut expanded = String::new();
                captures.expand(&row.replace, &mut expanded);
                expanded.trim().to_lowercase()
            };
            (!severity.is_empty()).then(|| (severity, row.member.clone()))
        })
    }
}

/// A value as the rows see it; `None` for values no row can match.
fn as_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The rows used when the file has no `[[enrich.severity_transforms]]`:
/// an explicit `severity`/`Severity` is taken as it is; otherwise a
/// `level`/`Level` (Sigma, Windows event logs) containing `warn` is medium
/// and one containing `error` is high. A `level` matching neither gives no
/// severity.
///
/// `severity` comes first because a producer that names a severity means
/// it; a `level` is only a hint.
pub fn default_rows() -> Vec<SeverityTransform> {
    let row = |member: &str, regex: &str, replace: &str| SeverityTransform {
        member: member.to_owned(),
        regex: regex.to_owned(),
        replace: replace.to_owned(),
    };
    vec![
        row("severity", "", ""),
        row("Severity", "", ""),
        row("level", "(?i)warn", "medium"),
        row("Level", "(?i)warn", "medium"),
        row("level", "(?i)error", "high"),
        row("Level", "(?i)error", "high"),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// (member, regex, replace).
    type Rows<'a> = Option<&'a [(&'a str, &'a str, &'a str)]>;

    /// Decides the severity of `event_data` with `rows` (`None`: the
    /// defaults); `expected` is (severity, member).
    fn check(rows: Rows<'_>, event_data: Value, expected: Option<(&str, &str)>) {
        let rows: Option<Vec<SeverityTransform>> = rows.map(|rows| {
            rows.iter()
                .map(|&(member, regex, replace)| SeverityTransform {
                    member: member.into(),
                    regex: regex.into(),
                    replace: replace.into(),
                })
                .collect()
        });
        let severity = Severity::new(rows.as_deref()).unwrap();
        let got = severity.decide(event_data.as_object().unwrap());
        assert_eq!(
            got.as_ref().map(|(s, m)| (s.as_str(), m.as_str())),
            expected,
            "rows {rows:?}, event_data {event_data}"
        );
    }

    #[test]
    fn default_rows_reproduce_velociraptors_intent() {
        check(None, json!({"level": "Warning"}), Some(("medium", "level")));
        check(None, json!({"Level": "WARN"}), Some(("medium", "Level")));
        check(None, json!({"Level": "ERROR"}), Some(("high", "Level")));
        check(None, json!({"level": "error"}), Some(("high", "level")));
        check(
            None,
            json!({"Severity": "Critical"}),
            Some(("critical", "Severity")),
        );
        check(
            None,
            json!({"severity": " Low "}),
            Some(("low", "severity")),
        );
        // An explicit severity beats a level.
        check(
            None,
            json!({"Level": "Warning", "Severity": "High"}),
            Some(("high", "Severity")),
        );
        // A level the defaults do not know gives no severity (Velociraptor: the raw value).
        check(None, json!({"Level": "Information"}), None);
        check(None, json!({"LEVEL": "Warning"}), None);
        check(None, json!({"FileName": "/etc/shadow"}), None);
        check(None, json!({}), None);
        // An empty severity is none, and lets a level decide.
        check(None, json!({"Severity": ""}), None);
        check(
            None,
            json!({"Severity": "  ", "level": "warning"}),
            Some(("medium", "level")),
        );
    }

    #[test]
    fn rows() {
        let sev: &[_] = &[("Level", r"^sev-(\w+)$", "$1")];
        check(
            Some(sev),
            json!({"Level": "sev-HIGH"}),
            Some(("high", "Level")),
        );
        check(Some(sev), json!({"Level": "sev-"}), None);
        check(Some(sev), json!({"Level": "HIGH"}), None);
        let named: &[_] = &[("Level", r"^(?P<vendor>\w+):(?P<sev>\w+)$", "${sev}")];
        check(
            Some(named),
            json!({"Level": "acme:Critical"}),
            Some(("critical", "Level")),
        );

        // The first matching row decides, even when a later one matches too.
        let two: &[_] = &[("level", "(?i)crit", "critical"), ("level", "(?i)c", "low")];
        check(
            Some(two),
            json!({"level": "Critical"}),
            Some(("critical", "level")),
        );
        check(Some(two), json!({"level": "Cold"}), Some(("low", "level")));
        // Rows, not keys, are in order.
        let by_member: &[_] = &[("b", "", ""), ("a", "", "")];
        check(
            Some(by_member),
            json!({"a": "low", "b": "high"}),
            Some(("high", "b")),
        );

        // A row that does not match falls through (Velociraptor: the raw value).
        let fall: &[_] = &[("level", "(?i)warn", "medium"), ("Priority", "", "")];
        check(
            Some(fall),
            json!({"level": "Notice", "Priority": "Low"}),
            Some(("low", "Priority")),
        );
        check(Some(fall), json!({"level": "Notice"}), None);

        // An empty regex matches any value; an empty replace keeps the whole value.
        check(
            Some(&[("sev", "", "")]),
            json!({"sev": "Very High"}),
            Some(("very high", "sev")),
        );
        check(
            Some(&[("sev", "", "high")]),
            json!({"sev": "anything"}),
            Some(("high", "sev")),
        );
        check(
            Some(&[("sev", "igh", "")]),
            json!({"sev": "High"}),
            Some(("high", "sev")),
        );

        // Numbers and booleans as their JSON text; objects, lists and null never match.
        let prio: &[_] = &[
            ("Priority", "^[45]$", "high"),
            ("Priority", "^[0-9.]+$", ""),
        ];
        check(
            Some(prio),
            json!({"Priority": 5}),
            Some(("high", "Priority")),
        );
        check(
            Some(prio),
            json!({"Priority": 2.5}),
            Some(("2.5", "Priority")),
        );
        check(
            Some(&[("Escalate", "^true$", "critical")]),
            json!({"Escalate": true}),
            Some(("critical", "Escalate")),
        );
        let any: &[_] = &[("x", "", "high")];
        check(Some(any), json!({"x": null}), None);
        check(Some(any), json!({"x": ["high"]}), None);
        check(Some(any), json!({"x": {"level": "high"}}), None);
        // Top-level keys only.
        check(
            Some(&[("level", "", "")]),
            json!({"Details": {"level": "high"}}),
            None,
        );

        // No rows, no severity.
        check(Some(&[]), json!({"Severity": "high"}), None);
    }

    #[test]
    fn bad_regex_is_an_error() {
        let rows = [SeverityTransform {
            member: "level".into(),
            regex: "(".into(),
            replace: String::new(),
        }];
        assert!(Severity::new(Some(&rows)).is_err());
    }
}
