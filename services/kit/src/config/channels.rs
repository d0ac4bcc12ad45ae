//! `[[channels]]`: where enriched alerts go. One flat struct for every kind
//! (serde's tagged enums buffer their input and lose line numbers); after
//! deserializing, one function per kind checks the keys that kind takes and
//! builds its typed [`ChannelSpec`], which is what the services read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use talon_proto::names::is_subject_token;

use super::check;
use super::locate::{KeyPath, Source};
use super::secret::resolve;
use super::{ConfigError, Env, SecretConfig};

/// PagerDuty's Events API v2 endpoint, the default `url` of a pagerduty channel.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// An inbox channel's `recipients` when unset: every user.
pub const DEFAULT_INBOX_RECIPIENTS: &str = ".+";

/// An inbox channel's `recipient_roles` when unset: administrators.
pub const DEFAULT_INBOX_RECIPIENT_ROLES: &str = "^administrator$";

/// What a channel delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// E-mail over SMTP, with the server in a `[secrets.<name>]` table.
    Email,
    /// The in-app inbox (`talon.inbox.<user>`).
    Inbox,
    /// Slack incoming web hook.
    Slack,
    /// Mattermost incoming web hook.
    Mattermost,
    /// Microsoft Teams web hook.
    Teams,
    /// Google Chat web hook.
    Googlechat,
    /// Discord web hook.
    Discord,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// A generic JSON POST of the alert.
    Webhook,
}

impl ChannelKind {
    /// The chat and incident kinds: each renders an alert as one JSON body
    /// and POSTs it to its service's web hook (notify's `channels::chat`).
    pub const CHAT: [ChannelKind; 6] = [
        ChannelKind::Slack,
        ChannelKind::Mattermost,
        ChannelKind::Teams,
        ChannelKind::Googlechat,
        ChannelKind::Discord,
        ChannelKind::Pagerduty,
    ];

