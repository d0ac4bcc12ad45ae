//! The configuration file: one TOML file for the whole suite, each
//! service reading its own tables.
//!
//! [`Config::load`] reads, parses and validates the whole file, so a bad key
//! anywhere stops every service with one line naming the key and its line.
//! Secrets are *not* resolved at load: each service resolves only its own
//! (`NatsConfig::password`, `ValueFrom::read` of a channel's spec, `SecretConfig::password`,
//! ...), so ingest starts without the SMTP password. The environment is handed
//! in as an [`Env`] value; tests never touch the process environment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod channels;
mod check;
mod console;
mod dedup;
mod enrich;
mod error;
mod ingest;
mod locate;
mod nats;
mod notify;
mod rules;
mod secret;
mod secrets;
#[cfg(test)]
mod tests;
mod tokens;

pub use channels::{
    ChannelConfig, ChannelKind, ChannelSpec, ChatSpec, EmailSpec, Grouping, InboxSpec, Recipients,
    SeverityThreshold, ValueFrom, WebhookSpec, DEFAULT_INBOX_RECIPIENTS,
    DEFAULT_INBOX_RECIPIENT_ROLES, PAGERDUTY_EVENTS_URL,
};
pub use console::{ConsoleConfig, UserConfig, VelociraptorConfig, MAX_HISTORY_DAYS};
pub use dedup::{DedupConfig, DedupOverride};
pub use enrich::{EnrichConfig, SeverityTransform};
pub use error::ConfigError;
pub use ingest::IngestConfig;
pub use nats::{NatsConfig, DEFAULT_DLQ_MAX_BYTES, DEFAULT_NATS_URL, NATS_URL_ENV};
pub use notify::NotifyConfig;
pub use rules::{RuleAlert, RuleConfig, RuleKind, MAX_RULE_SECONDS};
pub use secrets::{SecretConfig, SECRET_TLS_MODES};
pub use tokens::{check_tokens, split_tokens, MIN_TOKEN_CHARS};

use locate::{KeyPath, Source};

/// The origin shown in errors for a configuration given as text.
pub const TEXT_ORIGIN: &str = "<config>";

/// The process environment, handed in as a value (tests never call `set_var`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    /// The environment of this process (variables that are not UTF-8 are left out).
    pub fn from_process() -> Env {
        Env(std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect())
    }

    /// The value of variable `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// This environment with `k` set to `v` (for tests).
    pub fn with(mut self, k: &str, v: &str) -> Env {
        self.0.insert(k.to_owned(), v.to_owned());
        self
    }
}

