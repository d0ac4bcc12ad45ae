//! `[notify]`: where notify listens and which channels it delivers. Its
//! `users` and `cookie_secure` are read for configurations of earlier
//! releases, where notify served the console: they move to `[console]`.

use serde::{Deserialize, Serialize};

use super::check;
use super::console::{validate_users, UserConfig};
use super::locate::{KeyPath, Source};
use super::ConfigError;

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Address of health and metrics.
    pub http_listen: String,
    /// Earlier releases' console users: read as `[[console.users]]`, with a
    /// warning (`Config::warnings`).
    pub users: Vec<UserConfig>,
    /// Earlier releases' `cookie_secure`: read as `[console].cookie_secure`.
    pub cookie_secure: Option<bool>,
    /// The ids of the channels this replica delivers (`--channels`
    /// replaces it); unset: every channel of `[[channels]]`.
    pub channels: Option<Vec<String>>,
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
    pub(super) fn validate(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let here = KeyPath::of("notify");
        check::listen(src, &here.key("http_listen"), &self.http_listen)?;
        validate_users(src, &here.key("users"), &self.users)
    }
}
