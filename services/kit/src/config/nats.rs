//! `[nats]`: how every service reaches NATS.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check;
use super::locate::{KeyPath, Source};
use super::secret::resolve;
use super::{ConfigError, Env};

/// The NATS URL when neither the file nor `TALON_NATS_URL` gives one.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The environment variable that replaces `nats.url`.
pub const NATS_URL_ENV: &str = "TALON_NATS_URL";

/// The environment variable that replaces `nats.user` (and every other
/// credential of the file): each service of a deployment connects as its
/// own NATS user, with one config file for all.
pub const NATS_USER_ENV: &str = "TALON_NATS_USER";

/// The password of `TALON_NATS_USER`.
pub const NATS_PASSWORD_ENV: &str = "TALON_NATS_PASSWORD";

/// The environment variable that replaces `nats.creds_file` (and every
/// other credential of the file).
pub const NATS_CREDS_ENV: &str = "TALON_NATS_CREDS";

/// The inbox prefix of a client that names no user: NATS's own.
pub const DEFAULT_INBOX_PREFIX: &str = "_INBOX";

/// `[nats]`: the server, credentials and stream replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated; `TALON_NATS_URL` or `--nats` replace it.
    pub url: String,
    /// User name for user/password authentication.
    pub user: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding an authentication token.
    pub token_env: Option<String>,
    /// File holding an authentication token.
    pub token_file: Option<PathBuf>,
    /// NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// Where the replies to this client's requests (JetStream acks and API
    /// answers, pulled messages) arrive: `_INBOX_<user>` when a user is
    /// named, else `_INBOX`. The server lets only this user subscribe there
    /// (deploy/nats-users.conf), so no other client can read them.
    pub inbox_prefix: Option<String>,
    /// CA certificate (PEM) to verify the server with.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to connect without TLS.
    pub tls_required: bool,
    /// Replicas of every stream talon creates: 1, or 3 on a NATS cluster (1..=5).
    pub stream_replicas: usize,
    /// Most bytes the `DLQ` stream keeps; past it the oldest dead letters
    /// go first, so a flood of bad input cannot fill the server's disk.
    pub dlq_max_bytes: i64,
}

/// `[nats].dlq_max_bytes` by default: 1 GiB.
pub const DEFAULT_DLQ_MAX_BYTES: i64 = 1 << 30;
/// The least `dlq_max_bytes` may be: room for a few of the largest dead
/// letters.
pub const MIN_DLQ_MAX_BYTES: i64 = 16 << 20;

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: DEFAULT_NATS_URL.to_owned(),
            user: None,
            password_env: None,
            password_file: None,
            token_env: None,
            token_file: None,
            creds_file: None,
            inbox_prefix: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            stream_replicas: 1,
            dlq_max_bytes: DEFAULT_DLQ_MAX_BYTES,
        }
    }
}