/// The whole configuration file. Every table is optional: an empty file is a
/// complete configuration of defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[nats]`: the server and credentials every service uses.
    pub nats: NatsConfig,
    /// `[ingest]`: the HTTP edge and partitioning.
    pub ingest: IngestConfig,
    /// `[[rules]]`: monitoring rows turned into alerts by ingest.
    pub rules: Vec<RuleConfig>,
    /// `[dedup]`: suppression windows.
    pub dedup: DedupConfig,
    /// `[enrich]`: context and severity.
    pub enrich: EnrichConfig,
    /// `[notify]`: delivery.
    pub notify: NotifyConfig,
    /// `[console]`: the web console and its users.
    pub console: ConsoleConfig,
    /// `[velociraptor]`: links into its GUI.
    pub velociraptor: VelociraptorConfig,
    /// `[[channels]]`: where alerts are delivered.
    pub channels: Vec<ChannelConfig>,
    /// `[secrets.<name>]`: SMTP servers and their credentials, by name.
    pub secrets: BTreeMap<String, SecretConfig>,
    /// What the file says in an earlier release's words, read all the same
    /// (each service logs these at start).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads, parses and validates the file at `path`, then applies the
    /// environment's overrides (`TALON_NATS_URL` replaces `nats.url`).
    pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: String::new(),
            line: None,
            message: format!("cannot read the configuration: {e}"),
            origin: origin.clone(),
        })?;
        Config::parse_from(&origin, &text, env)
    }

    /// [`Config::load`] from text; errors show the origin `<config>`.
    pub fn parse(text: &str, env: &Env) -> Result<Config, ConfigError> {
        Config::parse_from(TEXT_ORIGIN, text, env)
    }

    fn parse_from(origin: &str, text: &str, env: &Env) -> Result<Config, ConfigError> {
        let root = toml::de::DeTable::parse(text).map_err(|e| syntax_error(origin, text, &e))?;
        let src = Source::new(origin, text, Some(root.get_ref()));
        let de = toml::de::Deserializer::from(root.clone());
        let mut config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| serde_error(&src, e))?;
        if let Some(url) = env.get(NATS_URL_ENV).filter(|u| !u.is_empty()) {
            config.nats.url = url.to_owned();
        }
        config.nats.apply_env(env)?;
        config.validate(&src)?;
        config.move_legacy_keys(&src)?;
        Ok(config)
    }

    /// Every check that needs more than the types: regexes compile, names are
    /// unique and usable as subject tokens, each channel kind has its keys.
    fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        self.nats.validate(src)?;
        self.ingest.validate(src)?;
        let rules = KeyPath::of("rules");
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate(src, &rules.index(i))?;
        }
        check::unique(
            src,
            self.rules
                .iter()
                .enumerate()
                .map(|(i, r)| (rules.index(i).key("name"), r.name.as_str())),
            "rule name",
        )?;
        self.dedup.validate(src, self.ingest.partitions)?;
        self.enrich.validate(src)?;
        self.notify.validate(src)?;
        self.console.validate(src)?;
        self.velociraptor.validate(src)?;
        let secrets = KeyPath::of("secrets");
        for (name, secret) in &self.secrets {
            secret.validate(src, &secrets.key(name))?;
        }
        let channels = KeyPath::of("channels");
        for (i, channel) in self.channels.iter().enumerate() {
            channel.validate(
                src,
                &channels.index(i),
                &self.enrich.severity_levels,
                &self.secrets,
            )?;
        }
        check::unique(
            src,
            self.channels
                .iter()
                .enumerate()
                .map(|(i, c)| (channels.index(i).key("id"), c.id.as_str())),
            "channel id",
        )
    }

    /// `[[notify.users]]` and `[notify].cookie_secure` of releases where
    /// notify served the console become `[console]`'s, with a warning; both
    /// places set is an error.
    fn move_legacy_keys(&mut self, src: &Source<'_>) -> Result<(), ConfigError> {
        if !self.notify.users.is_empty() {
            if !self.console.users.is_empty() {
                return Err(src.error(
                    &KeyPath::of("notify").key("users"),
                    "give the users in [[console.users]] only ([[notify.users]] of earlier releases is read only without them)",
                ));
            }
            self.console.users = std::mem::take(&mut self.notify.users);
            self.warnings.push(
                "[[notify.users]] is read as [[console.users]]: rename the tables (the console is its own service now)".into(),
            );
        }
        if let Some(secure) = self.notify.cookie_secure.take() {
            if self.console.cookie_secure.is_some() {
                return Err(src.error(
                    &KeyPath::of("notify").key("cookie_secure"),
                    "set [console].cookie_secure only",
                ));
            }
            self.console.cookie_secure = Some(secure);
            self.warnings.push(
                "[notify].cookie_secure is read as [console].cookie_secure: move the key".into(),
            );
        }
        Ok(())
    }

    /// The channel with id `id`.
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The password of `[secrets.<name>]`, with errors keyed `secrets.<name>.…`.
    pub fn secret_password(&self, name: &str, env: &Env) -> Result<Option<String>, ConfigError> {
        let prefix = KeyPath::of("secrets").key(name).to_string();
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| ConfigError::new(prefix.clone(), "no such table"))?;
        secret.password(env).map_err(|e| e.within(&prefix))
    }
}

/// A TOML syntax error, on its line; no key (the document did not parse),
/// but a duplicate key is named in the message.
fn syntax_error(origin: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let src = Source::new(origin, text, None);
    let mut message = e.message().to_owned();
    let spanned = e.span().and_then(|s| text.get(s));
    if let Some(key) = spanned.filter(|k| !k.is_empty() && !k.contains('\n')) {
        if message.starts_with("duplicate") {
            message = format!("{message} {key}");
        }
    }
    ConfigError {
        key: String::new(),
        line: e.span().map(|s| src.line_at(s.start)),
        message: error::one_line(&message),
        origin: origin.to_owned(),
    }
}

/// A deserializing error, with its key path and line, and serde's wording
/// turned into the file's (`unknown key`, `missing key`).
fn serde_error(src: &Source<'_>, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let mut path = KeyPath::from_serde(e.path());
    let inner = e.inner();
    let raw = inner.message();
    let message = if let Some(rest) = raw.strip_prefix("unknown field `") {
        match rest.split_once("`, expected ") {
            Some((_, expected)) => format!("unknown key (expected {})", expected.replace('`', "")),
            None => "unknown key".to_owned(),
        }
    } else if let Some(rest) = raw.strip_prefix("missing field `") {
        path = path.key(rest.trim_end_matches('`'));
        "missing key".to_owned()
    } else if let Some(rest) = raw.strip_prefix("unknown variant `") {
        match rest.split_once("`, expected ") {
            Some((value, expected)) => format!(
                "unknown value {value:?} (expected {})",
                expected.replace('`', "")
            ),
            None => raw.to_owned(),
        }
    } else {
        raw.to_owned()
    };
    let line = inner
        .span()
        .map(|s| src.line_at(s.start))
        .or_else(|| src.line_of(&path));
    ConfigError {
        key: path.to_string(),
        line,
        message: error::one_line(&message),
        origin: src.origin.to_owned(),
    }
}
