//! `[[channels]]`: where enriched alerts go. One flat struct for every kind
//! (serde's tagged enums buffer their input and lose line numbers); the
//! kind-specific rules are checked after deserializing.

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

    /// Is this a web hook kind (posts to a `url`)?
    pub fn is_web_hook(self) -> bool {
        !matches!(self, ChannelKind::Email | ChannelKind::Inbox)
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

/// One `[[channels]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel id; also the subject token of `Server.Monitor.Alerts.<id>`.
    pub id: String,
    /// What it delivers to.
    pub kind: ChannelKind,
    /// email: the `[secrets.<name>]` table with the SMTP server.
    #[serde(default)]
    pub secret: Option<String>,
    /// email: a list of addresses; inbox: a regex on user names (default `.+`).
    #[serde(default)]
    pub recipients: Option<Recipients>,
    /// inbox: regex on user roles (default `^administrator$`).
    #[serde(default)]
    pub recipient_roles: Option<String>,
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
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// pagerduty: environment variable holding the routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// pagerduty: file holding the routing key.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// slack, mattermost: chat channel to post to (Slack's app web hooks
    /// ignore it; its legacy ones and Mattermost honour it).
    #[serde(default)]
    pub channel: Option<String>,
    /// slack, mattermost, discord: name to post as.
    #[serde(default)]
    pub username: Option<String>,
    /// slack, mattermost, discord: icon to post with (Discord's `avatar_url`).
    #[serde(default)]
    pub icon_url: Option<String>,
    /// webhook: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// webhook: environment variable holding the HMAC-SHA256 signing secret
    /// (`X-Talon-Signature: sha256=<hex>` over `<X-Talon-Timestamp>.<body>`).
    #[serde(default)]
    pub signing_secret_env: Option<String>,
    /// webhook: file holding the signing secret.
    #[serde(default)]
    pub signing_secret_file: Option<PathBuf>,
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
        }
    }

    /// webhook: the signing secret from `signing_secret_env` or
    /// `signing_secret_file`, when one is configured.
    pub fn signing_secret(&self, env: &Env) -> Result<Option<String>, ConfigError> {
        resolve(
            "signing_secret_env",
            self.signing_secret_env.as_deref(),
            "signing_secret_file",
            self.signing_secret_file.as_deref(),
            env,
        )
        .map_err(|e| e.within(&self.prefix()))
    }

    /// The key prefix of this channel in run-time errors: `channels[id=<id>]`.
    fn prefix(&self) -> String {
        format!("channels[id={}]", self.id)
    }

    /// The URL to post to: from `url_env`, `url_file` or `url`; a pagerduty
    /// channel without one uses [`PAGERDUTY_EVENTS_URL`].
    pub fn url(&self, env: &Env) -> Result<String, ConfigError> {
        let resolved = resolve(
            "url_env",
            self.url_env.as_deref(),
            "url_file",
            self.url_file.as_deref(),
            env,
        )
        .map_err(|e| e.within(&self.prefix()))?;
        match (resolved, &self.url) {
            (Some(url), _) => Ok(url.trim().to_owned()),
            (None, Some(url)) => Ok(url.clone()),
            (None, None) if self.kind == ChannelKind::Pagerduty => {
                Ok(PAGERDUTY_EVENTS_URL.to_owned())
            }
            (None, None) => Err(ConfigError::new(
                format!("{}.url", self.prefix()),
                format!("a {} channel has no url", self.kind),
            )),
        }
    }

    /// pagerduty: the routing key from `routing_key_env` or `routing_key_file`.
    pub fn routing_key(&self, env: &Env) -> Result<String, ConfigError> {
        resolve(
            "routing_key_env",
            self.routing_key_env.as_deref(),
            "routing_key_file",
            self.routing_key_file.as_deref(),
            env,
        )
        .map_err(|e| e.within(&self.prefix()))?
        .ok_or_else(|| {
            ConfigError::new(
                format!("{}.routing_key_env", self.prefix()),
                "no routing_key_env or routing_key_file",
            )
        })
    }

    /// inbox: the regex on user names (`recipients`, default `.+`).
    pub fn recipient_pattern(&self) -> &str {
        match &self.recipients {
            Some(Recipients::Pattern(p)) => p,
            _ => DEFAULT_INBOX_RECIPIENTS,
        }
    }

    /// inbox: the regex on roles (`recipient_roles`, default `^administrator$`).
    pub fn recipient_roles_pattern(&self) -> &str {
        self.recipient_roles
            .as_deref()
            .unwrap_or(DEFAULT_INBOX_RECIPIENT_ROLES)
    }

    /// email: the addresses in `recipients`.
    pub fn recipient_addresses(&self) -> &[String] {
        match &self.recipients {
            Some(Recipients::List(l)) => l,
            _ => &[],
        }
    }

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
            let path = here.key("severity_threshold");
            let names = threshold.names();
            if names.is_empty() {
                return Err(src.error(&path, "must name at least one severity"));
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
        }
        if self.max_in_flight == 0 {
            return Err(src.error(&here.key("max_in_flight"), "must be at least 1"));
        }
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
        if let Some(url) = &self.url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(src.error(
                    &here.key("url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        self.validate_kind(src, here, secrets)
    }

    /// The keys each kind needs, and refuses.
    fn validate_kind(
        &self,
        src: &Source<'_>,
        here: &KeyPath,
        secrets: &BTreeMap<String, SecretConfig>,
    ) -> Result<(), ConfigError> {
        let kind = self.kind;
        let has_url = self.url.is_some() || self.url_env.is_some() || self.url_file.is_some();
        let has_routing_key = self.routing_key_env.is_some() || self.routing_key_file.is_some();
        // Only these services let a web hook pick its channel, name or icon.
        let picks_channel = matches!(kind, ChannelKind::Slack | ChannelKind::Mattermost);
        let posts_as = picks_channel || kind == ChannelKind::Discord;
        let refused: &[(&str, bool)] = &[
            (
                "secret",
                self.secret.is_some() && kind != ChannelKind::Email,
            ),
            (
                "recipients",
                self.recipients.is_some()
                    && !matches!(kind, ChannelKind::Email | ChannelKind::Inbox),
            ),
            (
                "recipient_roles",
                self.recipient_roles.is_some() && kind != ChannelKind::Inbox,
            ),
            ("url", self.url.is_some() && !kind.is_web_hook()),
            ("url_env", self.url_env.is_some() && !kind.is_web_hook()),
            ("url_file", self.url_file.is_some() && !kind.is_web_hook()),
            (
                "routing_key_env",
                self.routing_key_env.is_some() && kind != ChannelKind::Pagerduty,
            ),
            (
                "routing_key_file",
                self.routing_key_file.is_some() && kind != ChannelKind::Pagerduty,
            ),
            ("channel", self.channel.is_some() && !picks_channel),
            ("username", self.username.is_some() && !posts_as),
            ("icon_url", self.icon_url.is_some() && !posts_as),
            (
                "headers",
                !self.headers.is_empty() && kind != ChannelKind::Webhook,
            ),
            (
                "signing_secret_env",
                self.signing_secret_env.is_some() && kind != ChannelKind::Webhook,
            ),
            (
                "signing_secret_file",
                self.signing_secret_file.is_some() && kind != ChannelKind::Webhook,
            ),
        ];
        if let Some((key, _)) = refused.iter().find(|(_, bad)| *bad) {
            return Err(src.error(&here.key(key), format!("does not apply to {kind} channels")));
        }
        match kind {
            ChannelKind::Email => {
                let path = here.key("secret");
                let Some(name) = &self.secret else {
                    return Err(src.error(
                        &path,
                        "an email channel needs secret, the name of a [secrets.<name>] table with its SMTP server",
                    ));
                };
                let Some(secret) = secrets.get(name) else {
                    let known: Vec<&str> = secrets.keys().map(String::as_str).collect();
                    return Err(src.error(
                        &path,
                        format!(
                            "no [secrets.{name}] table (there are: {})",
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                };
                let table = KeyPath::of("secrets").key(name);
                if secret.server.is_none() {
                    return Err(src.error(
                        &table.key("server"),
                        format!("needed by email channel {:?}", self.id),
                    ));
                }
                if secret.from.is_none() {
                    return Err(src.error(
                        &table.key("from"),
                        format!("needed by email channel {:?}", self.id),
                    ));
                }
                let path = here.key("recipients");
                match &self.recipients {
                    Some(Recipients::List(list)) if !list.is_empty() => {
                        for (i, address) in list.iter().enumerate() {
                            if !address.contains('@') {
                                return Err(src.error(
                                    &path.index(i),
                                    format!("{address:?} is not an e-mail address"),
                                ));
                            }
                        }
                    }
                    Some(Recipients::Pattern(_)) => {
                        return Err(src.error(
                            &path,
                            "an email channel's recipients is a list of addresses",
                        ))
                    }
                    _ => {
                        return Err(src.error(
                            &path,
                            "an email channel needs at least one recipient address",
                        ))
                    }
                }
            }
            ChannelKind::Inbox => match &self.recipients {
                Some(Recipients::List(_)) => {
                    return Err(src.error(
                        &here.key("recipients"),
                        "an inbox channel's recipients is a regex on user names, not a list",
                    ))
                }
                Some(Recipients::Pattern(p)) => check::regex(src, &here.key("recipients"), p)?,
                None => {}
            },
            ChannelKind::Pagerduty => {
                if !has_routing_key {
                    return Err(src.error(
                        &here.key("routing_key_env"),
                        "a pagerduty channel needs routing_key_env or routing_key_file",
                    ));
                }
            }
            ChannelKind::Slack
            | ChannelKind::Mattermost
            | ChannelKind::Teams
            | ChannelKind::Googlechat
            | ChannelKind::Discord
            | ChannelKind::Webhook => {
                if !has_url {
                    return Err(src.error(
                        &here.key("url_env"),
                        format!("a {kind} channel needs url, url_env or url_file"),
                    ));
                }
            }
        }
        Ok(())
    }
}