    /// Is this a chat or incident kind (one of [`ChannelKind::CHAT`])?
    pub fn is_chat(self) -> bool {
        Self::CHAT.contains(&self)
    }

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Inbox => "inbox",
            ChannelKind::Slack => "slack",
            ChannelKind::Mattermost => "mattermost",
            ChannelKind::Teams => "teams",
            ChannelKind::Googlechat => "googlechat",
            ChannelKind::Discord => "discord",
            ChannelKind::Pagerduty => "pagerduty",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string, or a list of strings: what `recipients` and `severity_threshold`
/// take. Deserialized by hand, not as an untagged enum, so a wrong type keeps
/// its line.
#[derive(Debug, Clone)]
enum StrOrList {
    Str(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for StrOrList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOrList, E> {
                Ok(StrOrList::Str(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StrOrList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StrOrList::List(items))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `recipients`: e-mail addresses (email) or a regex on user names (inbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, from = "StrOrList")]
pub enum Recipients {
    /// A list of e-mail addresses.
    List(Vec<String>),
    /// A regex on user names.
    Pattern(String),
}

impl From<StrOrList> for Recipients {
    fn from(v: StrOrList) -> Self {
        match v {
            StrOrList::Str(s) => Recipients::Pattern(s),
            StrOrList::List(l) => Recipients::List(l),
        }
    }
}

/// `severity_threshold`: a string means at or above it, a list exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, from = "StrOrList")]
pub enum SeverityThreshold {
    /// This severity or any above it in `enrich.severity_levels`.
    AtLeast(String),
    /// Exactly these severities.
    Exactly(Vec<String>),
}

impl From<StrOrList> for SeverityThreshold {
    fn from(v: StrOrList) -> Self {
        match v {
            StrOrList::Str(s) => SeverityThreshold::AtLeast(s),
            StrOrList::List(l) => SeverityThreshold::Exactly(l),
        }
    }
}

impl SeverityThreshold {
    /// The severities it names.
    pub fn names(&self) -> Vec<&str> {
        match self {
            SeverityThreshold::AtLeast(s) => vec![s.as_str()],
            SeverityThreshold::Exactly(l) => l.iter().map(String::as_str).collect(),
        }
    }
}

fn include_all() -> String {
    ".+".to_owned()
}
fn yes() -> bool {
    true
}
fn sixty() -> u32 {
    60
}
fn four() -> u32 {
    4
}
fn one_day() -> u64 {
    86_400
}
fn thirty() -> u64 {
    30
}
fn five_minutes() -> u64 {
    300
}
fn hundred() -> usize {
    talon_proto::group::DEFAULT_LISTED
}

/// The longest `group_wait` and `group_interval`: a week.
pub const MAX_GROUP_SECONDS: u64 = 7 * 86_400;

/// A channel's grouping, checked: what its `group_by`, `group_wait`,
/// `group_interval`, `group_max_alerts` and `digest` say.
#[derive(Debug, Clone)]
pub struct Grouping {
    /// The fields, as written (`name`, `client_id`, `context.<key>`, ...).
    pub by: Vec<String>,
    pub fields: Vec<crate::silences::Field>,
    pub wait: std::time::Duration,
    pub interval: std::time::Duration,
    pub max_listed: usize,
    pub digest: Option<crate::schedule::Schedule>,
}

impl Grouping {
    /// `None` when the channel does not group; the key and what is wrong
    /// with it when a value is bad.
    fn of(c: &ChannelConfig) -> Result<Option<Grouping>, (&'static str, String)> {
        if c.group_by.is_none() && c.digest.is_none() {
            return Ok(None);
        }
        let by = c.group_by.clone().unwrap_or_default();
        if by.len() > 16 {
            return Err(("group_by", "at most 16 fields".to_owned()));
        }
        let mut fields = Vec::new();
        for f in &by {
            if f == "channel" {
                return Err((
                    "group_by",
                    "\"channel\" is the same for every alert of a channel".to_owned(),
                ));
            }
            fields.push(crate::silences::Field::parse(f).map_err(|e| ("group_by", e))?);
        }
        if c.group_wait > MAX_GROUP_SECONDS {
            return Err((
                "group_wait",
                format!("at most {MAX_GROUP_SECONDS} seconds (a week)"),
            ));
        }
        if c.group_interval == 0 || c.group_interval > MAX_GROUP_SECONDS {
            return Err((
                "group_interval",
                format!("1 to {MAX_GROUP_SECONDS} seconds (a week)"),
            ));
        }
        let most = talon_proto::group::MAX_MESSAGE_ALERTS;
        if c.group_max_alerts == 0 || c.group_max_alerts > most {
            return Err(("group_max_alerts", format!("1 to {most}")));
        }
        let digest = match &c.digest {
            Some(text) => Some(crate::schedule::Schedule::parse(text).map_err(|e| ("digest", e))?),
            None => None,
        };
        Ok(Some(Grouping {
            by,
            fields,
            wait: std::time::Duration::from_secs(c.group_wait),
            interval: std::time::Duration::from_secs(c.group_interval),
            max_listed: c.group_max_alerts,
            digest,
        }))
    }
}

/// One `[[channels]]` entry. The keys every kind has are public fields; the
/// kind-specific ones are read through [`ChannelConfig::spec`], typed by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel id; also the subject token of `Server.Monitor.Alerts.<id>`.
    pub id: String,
    /// What it delivers to.
    pub kind: ChannelKind,
    /// email: the `[secrets.<name>]` table with the SMTP server.
    #[serde(default)]
    pub(super) secret: Option<String>,
    /// email: a list of addresses; inbox: a regex on user names (default `.+`).
    #[serde(default)]
    pub(super) recipients: Option<Recipients>,
    /// inbox: regex on user roles (default `^administrator$`).
    #[serde(default)]
    pub(super) recipient_roles: Option<String>,
    /// Regex on the alert name: only matching alerts are sent.
    #[serde(default = "include_all")]
    pub alert_include: String,
    /// Regex on the alert name: matching alerts are not sent; empty excludes none.
    #[serde(default)]
    pub alert_exclude: String,
    /// Severities sent: a string means at or above it, a list exactly these; unset: all.
    #[serde(default)]
    pub severity_threshold: Option<SeverityThreshold>,
    /// Refuse alerts without a severity (by default they pass, as in Velociraptor).
    #[serde(default)]
    pub require_severity: bool,
    /// Include the client section (hostname, os, labels).
    #[serde(default = "yes")]
    pub include_client_details: bool,
    /// Include the flow section.
    #[serde(default = "yes")]
    pub include_flow_details: bool,
    /// Include the artifact section.
    #[serde(default)]
    pub include_artifact_details: bool,
    /// Deliveries per minute (token bucket); 0 = unlimited.
    #[serde(default = "sixty")]
    pub rate_per_minute: u32,
    /// Deliveries in progress at once (>= 1).
    #[serde(default = "four")]
    pub max_in_flight: u32,
    /// Seconds of retrying before a delivery goes to `talon.dlq.notify`.
    #[serde(default = "one_day")]
    pub retry_deadline_seconds: u64,
    /// Web hook URL, written in the file (or the PagerDuty endpoint override).
    #[serde(default)]
    pub(super) url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub(super) url_env: Option<String>,
    /// File holding the URL.
    #[serde(default)]
    pub(super) url_file: Option<PathBuf>,
    /// pagerduty: environment variable holding the routing key.
    #[serde(default)]
    pub(super) routing_key_env: Option<String>,
    /// pagerduty: file holding the routing key.
    #[serde(default)]
    pub(super) routing_key_file: Option<PathBuf>,
    /// slack, mattermost: chat channel to post to (Slack's app web hooks
    /// ignore it; its legacy ones and Mattermost honour it).
    #[serde(default)]
    pub(super) channel: Option<String>,
    /// slack, mattermost, discord: name to post as.
    #[serde(default)]
    pub(super) username: Option<String>,
    /// slack, mattermost, discord: icon to post with (Discord's `avatar_url`).
    #[serde(default)]
    pub(super) icon_url: Option<String>,
    /// webhook: extra request headers.
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    /// webhook: environment variable holding the HMAC-SHA256 signing secret
    /// (`X-Talon-Signature: sha256=<hex>` over `<X-Talon-Timestamp>.<body>`).
    #[serde(default)]
    pub(super) signing_secret_env: Option<String>,
    /// webhook: file holding the signing secret.
    #[serde(default)]
    pub(super) signing_secret_file: Option<PathBuf>,
    /// Alerts with equal values of these fields become one message (see
    /// [`Grouping`]); unset: one message per alert.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Seconds a new group waits for more alerts before its first message.
    #[serde(default = "thirty")]
    pub group_wait: u64,
    /// Seconds between a group's messages while alerts keep coming.
    #[serde(default = "five_minutes")]
    pub group_interval: u64,
    /// Alerts listed in one group message (the rest are counted).
    #[serde(default = "hundred")]
    pub group_max_alerts: usize,
    /// A schedule (`daily 08:00 Europe/Berlin`): one message per schedule
    /// with everything routed to the channel since the previous one.
    #[serde(default)]
    pub digest: Option<String>,
}

impl ChannelConfig {
    /// A channel with every optional key at its default.
    pub fn new(id: &str, kind: ChannelKind) -> ChannelConfig {
        ChannelConfig {
            id: id.to_owned(),
            kind,
            secret: None,
            recipients: None,
            recipient_roles: None,
            alert_include: include_all(),
            alert_exclude: String::new(),
            severity_threshold: None,
            require_severity: false,
            include_client_details: true,
            include_flow_details: true,
            include_artifact_details: false,
            rate_per_minute: sixty(),
            max_in_flight: four(),
            retry_deadline_seconds: one_day(),
            url: None,
            url_env: None,
            url_file: None,
            routing_key_env: None,
            routing_key_file: None,
            channel: None,
            username: None,
            icon_url: None,
            headers: BTreeMap::new(),
            signing_secret_env: None,
            signing_secret_file: None,
            group_by: None,
            group_wait: thirty(),
            group_interval: five_minutes(),
            group_max_alerts: hundred(),
            digest: None,
        }
    }

    /// How this channel groups its alerts, when it does (`group_by` or
    /// `digest` set); loading checked the keys.
    pub fn grouping(&self) -> Option<Grouping> {
        Grouping::of(self).ok().flatten()
    }

    /// What this channel's kind-specific keys say, typed by kind. Loading
    /// checked that every channel of a [`Config`](super::Config) has one; for
    /// a channel built by hand, the error names the key under
    /// `channels[id=<id>]`, as the run-time errors of a channel do.
    pub fn spec(
        &self,
        secrets: &BTreeMap<String, SecretConfig>,
    ) -> Result<ChannelSpec, ConfigError> {
        let src = Source::new("", "", None);
        let at = Report {
            src: &src,
            here: KeyPath::default(),
            within: Some(self.prefix()),
        };
        self.build(&at, secrets)
    }

    /// The key prefix of this channel in run-time errors: `channels[id=<id>]`.
    fn prefix(&self) -> String {
        format!("channels[id={}]", self.id)
    }

    /// The spec of this channel's kind, from the function of that kind: a
    /// new kind is one [`ChannelKind`] variant and one such function.
    fn build(
        &self,
        at: &Report<'_>,
        secrets: &BTreeMap<String, SecretConfig>,
    ) -> Result<ChannelSpec, ConfigError> {
        Ok(match self.kind {
            ChannelKind::Email => ChannelSpec::Email(email(self, at, secrets)?),
            ChannelKind::Inbox => ChannelSpec::Inbox(inbox(self, at)?),
            ChannelKind::Webhook => ChannelSpec::Webhook(webhook(self, at)?),
            // Only these services let a web hook pick its channel, name or icon.
            ChannelKind::Slack | ChannelKind::Mattermost => {
                ChannelSpec::Chat(chat(self, at, &["channel", "username", "icon_url"])?)
            }
            ChannelKind::Discord => ChannelSpec::Chat(chat(self, at, &["username", "icon_url"])?),
            ChannelKind::Teams | ChannelKind::Googlechat => ChannelSpec::Chat(chat(self, at, &[])?),
            ChannelKind::Pagerduty => ChannelSpec::Chat(pagerduty(self, at)?),
        })
    }

    /// Every check of the file's keys: the shared ones first, then those of
    /// the kind (its spec is built and dropped: the services build it again).
    pub(super) fn validate(
        &self,
        src: &Source<'_>,
        here: &KeyPath,
        severity_levels: &[String],
        secrets: &BTreeMap<String, SecretConfig>,
    ) -> Result<(), ConfigError> {
        if !is_subject_token(&self.id) {
            return Err(src.error(
                &here.key("id"),
                format!(
                    "{:?} is not a channel id (one or more of A-Z, a-z, 0-9, _ and -)",
                    self.id
                ),
            ));
        }
        check::regex(src, &here.key("alert_include"), &self.alert_include)?;
        check::regex(src, &here.key("alert_exclude"), &self.alert_exclude)?;
        if let Some(roles) = &self.recipient_roles {
            check::regex(src, &here.key("recipient_roles"), roles)?;
        }
        if let Some(threshold) = &self.severity_threshold {
            check_threshold(
                src,
                &here.key("severity_threshold"),
                threshold,
                severity_levels,
            )?;
        }
        if self.max_in_flight == 0 {
            return Err(src.error(&here.key("max_in_flight"), "must be at least 1"));
        }
        if let Err((key, reason)) = Grouping::of(self) {
            return Err(src.error(&here.key(key), reason));
        }
        self.check_sources(src, here)?;
        let at = Report {
            src,
            here: here.clone(),
            within: None,
        };
        self.build(&at, secrets).map(drop)
    }

    /// The URL, routing key and signing secret each come from one key at
    /// most, and a URL written in the file is an http(s) one; whatever the
    /// kind, so these are reported before a key the kind does not take.
    fn check_sources(&self, src: &Source<'_>, here: &KeyPath) -> Result<(), ConfigError> {
        check::at_most_one(
            src,
            here,
            &[
                ("url", self.url.is_some()),
                ("url_env", self.url_env.is_some()),
                ("url_file", self.url_file.is_some()),
            ],
        )?;
        check::at_most_one(
            src,
            here,
            &[
                ("signing_secret_env", self.signing_secret_env.is_some()),
                ("signing_secret_file", self.signing_secret_file.is_some()),
            ],
        )?;
        check::at_most_one(
            src,
            here,
            &[
                ("routing_key_env", self.routing_key_env.is_some()),
                ("routing_key_file", self.routing_key_file.is_some()),
            ],
        )?;
        match &self.url {
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => Err(src
                .error(
                    &here.key("url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                )),
            _ => Ok(()),
        }
    }

    /// Every key only some kinds take, and whether it is set, in the order
    /// a key the kind does not take is looked for.
    fn kind_keys(&self) -> [(&'static str, bool); 14] {
        [
            ("secret", self.secret.is_some()),
            ("recipients", self.recipients.is_some()),
            ("recipient_roles", self.recipient_roles.is_some()),
            ("url", self.url.is_some()),
            ("url_env", self.url_env.is_some()),
            ("url_file", self.url_file.is_some()),
            ("routing_key_env", self.routing_key_env.is_some()),
            ("routing_key_file", self.routing_key_file.is_some()),
            ("channel", self.channel.is_some()),
            ("username", self.username.is_some()),
            ("icon_url", self.icon_url.is_some()),
            ("headers", !self.headers.is_empty()),
            ("signing_secret_env", self.signing_secret_env.is_some()),
            ("signing_secret_file", self.signing_secret_file.is_some()),
        ]
    }

    /// Where `<key>_env` or `<key>_file` says a secret is, when one is set
    /// (the variable first, as they were always read).
    fn secret_at(
        &self,
        key: &str,
        var: &Option<String>,
        path: &Option<PathBuf>,
    ) -> Option<ValueFrom> {
        let prefix = self.prefix();
        match (var, path) {
            (Some(var), _) => Some(ValueFrom::Env {
                key: format!("{prefix}.{key}_env"),
                var: var.clone(),
            }),
            (None, Some(path)) => Some(ValueFrom::File {
                key: format!("{prefix}.{key}_file"),
                path: path.clone(),
            }),
            (None, None) => None,
        }
    }

    /// Where the URL is: `url_env`, `url_file` or `url`, when one is set.
    fn url_at(&self) -> Option<ValueFrom> {
        self.secret_at("url", &self.url_env, &self.url_file)
            .or_else(|| self.url.clone().map(ValueFrom::Text))
    }

    /// The error naming the first key set that the kind does not take
    /// (`takes` lists the kind-specific keys it does).
    fn only(&self, at: &Report<'_>, takes: &[&str]) -> Result<(), ConfigError> {
        let keys = self.kind_keys();
        debug_assert!(
            takes.iter().all(|t| keys.iter().any(|(k, _)| k == t)),
            "{takes:?} names a key that is not kind-specific"
        );
        match keys.iter().find(|(key, set)| *set && !takes.contains(key)) {
            Some((key, _)) => Err(at.error(
                &at.key(key),
                format!("does not apply to {} channels", self.kind),
            )),
            None => Ok(()),
        }
    }
}

/// `severity_threshold` at `path` names one severity at least, each one of
/// `enrich.severity_levels`.
fn check_threshold(
    src: &Source<'_>,
    path: &KeyPath,
    threshold: &SeverityThreshold,
    severity_levels: &[String],
) -> Result<(), ConfigError> {
    let names = threshold.names();
    if names.is_empty() {
        return Err(src.error(path, "must name at least one severity"));
    }
    for (i, name) in names.into_iter().enumerate() {
        if !severity_levels.iter().any(|l| l == name) {
            let at = match threshold {
                SeverityThreshold::AtLeast(_) => path.clone(),
                SeverityThreshold::Exactly(_) => path.index(i),
            };
            return Err(src.error(
                &at,
                format!(
                    "{name:?} is not one of enrich.severity_levels ({})",
                    severity_levels.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// What a channel's kind-specific keys say, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSpec {
    /// `email`: mail through an SMTP server.
    Email(EmailSpec),
    /// `inbox`: the in-app inbox of the chosen users.
    Inbox(InboxSpec),
    /// `webhook`: a JSON POST of the alert.
    Webhook(WebhookSpec),
    /// One of [`ChannelKind::CHAT`]: a body of the service's own, POSTed.
    Chat(ChatSpec),
}

/// An email channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSpec {
    /// The `[secrets.<name>]` table with the SMTP server; it names a server
    /// and a From.
    pub secret: String,
    /// The addresses mailed (one at least).
    pub recipients: Vec<String>,
}

/// An inbox channel: the users whose name matches `recipients` and one of
/// whose roles matches `recipient_roles` (both regexes that compile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxSpec {
    /// Regex on user names ([`DEFAULT_INBOX_RECIPIENTS`] when unset).
    pub recipients: String,
    /// Regex on user roles ([`DEFAULT_INBOX_RECIPIENT_ROLES`] when unset).
    pub recipient_roles: String,
}

impl Default for InboxSpec {
    /// Every user who is an administrator.
    fn default() -> InboxSpec {
        InboxSpec {
            recipients: DEFAULT_INBOX_RECIPIENTS.to_owned(),
            recipient_roles: DEFAULT_INBOX_RECIPIENT_ROLES.to_owned(),
        }
    }
}

/// A generic web hook channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    /// Where the URL is (`url`, `url_env` or `url_file`).
    pub url: ValueFrom,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Where the HMAC-SHA256 signing secret is, when the requests are signed.
    pub signing_secret: Option<ValueFrom>,
}

/// A chat or incident channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSpec {
    /// Which service: one of [`ChannelKind::CHAT`].
    pub kind: ChannelKind,
    /// Where the URL is; a pagerduty channel without one posts to
    /// [`PAGERDUTY_EVENTS_URL`].
    pub url: ValueFrom,
    /// slack, mattermost: the chat channel to post to.
    pub channel: Option<String>,
    /// slack, mattermost, discord: the name to post as.
    pub username: Option<String>,
    /// slack, mattermost, discord: the icon to post with.
    pub icon_url: Option<String>,
    /// pagerduty (and only pagerduty): where the routing key is.
    pub routing_key: Option<ValueFrom>,
}

/// Where a value a channel names is: written in the file, or in an
/// environment variable or a file read only by the service that uses it (so
/// a service starts without the secrets of the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFrom {
    /// Written in the file.
    Text(String),
    /// In environment variable `var`, named by `key` (`channels[id=<id>].url_env`).
    Env { key: String, var: String },
    /// In the file at `path`, named by `key` (`channels[id=<id>].url_file`).
    File { key: String, path: PathBuf },
}

impl ValueFrom {
    /// The value, read now. An unset or empty variable, or an unreadable or
    /// empty file, is an error naming the key; a file's trailing line break
    /// is not part of the value.
    pub fn read(&self, env: &Env) -> Result<String, ConfigError> {
        let read = match self {
            ValueFrom::Text(value) => return Ok(value.clone()),
            ValueFrom::Env { key, var } => resolve(key, Some(var), key, None, env),
            ValueFrom::File { key, path } => resolve(key, None, key, Some(path), env),
        };
        // `resolve` gives no value only when given neither a variable nor a file.
        read.map(Option::unwrap_or_default)
    }

    /// [`ValueFrom::read`] for a URL: one read from the environment or a
    /// file loses the blanks around it.
    pub fn read_url(&self, env: &Env) -> Result<String, ConfigError> {
        match self {
            ValueFrom::Text(url) => Ok(url.clone()),
            _ => self.read(env).map(|url| url.trim().to_owned()),
        }
    }
}

/// Where the problems of a channel's kind-specific keys are reported: on
/// their lines in the file while loading (`channels[0].url_env`), under the
/// channel's id for a channel built by hand (`channels[id=hook].url_env`).
struct Report<'a> {
    src: &'a Source<'a>,
    /// The channel's path in the file; empty for a channel built by hand.
    here: KeyPath,
    /// `channels[id=<id>]`, for a channel built by hand.
    within: Option<String>,
}

impl Report<'_> {
    /// The path of the channel's `key`.
    fn key(&self, key: &str) -> KeyPath {
        self.here.key(key)
    }

    /// An error about `path`, one of the channel's.
    fn error(&self, path: &KeyPath, message: impl fmt::Display) -> ConfigError {
        self.place(self.src.error(path, message))
    }

    /// An error about a key of another table (`secrets.<name>.server`),
    /// named from the top of the file.
    fn error_elsewhere(&self, path: &KeyPath, message: impl fmt::Display) -> ConfigError {
        self.src.error(path, message)
    }

    /// `pattern` at `path`, one of the channel's, compiles as a regex.
    fn regex(&self, path: &KeyPath, pattern: &str) -> Result<(), ConfigError> {
        check::regex(self.src, path, pattern).map_err(|e| self.place(e))
    }

    fn place(&self, e: ConfigError) -> ConfigError {
        match &self.within {
            Some(prefix) => e.within(prefix),
            None => e,
        }
    }
}

/// email: a `[secrets.<name>]` table naming a server and a From, and a list
/// of one address at least.
fn email(
    c: &ChannelConfig,
    at: &Report<'_>,
    secrets: &BTreeMap<String, SecretConfig>,
) -> Result<EmailSpec, ConfigError> {
    c.only(at, &["secret", "recipients"])?;
    let secret = smtp_secret(c, at, secrets)?;
    let path = at.key("recipients");
    let recipients = match &c.recipients {
        Some(Recipients::List(list)) if !list.is_empty() => list,
        Some(Recipients::Pattern(_)) => {
            return Err(at.error(
                &path,
                "an email channel's recipients is a list of addresses",
            ))
        }
        _ => {
            return Err(at.error(
                &path,
                "an email channel needs at least one recipient address",
            ))
        }
    };
    if let Some((i, address)) = recipients
        .iter()
        .enumerate()
        .find(|(_, a)| !a.contains('@'))
    {
        return Err(at.error(
            &path.index(i),
            format!("{address:?} is not an e-mail address"),
        ));
    }
    Ok(EmailSpec {
        secret,
        recipients: recipients.clone(),
    })
}

/// email: the name in `secret`, of a `[secrets.<name>]` table that names a
/// server and a From.
fn smtp_secret(
    c: &ChannelConfig,
    at: &Report<'_>,
    secrets: &BTreeMap<String, SecretConfig>,
) -> Result<String, ConfigError> {
    let path = at.key("secret");
    let Some(name) = &c.secret else {
        return Err(at.error(
            &path,
            "an email channel needs secret, the name of a [secrets.<name>] table with its SMTP server",
        ));
    };
    let Some(secret) = secrets.get(name) else {
        let known: Vec<&str> = secrets.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        return Err(at.error(
            &path,
            format!("no [secrets.{name}] table (there are: {known})"),
        ));
    };
    let table = KeyPath::of("secrets").key(name);
    for (key, set) in [
        ("server", secret.server.is_some()),
        ("from", secret.from.is_some()),
    ] {
        if !set {
            return Err(at.error_elsewhere(
                &table.key(key),
                format!("needed by email channel {:?}", c.id),
            ));
        }
    }
    Ok(name.clone())
}

/// inbox: `recipients` a regex on user names, `recipient_roles` one on roles.
fn inbox(c: &ChannelConfig, at: &Report<'_>) -> Result<InboxSpec, ConfigError> {
    c.only(at, &["recipients", "recipient_roles"])?;
    let mut spec = InboxSpec::default();
    match &c.recipients {
        Some(Recipients::List(_)) => {
            return Err(at.error(
                &at.key("recipients"),
                "an inbox channel's recipients is a regex on user names, not a list",
            ))
        }
        Some(Recipients::Pattern(p)) => {
            at.regex(&at.key("recipients"), p)?;
            spec.recipients = p.clone();
        }
        None => {}
    }
    if let Some(roles) = &c.recipient_roles {
        spec.recipient_roles = roles.clone();
    }
    Ok(spec)
}

/// webhook: a URL, headers, and a signing secret when the requests are signed.
fn webhook(c: &ChannelConfig, at: &Report<'_>) -> Result<WebhookSpec, ConfigError> {
    c.only(
        at,
        &[
            "url",
            "url_env",
            "url_file",
            "headers",
            "signing_secret_env",
            "signing_secret_file",
        ],
    )?;
    Ok(WebhookSpec {
        url: needs_url(c, at)?,
        headers: c.headers.clone(),
        signing_secret: c.secret_at(
            "signing_secret",
            &c.signing_secret_env,
            &c.signing_secret_file,
        ),
    })
}

/// A chat kind: a URL, and the keys of `options` (some of `channel`,
/// `username` and `icon_url`) that its service honours.
fn chat(c: &ChannelConfig, at: &Report<'_>, options: &[&str]) -> Result<ChatSpec, ConfigError> {
    let takes: Vec<&str> = ["url", "url_env", "url_file"]
        .into_iter()
        .chain(options.iter().copied())
        .collect();
    c.only(at, &takes)?;
    Ok(ChatSpec {
        kind: c.kind,
        url: needs_url(c, at)?,
        channel: c.channel.clone(),
        username: c.username.clone(),
        icon_url: c.icon_url.clone(),
        routing_key: None,
    })
}

/// pagerduty: a routing key, and a URL that defaults to the Events API's.
fn pagerduty(c: &ChannelConfig, at: &Report<'_>) -> Result<ChatSpec, ConfigError> {
    c.only(
        at,
        &[
            "url",
            "url_env",
            "url_file",
            "routing_key_env",
            "routing_key_file",
        ],
    )?;
    let Some(routing_key) = c.secret_at("routing_key", &c.routing_key_env, &c.routing_key_file)
    else {
        return Err(at.error(
            &at.key("routing_key_env"),
            "a pagerduty channel needs routing_key_env or routing_key_file",
        ));
    };
    Ok(ChatSpec {
        kind: c.kind,
        url: c
            .url_at()
            .unwrap_or_else(|| ValueFrom::Text(PAGERDUTY_EVENTS_URL.to_owned())),
        channel: None,
        username: None,
        icon_url: None,
        routing_key: Some(routing_key),
    })
}

/// The URL of a kind that has no default one.
fn needs_url(c: &ChannelConfig, at: &Report<'_>) -> Result<ValueFrom, ConfigError> {
    c.url_at().ok_or_else(|| {
        at.error(
            &at.key("url_env"),
            format!("a {} channel needs url, url_env or url_file", c.kind),
        )
    })
}