impl NatsConfig {
    /// Applies `TALON_NATS_USER` (with `TALON_NATS_PASSWORD`) or
    /// `TALON_NATS_CREDS`: either replaces every credential the file names.
    pub(super) fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        let user = env.get(NATS_USER_ENV).filter(|u| !u.is_empty());
        let creds = env.get(NATS_CREDS_ENV).filter(|c| !c.is_empty());
        if user.is_some() && creds.is_some() {
            return Err(ConfigError::new(
                "nats.user",
                format!("set only one of ${NATS_USER_ENV} and ${NATS_CREDS_ENV}"),
            ));
        }
        if user.is_none() && creds.is_none() {
            return Ok(());
        }
        self.user = user.map(str::to_owned);
        self.password_env = user.map(|_| NATS_PASSWORD_ENV.to_owned());
        self.creds_file = creds.map(PathBuf::from);
        self.password_file = None;
        self.token_env = None;
        self.token_file = None;
        Ok(())
    }

    /// The prefix of this client's reply subjects (see `inbox_prefix`).
    pub fn inbox_prefix(&self) -> String {
        match (&self.inbox_prefix, &self.user) {
            (Some(prefix), _) => prefix.clone(),
            (None, Some(user)) => format!("{DEFAULT_INBOX_PREFIX}_{user}"),
            (None, None) => DEFAULT_INBOX_PREFIX.to_owned(),
        }
    }

    /// The password from `password_env` or `password_file`; `None` when
    /// neither is set. A password shorter than 24 characters or holding
    /// `change-me` (the example's) is refused.
    pub fn password(&self, env: &Env) -> Result<Option<String>, ConfigError> {
        let password = resolve(
            "password_env",
            self.password_env.as_deref(),
            "password_file",
            self.password_file.as_deref(),
            env,
        )
        .map_err(|e| e.within("nats"))?;
        if let Some(why) = password.as_deref().and_then(weak_secret) {
            let key = if self.password_file.is_some() {
                "nats.password_file"
            } else {
                "nats.password_env"
            };
            return Err(ConfigError::new(key, format!("the password {why}")));
        }
        Ok(password)
    }

    /// The token from `token_env` or `token_file`; `None` when neither is set.
    pub fn token(&self, env: &Env) -> Result<Option<String>, ConfigError> {
        resolve(
            "token_env",
            self.token_env.as_deref(),
            "token_file",
            self.token_file.as_deref(),
            env,
        )
        .map_err(|e| e.within("nats"))
    }

    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("nats");
        check::non_empty(src, &here.key("url"), &self.url)?;
        if !(1..=5).contains(&self.stream_replicas) {
            return Err(src.error(
                &here.key("stream_replicas"),
                format!("must be 1 to 5, not {}", self.stream_replicas),
            ));
        }
        if self.dlq_max_bytes < MIN_DLQ_MAX_BYTES {
            return Err(src.error(
                &here.key("dlq_max_bytes"),
                format!(
                    "must be at least {MIN_DLQ_MAX_BYTES} (16 MiB), not {}",
                    self.dlq_max_bytes
                ),
            ));
        }
        let password = self.password_env.is_some() || self.password_file.is_some();
        check::at_most_one(
            src,
            &here,
            &[
                ("password_env", self.password_env.is_some()),
                ("password_file", self.password_file.is_some()),
            ],
        )?;
        check::at_most_one(
            src,
            &here,
            &[
                ("token_env", self.token_env.is_some()),
                ("token_file", self.token_file.is_some()),
            ],
        )?;
        check::at_most_one(
            src,
            &here,
            &[
                ("user", self.user.is_some()),
                ("token_env", self.token_env.is_some()),
                ("token_file", self.token_file.is_some()),
                ("creds_file", self.creds_file.is_some()),
            ],
        )?;
        if let Some(user) = &self.user {
            if !is_token(user) {
                return Err(src.error(
                    &here.key("user"),
                    format!(
                        "{user:?} is not a NATS user talon can use: letters, digits, _ and - only"
                    ),
                ));
            }
        }
        if let Some(prefix) = &self.inbox_prefix {
            if prefix.is_empty() || !prefix.split('.').all(is_token) {
                return Err(src.error(
                    &here.key("inbox_prefix"),
                    format!("{prefix:?} is not a subject prefix: tokens of letters, digits, _ and - joined by dots"),
                ));
            }
        }
        match (&self.user, password) {
            (Some(_), false) => {
                return Err(src.error(&here.key("user"), "needs password_env or password_file"))
            }
            (None, true) => {
                let key = if self.password_env.is_some() {
                    "password_env"
                } else {
                    "password_file"
                };
                return Err(src.error(&here.key(key), "needs user"));
            }
            _ => {}
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            let key = if self.tls_cert_file.is_some() {
                "tls_cert_file"
            } else {
                "tls_key_file"
            };
            return Err(src.error(&here.key(key), "tls_cert_file and tls_key_file go together"));
        }
        Ok(())
    }
}

/// A subject token without wildcards or odd characters.
fn is_token(s: &str) -> bool {
    talon_proto::names::is_subject_token(s)
}

/// Why a NATS password is too weak to use, if it is: shorter than the
/// bearer tokens' minimum or an example value.
fn weak_secret(secret: &str) -> Option<&'static str> {
    if secret.contains("change-me") {
        Some("is the example value: make one with `openssl rand -hex 24`")
    } else if secret.chars().count() < super::tokens::MIN_TOKEN_CHARS {
        Some("is shorter than 24 characters: make one with `openssl rand -hex 24`")
    } else {
        None
    }
}
