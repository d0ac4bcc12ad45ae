//! `[dedup]`: suppression windows, their key, and the partitions a replica owns.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use talon_proto::DedupKeyField;

use super::check;
use super::locate::{KeyPath, Source};
use super::ConfigError;

/// `[dedup]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Address of the HTTP API (`talonctl dedup`, health, metrics).
    pub http_listen: String,
    /// Environment variable holding the comma-separated bearer tokens of
    /// `/v1/windows`; unset or empty: every request to it is refused.
    pub tokens_env: String,
    /// Directory of the sled databases, one per owned partition.
    pub data_dir: PathBuf,
    /// Window, in seconds, for alerts that ask for the default (dedup 0 or unset).
    pub default_seconds: i64,
    /// Longest window a producer may ask for with its own `dedup`: a larger
    /// one is cut to this, so no producer can suppress a name for ever.
    pub max_seconds: i64,
    /// The fields the dedup key is made of, in order (non-empty).
    pub key: Vec<DedupKeyField>,
    /// The partitions this replica owns, each below `ingest.partitions`.
    pub partitions: Vec<u32>,
    /// Windows by alert name, the first match wins (`[[dedup.override]]`).
    pub r#override: Vec<DedupOverride>,
}

/// One `[[dedup.override]]` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupOverride {
    /// Regex on the alert name.
    pub name: String,
    /// Window in seconds for matching alerts (< 0 disables suppression).
    pub seconds: i64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            http_listen: "127.0.0.1:8471".to_owned(),
            tokens_env: "TALON_DEDUP_TOKENS".to_owned(),
            data_dir: PathBuf::from("/var/lib/talon/dedup"),
            default_seconds: 7200,
            max_seconds: 86_400,
            key: vec![DedupKeyField::Name],
            partitions: vec![0],
            r#override: Vec::new(),
        }
    }
}

impl DedupConfig {
    /// The `/v1/windows` tokens, checked as ingest's are (at least 24
    /// characters, no example value).
    pub fn checked_tokens(&self, env: &super::Env) -> Result<Vec<String>, ConfigError> {
        super::tokens::check_tokens(
            "dedup.tokens_env",
            &self.tokens_env,
            super::tokens::split_tokens(env, &self.tokens_env),
        )
    }

    pub(super) fn validate(
        &self,
        src: &Source<'_>,
        ingest_partitions: u32,
    ) -> Result<(), ConfigError> {
        let here = KeyPath::of("dedup");
        check::listen(src, &here.key("http_listen"), &self.http_listen)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(src.error(&here.key("data_dir"), "must not be empty"));
        }
        if self.default_seconds < 1 {
            return Err(src.error(
                &here.key("default_seconds"),
                format!("must be at least 1, not {}", self.default_seconds),
            ));
        }
        if self.max_seconds < 1 {
            return Err(src.error(
                &here.key("max_seconds"),
                format!("must be at least 1, not {}", self.max_seconds),
            ));
        }
        if self.key.is_empty() {
            return Err(src.error(
                &here.key("key"),
                "must name at least one of name, artifact, client_id, org_id",
            ));
        }
        for (i, field) in self.key.iter().enumerate() {
            if self.key.iter().take(i).any(|k| k == field) {
                return Err(src.error(&here.key("key").index(i), "duplicate key field"));
            }
        }
        if self.partitions.is_empty() {
            return Err(src.error(&here.key("partitions"), "must own at least one partition"));
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let path = here.key("partitions").index(i);
            if *p >= ingest_partitions {
                return Err(src.error(
                    &path,
                    format!(
                        "partition {p} does not exist: ingest.partitions is {ingest_partitions}, so partitions are 0 to {}",
                        ingest_partitions.saturating_sub(1)
                    ),
                ));
            }
            if self.partitions.iter().take(i).any(|q| q == p) {
                return Err(src.error(&path, format!("duplicate partition {p}")));
            }
        }
        for (i, o) in self.r#override.iter().enumerate() {
            let path = here.key("override").index(i).key("name");
            check::non_empty(src, &path, &o.name)?;
            check::regex(src, &path, &o.name)?;
        }
        Ok(())
    }
}
