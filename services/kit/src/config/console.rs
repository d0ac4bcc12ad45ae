//! `[console]`: the web console's address, history and users;
//! `[velociraptor]`: where its links into the Velociraptor GUI point.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use talon_proto::names::is_subject_token;

use super::check;
use super::locate::{KeyPath, Source};
use super::secret::resolve;
use super::{ConfigError, Env};

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Address of the page (`/`), its API (`/v1/...`), health and metrics.
    pub http_listen: String,
    /// How long `HISTORY` keeps an alert (and `TRIAGE` its events), in days.
    pub history_days: u32,
    /// The console's users (`[[console.users]]`).
    pub users: Vec<UserConfig>,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Unset: on
    /// when `http_listen` is not a loopback address (the console is then
    /// reached through a TLS proxy), off on loopback.
    pub cookie_secure: Option<bool>,
    /// How long a silence may last, in days.
    pub silence_max_days: u32,
    /// Where people reach the console (`https://talon.example.org`); set,
    /// group mails link each alert to its page there.
    pub public_url: Option<String>,
}

/// `history_days` at most: ten years.
pub const MAX_HISTORY_DAYS: u32 = 3650;
/// `silence_max_days` at most: a year.
pub const MAX_SILENCE_DAYS: u32 = 366;

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            http_listen: "127.0.0.1:8475".to_owned(),
            history_days: 90,
            users: Vec::new(),
            cookie_secure: None,
            silence_max_days: 30,
            public_url: None,
        }
    }
}

impl ConsoleConfig {
    /// `cookie_secure`, or its default for `http_listen`.
    pub fn cookie_secure(&self) -> bool {
        self.cookie_secure.unwrap_or_else(|| {
            let host = self
                .http_listen
                .rsplit_once(':')
                .map_or(self.http_listen.as_str(), |(h, _)| h)
                .trim_matches(|c| c == '[' || c == ']');
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            !loopback
        })
    }

    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("console");
        check::listen(src, &here.key("http_listen"), &self.http_listen)?;
        if !(1..=MAX_HISTORY_DAYS).contains(&self.history_days) {
            return Err(src.error(
                &here.key("history_days"),
                format!("must be 1 to {MAX_HISTORY_DAYS}, not {}", self.history_days),
            ));
        }
        if !(1..=MAX_SILENCE_DAYS).contains(&self.silence_max_days) {
            return Err(src.error(
                &here.key("silence_max_days"),
                format!(
                    "must be 1 to {MAX_SILENCE_DAYS}, not {}",
                    self.silence_max_days
                ),
            ));
        }
        if let Some(url) = &self.public_url {
            base_url(
                src,
                &here.key("public_url"),
                url,
                "https://talon.example.org",
            )?;
        }
        validate_users(src, &here.key("users"), &self.users)
    }

    /// `public_url` without a trailing `/`, as a URL parser writes it.
    pub fn public_base(&self) -> Option<String> {
        let url = reqwest::Url::parse(self.public_url.as_deref()?).ok()?;
        Some(url.as_str().trim_end_matches('/').to_owned())
    }

    /// `silence_max_days` as a duration.
    pub fn silence_max(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.silence_max_days) * 86_400)
    }
}

/// One `[[console.users]]` entry (or `[[notify.users]]` of earlier releases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name; also the subject token of `talon.inbox.<name>`.
    pub name: String,
    /// Roles: `reader` views, `analyst` also triages and silences,
    /// `administrator` does everything; inbox channels' `recipient_roles`
    /// match them too.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Environment variable holding the argon2 password hash.
    #[serde(default)]
    pub password_hash_env: Option<String>,
    /// File holding the argon2 password hash.
    #[serde(default)]
    pub password_hash_file: Option<PathBuf>,
    /// Environment variable holding the user's console API tokens
    /// (comma-separated, each at least 24 characters): `Authorization:
    /// Bearer <token>` acts as this user, for scripts and `talonctl alerts`.
    #[serde(default)]
    pub tokens_env: Option<String>,
}

