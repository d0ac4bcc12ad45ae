//! A silence: matchers over an alert's fields, a time range, who made it
//! and why. Stored as JSON in the KV bucket `talon_silences` under
//! `silence.<id>`; every change is a new revision of that key (the bucket
//! keeps the history), and expiring one sets its `ends_at`, it is never
//! deleted. enrich applies the active ones; the console and `talonctl
//! silence` write them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The fields a matcher may name, besides `context.<key>`.
pub const SILENCE_FIELDS: [&str; 11] = [
    "name",
    "client_id",
    "hostname",
    "fqdn",
    "labels",
    "artifact",
    "artifact_type",
    "severity",
    "source",
    "org_id",
    "channel",
];

/// The prefix of a matcher on one key of the alert's context.
pub const CONTEXT_PREFIX: &str = "context.";

/// The key prefix of silences in `talon_silences`.
pub const SILENCE_KEY_PREFIX: &str = "silence.";

/// The key prefix of enrich replicas' sync reports in `talon_silences`.
pub const SYNC_KEY_PREFIX: &str = "sync.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    /// `[0-9a-f]{32}`: also the key's last token.
    pub id: String,
    /// All must match for the silence to hide an alert.
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The console user (or API token's user) who made it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// Why: required.
    pub comment: String,
    /// Who changed it last (an edit, or "expire now"), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// One of [`SILENCE_FIELDS`] or `context.<key>`.
    pub field: String,
    pub op: MatchOp,
    /// A value (`=`, `!=`) or a regular expression matched against the
    /// whole value (`=~`, `!~`), as Alertmanager's matchers do.
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// `=`, `!=`, `=~` and `!~` (as written in `talonctl silence add`).
    pub fn parse(s: &str) -> Option<MatchOp> {
        match s {
            "=" => Some(MatchOp::Equal),
            "!=" => Some(MatchOp::NotEqual),
            "=~" => Some(MatchOp::Regex),
            "!~" => Some(MatchOp::NotRegex),
            _ => None,
        }
    }
}

/// Where a silence stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    /// Starts later.
    Pending,
    /// Hides matching alerts now.
    Active,
    /// Ended (or expired by hand): kept, visible, hides nothing.
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

impl Silence {
    /// Active from `starts_at` (included) to `ends_at` (excluded).
    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now >= self.ends_at {
            SilenceState::Expired
        } else if now < self.starts_at {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Its key in `talon_silences`.
    pub fn key(&self) -> String {
        silence_key(&self.id)
    }
}

/// The key of silence `id` in `talon_silences`.
pub fn silence_key(id: &str) -> String {
    format!("{SILENCE_KEY_PREFIX}{id}")
}

/// What an enrich replica reports under `sync.<replica>`: the bucket
/// revision it has applied, so the console can tell whether a new silence
/// is in force everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceSync {
    pub replica: String,
    /// The newest `talon_silences` revision of a silence it has applied.
    pub revision: u64,
    /// Silences it holds that are active now.
    pub active: usize,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence(starts: i64, ends: i64) -> Silence {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        Silence {
            id: "0".repeat(32),
            matchers: vec![Matcher {
                field: "name".into(),
                op: MatchOp::Regex,
                value: "^Sigma.*".into(),
            }],
            starts_at: t(starts),
            ends_at: t(ends),
            created_by: "alice".into(),
            created_at: t(0),
            comment: "scanner".into(),
            updated_by: None,
            updated_at: None,
        }
    }

    #[test]
    fn state_is_pending_then_active_then_expired() {
        let s = silence(100, 200);
        let t = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        assert_eq!(s.state(t(99)), SilenceState::Pending);
        assert_eq!(s.state(t(100)), SilenceState::Active);
        assert_eq!(s.state(t(199)), SilenceState::Active);
        assert_eq!(s.state(t(200)), SilenceState::Expired);
    }

    #[test]
    fn operators_are_written_as_alertmanager_writes_them() {
        let s = silence(0, 1);
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["matchers"][0]["op"], "=~");
        for op in [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex,
        ] {
            assert_eq!(MatchOp::parse(op.as_str()), Some(op));
            assert_eq!(
                serde_json::to_value(op).unwrap_or_default(),
                serde_json::json!(op.as_str())
            );
        }
        assert_eq!(MatchOp::parse("=="), None);
        let back: Result<Silence, _> = serde_json::from_value(json);
        assert_eq!(back.ok(), Some(s));
    }
}
