//! `[secrets.<name>]`: connection settings with credentials, referenced by name
//! (an email channel's `secret`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check;
use super::locate::{KeyPath, Source};
use super::secret::resolve;
use super::{ConfigError, Env};

/// The `tls` values of a secret.
pub const SECRET_TLS_MODES: [&str; 3] = ["starttls", "tls", "none"];

/// One `[secrets.<name>]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretConfig {
    /// SMTP server host name.
    pub server: Option<String>,
    /// SMTP server port (587 for starttls, 465 for tls, 25 for none, when unset).
    pub port: Option<u16>,
    /// Transport security: `starttls`, `tls` or `none`.
    pub tls: Option<String>,
    /// SMTP user name.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// The From header, e.g. `Velociraptor alerts <alerts@example.org>`.
    pub from: Option<String>,
}

impl SecretConfig {
    /// The password from `password_env` or `password_file`; `None` when neither
    /// is set. The error's key is relative (`password_env`);
    /// [`Config::secret_password`](super::Config::secret_password) gives the full one.
    pub fn password(&self, env: &Env) -> Result<Option<String>, ConfigError> {
        resolve(
            "password_env",
            self.password_env.as_deref(),
            "password_file",
            self.password_file.as_deref(),
            env,
        )
    }

    pub(super) fn validate(&self, src: &Source<'_>, here: &KeyPath) -> Result<(), ConfigError> {
        if let Some(server) = &self.server {
            check::non_empty(src, &here.key("server"), server)?;
        }
        if let Some(tls) = &self.tls {
            if !SECRET_TLS_MODES.contains(&tls.as_str()) {
                return Err(src.error(
                    &here.key("tls"),
                    format!("{tls:?} is not one of {}", SECRET_TLS_MODES.join(", ")),
                ));
            }
        }
        check::at_most_one(
            src,
            here,
            &[
                ("password_env", self.password_env.is_some()),
                ("password_file", self.password_file.is_some()),
            ],
        )?;
        let password = self.password_env.is_some() || self.password_file.is_some();
        if password && self.username.is_none() {
            let key = if self.password_env.is_some() {
                "password_env"
            } else {
                "password_file"
            };
            return Err(src.error(&here.key(key), "needs username"));
        }
        Ok(())
    }
}
