//! `[enrich]`: context flattening and severity.

use serde::{Deserialize, Serialize};

use super::check;
use super::locate::{KeyPath, Source};
use super::ConfigError;

/// `[enrich]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Address of health and metrics.
    pub http_listen: String,
    /// Turn nested context values into dotted keys with list indices.
    pub flatten_context: bool,
    /// Regex on (flattened) context keys kept.
    pub context_include: String,
    /// Regex on (flattened) context keys dropped; empty drops none.
    pub context_exclude: String,
    /// Most context keys kept per alert; 0: no limit.
    pub context_field_limit: usize,
    /// Longest context value kept, in characters; 0: no limit.
    pub context_value_limit: usize,
    /// The severities, lowest first.
    pub severity_levels: Vec<String>,
    /// Rows mapping context to a severity, first match decides; unset = built-in defaults.
    pub severity_transforms: Option<Vec<SeverityTransform>>,
}

/// One `[[enrich.severity_transforms]]` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityTransform {
    /// The context key whose value is examined.
    pub member: String,
    /// Regex on that value; empty matches any value.
    #[serde(default)]
    pub regex: String,
    /// The severity when it matches; empty takes the value itself.
    #[serde(default)]
    pub replace: String,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            http_listen: "127.0.0.1:8472".to_owned(),
            flatten_context: true,
            context_include: ".+".to_owned(),
            context_exclude: String::new(),
            context_field_limit: 100,
            context_value_limit: 1000,
            severity_levels: ["info", "low", "medium", "high", "critical"]
                .map(str::to_owned)
                .to_vec(),
            severity_transforms: None,
        }
    }
}

impl EnrichConfig {
    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("enrich");
        check::listen(src, &here.key("http_listen"), &self.http_listen)?;
        check::regex(src, &here.key("context_include"), &self.context_include)?;
        check::regex(src, &here.key("context_exclude"), &self.context_exclude)?;
        let levels = here.key("severity_levels");
        if self.severity_levels.is_empty() {
            return Err(src.error(&levels, "must name at least one severity"));
        }
        for (i, level) in self.severity_levels.iter().enumerate() {
            check::non_empty(src, &levels.index(i), level)?;
        }
        check::unique(
            src,
            self.severity_levels
                .iter()
                .enumerate()
                .map(|(i, l)| (levels.index(i), l.as_str())),
            "severity",
        )?;
        for (i, row) in self.severity_transforms.iter().flatten().enumerate() {
            let path = here.key("severity_transforms").index(i);
            check::non_empty(src, &path.key("member"), &row.member)?;
            check::regex(src, &path.key("regex"), &row.regex)?;
        }
        Ok(())
    }
}
