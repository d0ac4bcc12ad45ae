//! `[[rules]]`: server event artifacts as configuration — watch a monitoring
//! queue, raise an alert for rows that match.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use talon_proto::names::is_artifact_name;

use super::check;
use super::locate::{KeyPath, Source};
use super::ConfigError;
use crate::template::Template;

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name; alerts it raises have source `rule:<name>`.
    pub name: String,
    /// The artifact whose rows are read, from `Monitoring.<watch>`.
    pub watch: String,
    /// Column name to regex; a row matches when every named column matches.
    #[serde(default)]
    pub r#where: BTreeMap<String, String>,
    /// The alert raised for a matching row.
    pub alert: RuleAlert,
    /// What the rule counts: every row (`row`, the default), `threshold`,
    /// `first_seen` or `absent` (DESIGN §14).
    #[serde(default)]
    pub kind: RuleKind,
    /// The columns whose values form the key a stateful rule counts by
    /// (`[]`: one key for every row).
    #[serde(default)]
    pub by: Vec<String>,
    /// threshold: rows of one key that raise the alert.
    #[serde(default)]
    pub count: Option<u64>,
    /// threshold: seconds from the first counted row to the last.
    #[serde(default)]
    pub within: Option<u64>,
    /// threshold: rows shown in the alert (default 5).
    #[serde(default)]
    pub samples: Option<u64>,
    /// first_seen: seconds a key is remembered (a key seen again after it
    /// raises again).
    #[serde(default)]
    pub lookback: Option<u64>,
    /// absent: seconds without a row of a key that raise the alert.
    #[serde(default)]
    pub after: Option<u64>,
}

/// `kind` of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// One alert for every matching row.
    #[default]
    Row,
    /// At least `count` rows of one key within `within` seconds.
    Threshold,
    /// A key not seen in the last `lookback` seconds.
    FirstSeen,
    /// No row of a key for `after` seconds.
    Absent,
}

/// Most rows a threshold counts (each kept in its key's state until it
/// raises or leaves the window).
pub const MAX_THRESHOLD_COUNT: u64 = 1_000;
/// Most sample rows a threshold alert carries.
pub const MAX_SAMPLES: u64 = 20;
/// Longest `within`, `lookback` or `after`: a year.
pub const MAX_RULE_SECONDS: u64 = 366 * 86_400;
/// Most `by` columns.
pub const MAX_BY: usize = 8;

/// `alert.*` of a rule: the alert a matching row raises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleAlert {
    /// Alert name template, e.g. `Honey file "{FileName}" accessed on {client.hostname}`.
    pub name: String,
    /// Dedup seconds for the alert (0 = default, < 0 disables); unset = default.
    #[serde(default)]
    pub dedup: Option<i64>,
    /// Row columns copied into `event_data`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Copy every column into `event_data` (instead of `fields`).
    #[serde(default)]
    pub all: bool,
    /// With `all`: regex on column names left out.
    #[serde(default)]
    pub exclude: Option<String>,
    /// `event_data` keys set from templates (ClientId, Artifact, ArtifactType, ...).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

impl RuleConfig {
    pub(super) fn validate(&self, src: &Source<'_>, here: &KeyPath) -> Result<(), ConfigError> {
        check::non_empty(src, &here.key("name"), &self.name)?;
        if self.name.chars().any(char::is_control) {
            // The name travels in the Talon-Source header and metric labels.
            return Err(src.error(&here.key("name"), "must not hold control characters"));
        }
        if !is_artifact_name(&self.watch) {
            return Err(src.error(
                &here.key("watch"),
                format!(
                    "{:?} is not an artifact name (dot-separated parts of A-Z, a-z, 0-9, _ and -)",
                    self.watch
                ),
            ));
        }
        for (column, pattern) in &self.r#where {
            check::regex(src, &here.key("where").key(column), pattern)?;
        }
        let alert = here.key("alert");
        check::non_empty(src, &alert.key("name"), &self.alert.name)?;
        template(src, &alert.key("name"), &self.alert.name)?;
        for (key, value) in &self.alert.set {
            template(src, &alert.key("set").key(key), value)?;
        }
        if self.alert.all && !self.alert.fields.is_empty() {
            return Err(src.error(
                &alert.key("fields"),
                "set either alert.fields or alert.all = true, not both",
            ));
        }
        if let Some(exclude) = &self.alert.exclude {
            if !self.alert.all {
                return Err(src.error(&alert.key("exclude"), "applies only with alert.all = true"));
            }
            check::regex(src, &alert.key("exclude"), exclude)?;
        }
        self.validate_kind(src, here)
    }

    /// The keys of `kind`: each needed one set and in bounds, none of
    /// another kind's.
    fn validate_kind(&self, src: &Source<'_>, here: &KeyPath) -> Result<(), ConfigError> {
        let keys: [(&str, Option<u64>, RuleKind); 5] = [
            ("count", self.count, RuleKind::Threshold),
            ("within", self.within, RuleKind::Threshold),
            ("samples", self.samples, RuleKind::Threshold),
            ("lookback", self.lookback, RuleKind::FirstSeen),
            ("after", self.after, RuleKind::Absent),
        ];
        for (key, value, kind) in keys {
            let path = here.key(key);
            let wanted = kind == self.kind;
            match value {
                Some(_) if !wanted => {
                    return Err(src.error(
                        &path,
                        format!("applies only to kind = \"{}\"", kind_name(kind)),
                    ))
                }
                None if wanted && key != "samples" => {
                    return Err(src.error(
                        &path,
                        format!("is required with kind = \"{}\"", kind_name(self.kind)),
                    ))
                }
                _ => {}
            }
        }
        let bound = |key: &str, value: Option<u64>, max: u64| match value {
            Some(v) if v == 0 || v > max => {
                Err(src.error(&here.key(key), format!("must be 1 to {max}")))
            }
            _ => Ok(()),
        };
        bound("count", self.count, MAX_THRESHOLD_COUNT)?;
        bound("within", self.within, MAX_RULE_SECONDS)?;
        bound("lookback", self.lookback, MAX_RULE_SECONDS)?;
        bound("after", self.after, MAX_RULE_SECONDS)?;
        if self.samples.is_some_and(|s| s > MAX_SAMPLES) {
            return Err(src.error(&here.key("samples"), format!("must be 0 to {MAX_SAMPLES}")));
        }
        if self.kind == RuleKind::Row && !self.by.is_empty() {
            return Err(src.error(
                &here.key("by"),
                "applies only to kind = \"threshold\", \"first_seen\" or \"absent\"",
            ));
        }
        if self.kind == RuleKind::FirstSeen && self.by.is_empty() {
            return Err(src.error(
                &here.key("by"),
                "is required with kind = \"first_seen\" (the columns whose new values raise)",
            ));
        }
        if self.by.len() > MAX_BY {
            return Err(src.error(&here.key("by"), format!("at most {MAX_BY} columns")));
        }
        for column in &self.by {
            check::non_empty(src, &here.key("by"), column)?;
        }
        Ok(())
    }
}

fn kind_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Row => "row",
        RuleKind::Threshold => "threshold",
        RuleKind::FirstSeen => "first_seen",
        RuleKind::Absent => "absent",
    }
}

/// `text` at `path` parses as a template.
fn template(src: &Source<'_>, path: &KeyPath, text: &str) -> Result<(), ConfigError> {
    Template::parse(text)
        .map(drop)
        .map_err(|e| src.error(path, format!("bad template {text:?}: {e}")))
}
