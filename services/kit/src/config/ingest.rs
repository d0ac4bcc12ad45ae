//! `[ingest]`: the HTTP edge and the partitioning of accepted alerts.

use serde::{Deserialize, Serialize};

use super::check;
use super::locate::{KeyPath, Source};
use super::tokens::{check_tokens, split_tokens};
use super::{ConfigError, Env};

/// `[ingest]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address of the HTTP API (`/v1/alerts`, `/v1/events/...`, health, metrics).
    pub http_listen: String,
    /// Environment variable holding the comma-separated bearer tokens.
    pub tokens_env: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most alerts (or rows) one request may carry; more is answered 413.
    pub max_items: usize,
    /// Number of dedup partitions accepted alerts are spread over (>= 1).
    pub partitions: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            http_listen: "127.0.0.1:8470".to_owned(),
            tokens_env: "TALON_INGEST_TOKENS".to_owned(),
            max_body_bytes: 1_048_576,
            max_items: 1_000,
            partitions: 1,
        }
    }
}

impl IngestConfig {
    /// The accepted bearer tokens: the variable named by `tokens_env`, split on
    /// commas, trimmed, empties dropped. Unset gives none (every request refused).
    pub fn tokens(&self, env: &Env) -> Vec<String> {
        split_tokens(env, &self.tokens_env)
    }

    /// The tokens, checked for ingest's start: each at least
    /// [`MIN_TOKEN_CHARS`] characters and none an example value (anything
    /// holding `change-me`, or the old `dev-token`). None at all is allowed:
    /// every request is then refused.
    pub fn checked_tokens(&self, env: &Env) -> Result<Vec<String>, ConfigError> {
        check_tokens(
            "ingest.tokens_env",
            &self.tokens_env,
            split_tokens(env, &self.tokens_env),
        )
    }

    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("ingest");
        check::listen(src, &here.key("http_listen"), &self.http_listen)?;
        check::non_empty(src, &here.key("tokens_env"), &self.tokens_env)?;
        if self.max_body_bytes == 0 {
            return Err(src.error(&here.key("max_body_bytes"), "must be at least 1"));
        }
        if self.max_items == 0 {
            return Err(src.error(&here.key("max_items"), "must be at least 1"));
        }
        if self.partitions == 0 {
            return Err(src.error(&here.key("partitions"), "must be at least 1"));
        }
        Ok(())
    }
}
