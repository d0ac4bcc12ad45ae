//! The chat and incident kinds: [`Chat`], the sender that POSTs a kind's
//! rendering through [`webhook::post_json`] (its classification, its
//! `Retry-After`), and [`render`], which picks the kind's renderer.
//!
//! Each kind is one file with a pure `render(alert, options) -> Value`:
//! `slack.rs`, `mattermost.rs`, `teams.rs`, `googlechat.rs`, `discord.rs`,
//! `pagerduty.rs`. They build from `parts.rs` (options, cutting to a
//! service's limits) and [`present`](crate::channels::present) (what an
//! alert says), never from this file, which only dispatches to them.

use reqwest::header::HeaderMap;
use serde_json::Value;
use talon_kit::config::ChannelKind;
use talon_proto::Alert;

use super::{webhook, DeliveryError};

pub mod discord;
pub mod googlechat;
pub mod mattermost;
pub mod pagerduty;
pub mod parts;
pub mod slack;
pub mod teams;

#[cfg(test)]
pub(crate) mod fixtures;

pub use parts::ChannelOptions;

/// A kind's pure rendering: the body it POSTs for an alert.
type Renderer = fn(&Alert, &ChannelOptions) -> Value;

/// The renderer of `kind`, when it is a chat or incident kind.
fn renderer(kind: ChannelKind) -> Option<Renderer> {
    match kind {
        ChannelKind::Slack => Some(slack::render),
        ChannelKind::Mattermost => Some(mattermost::render),
        ChannelKind::Teams => Some(teams::render),
        ChannelKind::Googlechat => Some(googlechat::render),
        ChannelKind::Discord => Some(discord::render),
        ChannelKind::Pagerduty => Some(pagerduty::render),
        ChannelKind::Email | ChannelKind::Inbox | ChannelKind::Webhook => None,
    }
}

/// The body `kind` POSTs for `alert`; `None` when `kind` is not one of
/// [`ChannelKind::CHAT`].
pub fn render(kind: ChannelKind, alert: &Alert, options: &ChannelOptions) -> Option<Value> {
    renderer(kind).map(|render| render(alert, options))
}

/// Why a chat channel cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{0} is not a chat or incident kind")]
    NotChat(ChannelKind),
    #[error("{url} is not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A chat or incident channel, ready to POST.
pub struct Chat {
    kind: ChannelKind,
    render: Renderer,
    http: reqwest::Client,
    url: String,
    options: ChannelOptions,
}

impl Chat {
    /// A channel of `kind` (one of [`ChannelKind::CHAT`]) posting to `url`
    /// (which may hold a token: it is never shown but through
    /// [`webhook::redact`]).
    pub fn new(kind: ChannelKind, url: &str, options: ChannelOptions) -> Result<Chat, ChatError> {
        let render = renderer(kind).ok_or(ChatError::NotChat(kind))?;
        let url = match kind {
            ChannelKind::Googlechat => {
                googlechat::url(url).map_err(|reason| ChatError::BadUrl {
                    url: webhook::redact(url),
                    reason,
                })?
            }
            _ => url.to_owned(),
        };
        let http = webhook::client()?;
        Ok(Chat {
            kind,
            render,
            http,
            url,
            options,
        })
    }

    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The body a delivery of `alert` POSTs.
    pub fn render(&self, alert: &Alert) -> Value {
        (self.render)(alert, &self.options)
    }

    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let body = self.render(alert).to_string().into_bytes();
        webhook::post_json(&self.http, &self.url, &HeaderMap::new(), None, body).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_bad_google_chat_url_is_refused_without_showing_it() {
        match Chat::new(ChannelKind::Googlechat, "chat/T0KEN", fixtures::options()) {
            Err(e @ ChatError::BadUrl { .. }) => {
                let shown = e.to_string();
                assert!(shown.starts_with("<url> is not a URL"), "{shown}");
                assert!(!shown.contains("T0KEN"), "{shown}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
        let chat = Chat::new(
            ChannelKind::Slack,
            "http://127.0.0.1:9/x",
            fixtures::options(),
        );
        assert_eq!(chat.map(|c| c.kind()).ok(), Some(ChannelKind::Slack));
    }

    #[test]
    fn only_the_chat_kinds_render() {
        for kind in [ChannelKind::Email, ChannelKind::Inbox, ChannelKind::Webhook] {
            assert!(!kind.is_chat(), "{kind}");
            assert_eq!(render(kind, &fixtures::alert(), &fixtures::options()), None);
            match Chat::new(kind, "http://127.0.0.1:9/x", fixtures::options()) {
                Err(e @ ChatError::NotChat(_)) => {
                    assert_eq!(
                        e.to_string(),
                        format!("{kind} is not a chat or incident kind")
                    );
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{kind} accepted"),
            }
        }
        for kind in ChannelKind::CHAT {
            assert!(kind.is_chat(), "{kind}");
            let body = render(kind, &fixtures::alert(), &fixtures::options());
            assert!(body.is_some_and(|b| b.is_object()), "{kind}");
        }
    }

    /// The bodies of every kind for a fixed alert, and for one whose
    /// context and names are far over every service's limits, compared with
    /// `tests/golden/<kind>[-oversized].json`. `TALON_UPDATE_GOLDEN=1`
    /// rewrites the files instead.
    #[test]
    fn bodies_match_the_golden_files() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let update = std::env::var_os("TALON_UPDATE_GOLDEN").is_some_and(|v| v == "1");
        let options = fixtures::options();
        let mut failed = Vec::new();
        for kind in ChannelKind::CHAT {
            for (suffix, alert) in [
                ("", fixtures::alert()),
                ("-oversized", fixtures::oversized()),
            ] {
                let path = dir.join(format!("{kind}{suffix}.json"));
                let body = render(kind, &alert, &options).unwrap();
                let text = serde_json::to_string_pretty(&body).unwrap() + "\n";
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &text).unwrap();
                    continue;
                }
                let expected = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if expected != text {
                    failed.push(path.display().to_string());
                }
            }
        }
        assert!(
            failed.is_empty(),
            "rendering differs from {failed:?} (TALON_UPDATE_GOLDEN=1 rewrites them; review the diff)"
        );
    }
}
