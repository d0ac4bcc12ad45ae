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
}

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
        Ok(())
    }
}

/// `text` at `path` parses as a template.
fn template(src: &Source<'_>, path: &KeyPath, text: &str) -> Result<(), ConfigError> {
    Template::parse(text)
        .map(drop)
        .map_err(|e| src.error(path, format!("bad template {text:?}: {e}")))
}
