//! `[notify]`: the inbox console and its users.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use talon_proto::names::is_subject_token;

use super::check;
use super::locate::{KeyPath, Source};
use super::secret::resolve;
use super::{ConfigError, Env};

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Address of the inbox console (`/`), its API (`/v1/...`), health and metrics.
    pub http_listen: String,
    /// The console's users (`[[notify.users]]`).
    pub users: Vec<UserConfig>,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Unset: on
    /// when `http_listen` is not a loopback address (the console is then
    /// reached through a TLS proxy), off on loopback.
    pub cookie_secure: Option<bool>,
    /// The ids of the channels this replica delivers (`--channels`
    /// replaces it); unset: every channel of `[[channels]]`.
    pub channels: Option<Vec<String>>,
}

/// One `[[notify.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name; also the subject token of `talon.inbox.<name>`.
    pub name: String,
    /// Roles, matched by inbox channels' `recipient_roles`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Environment variable holding the argon2 password hash.
    #[serde(default)]
    pub password_hash_env: Option<String>,
    /// File holding the argon2 password hash.
    #[serde(default)]
    pub password_hash_file: Option<PathBuf>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            http_listen: "127.0.0.1:8473".to_owned(),
            users: Vec::new(),
            cookie_secure: None,
            channels: None,
        }
    }
}

impl NotifyConfig {
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
        .map_err(|e| e.within(&format!("notify.users[name={}]", self.name)))
    }
}

impl NotifyConfig {
    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("notify");
        check::listen(src, &here.key("http_listen"), &self.http_listen)?;
        let users = here.key("users");
        for (i, user) in self.users.iter().enumerate() {
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
            self.users
                .iter()
                .enumerate()
                .map(|(i, u)| (users.index(i).key("name"), u.name.as_str())),
            "user name",
        )
    }
}