impl UserConfig {
    /// The password hash from `password_hash_env` or `password_hash_file`;
    /// `None` when neither is set (the user cannot log in).
    pub fn password_hash(&self, env: &Env) -> Result<Option<String>, ConfigError> {
        resolve(
            "password_hash_env",
            self.password_hash_env.as_deref(),
            "password_hash_file",
            self.password_hash_file.as_deref(),
            env,
        )
        .map_err(|e| e.within(&format!("console.users[name={}]", self.name)))
    }

    /// The API tokens of `tokens_env` (none when unset), checked as
    /// ingest's are: at least 24 characters, no example value.
    pub fn checked_tokens(&self, env: &Env) -> Result<Vec<String>, ConfigError> {
        let Some(var) = &self.tokens_env else {
            return Ok(Vec::new());
        };
        super::tokens::check_tokens(
            &format!("console.users[name={}].tokens_env", self.name),
            var,
            super::tokens::split_tokens(env, var),
        )
    }
}

/// Names usable as subject tokens and unique; at most one source of hash.
pub(super) fn validate_users(
    src: &Source<'_>,
    users: &KeyPath,
    list: &[UserConfig],
) -> Result<(), ConfigError> {
    for (i, user) in list.iter().enumerate() {
        let path = users.index(i);
        if !is_subject_token(&user.name) {
            return Err(src.error(
                &path.key("name"),
                format!(
                    "{:?} is not a user name (one or more of A-Z, a-z, 0-9, _ and -)",
                    user.name
                ),
            ));
        }
        check::at_most_one(
            src,
            &path,
            &[
                ("password_hash_env", user.password_hash_env.is_some()),
                ("password_hash_file", user.password_hash_file.is_some()),
            ],
        )?;
    }
    check::unique(
        src,
        list.iter()
            .enumerate()
            .map(|(i, u)| (users.index(i).key("name"), u.name.as_str())),
        "user name",
    )
}

/// `[velociraptor]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelociraptorConfig {
    /// The GUI's address, e.g. `https://velociraptor.example.org:8889`;
    /// unset: alerts carry no links.
    pub gui_url: Option<String>,
    /// The org of an alert that names none.
    pub default_org_id: String,
}

impl Default for VelociraptorConfig {
    fn default() -> Self {
        VelociraptorConfig {
            gui_url: None,
            default_org_id: "root".to_owned(),
        }
    }
}

impl VelociraptorConfig {
    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("velociraptor");
        if let Some(url) = &self.gui_url {
            base_url(
                src,
                &here.key("gui_url"),
                url,
                "https://velociraptor.example.org:8889",
            )?;
        }
        if !is_subject_token(&self.default_org_id) {
            return Err(src.error(
                &here.key("default_org_id"),
                format!(
                    "{:?} is not an org id (one or more of A-Z, a-z, 0-9, _ and -)",
                    self.default_org_id
                ),
            ));
        }
        Ok(())
    }

    /// `gui_url` as a URL parser writes it (characters a URL cannot hold
    /// as they are %-escaped), without a trailing `/`; `None` when unset
    /// (or not a URL, which validation refuses).
    pub fn gui_base(&self) -> Option<String> {
        let url = reqwest::Url::parse(self.gui_url.as_deref()?).ok()?;
        Some(url.as_str().trim_end_matches('/').to_owned())
    }
}

/// `url` at `path` is the base of links: http(s), no query, fragment or
/// credentials.
fn base_url(src: &Source<'_>, path: &KeyPath, url: &str, example: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| src.error(path, why);
    let parsed =
        reqwest::Url::parse(url).map_err(|e| bad(&format!("not a URL ({e}): e.g. {example}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must start with https:// (or http://)"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(
            "must not have a query (?) or fragment (#): links add their own",
        ));
    }
    if parsed.username() != "" || parsed.password().is_some() {
        return Err(bad("must not hold a user name or password"));
    }
    Ok(())
}
