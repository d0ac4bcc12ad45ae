//! The chat and incident kinds: [`Chat`], the sender that POSTs a kind's
//! rendering through [`webhook::post_json`] (its classification, its
//! `Retry-After`), and [`render`] and [`render_group`], which pick the
//! kind's renderer.
//!
//! Each kind is one file with a pure `render(alert, options) -> Value` and
//! a pure `render_group(group, options) -> Value` (one message for a
//! channel's group of alerts or its digest): `slack.rs`, `mattermost.rs`,
//! `teams.rs`, `googlechat.rs`, `discord.rs`, `pagerduty.rs`. They build
//! from `parts.rs` (options, cutting to a service's limits) and
//! [`present`](crate::channels::present) (what an alert or a group says),
//! never from this file, which only dispatches to them.

use reqwest::header::HeaderMap;
use serde_json::Value;
use talon_kit::config::ChannelKind;
use talon_proto::{Alert, GroupMessage};

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

/// A kind's pure rendering of a group message: the body it POSTs for it.
type GroupRenderer = fn(&GroupMessage, &ChannelOptions) -> Value;

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

/// The group renderer of `kind`, when it is a chat or incident kind.
fn group_renderer(kind: ChannelKind) -> Option<GroupRenderer> {
    match kind {
        ChannelKind::Slack => Some(slack::render_group),
        ChannelKind::Mattermost => Some(mattermost::render_group),
        ChannelKind::Teams => Some(teams::render_group),
        ChannelKind::Googlechat => Some(googlechat::render_group),
        ChannelKind::Discord => Some(discord::render_group),
        ChannelKind::Pagerduty => Some(pagerduty::render_group),
        ChannelKind::Email | ChannelKind::Inbox | ChannelKind::Webhook => None,
    }
}

/// The body `kind` POSTs for `alert`; `None` when `kind` is not one of
/// [`ChannelKind::CHAT`].
pub fn render(kind: ChannelKind, alert: &Alert, options: &ChannelOptions) -> Option<Value> {
    renderer(kind).map(|render| render(alert, options))
}

/// The body `kind` POSTs for `group`; `None` when `kind` is not one of
/// [`ChannelKind::CHAT`].
pub fn render_group(
    kind: ChannelKind,
    group: &GroupMessage,
    options: &ChannelOptions,
) -> Option<Value> {
    group_renderer(kind).map(|render| render(group, options))
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
    render_group: GroupRenderer,
    http: reqwest::Client,
    url: String,
    options: ChannelOptions,
}

impl Chat {
    /// A channel of `kind` (one of [`ChannelKind::CHAT`]) posting to `url`
    /// (which may hold a token: it is never shown but through
    /// [`webhook::redact`]).
    pub fn new(kind: ChannelKind, url: &str, options: ChannelOptions) -> Result<Chat, ChatError> {
        let (render, render_group) = renderer(kind)
            .zip(group_renderer(kind))
            .ok_or(ChatError::NotChat(kind))?;
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
            render_group,
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
        self.post(self.render(alert)).await
    }

    /// The body a delivery of `group` POSTs.
    pub fn render_group(&self, group: &GroupMessage) -> Value {
        (self.render_group)(group, &self.options)
    }

    /// POSTs the group's message, classified as [`Chat::deliver`] does.
    pub async fn deliver_group(&self, group: &GroupMessage) -> Result<(), DeliveryError> {
        self.post(self.render_group(group)).await
    }

    async fn post(&self, body: Value) -> Result<(), DeliveryError> {
        let body = body.to_string().into_bytes();
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
            assert_eq!(
                render_group(kind, &fixtures::group(), &fixtures::options()),
                None
            );
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
            let body = render_group(kind, &fixtures::group(), &fixtures::options());
            assert!(body.is_some_and(|b| b.is_object()), "{kind}");
        }
    }

    /// The bodies of every kind for a fixed alert, for one whose context
    /// and names are far over every service's limits, for the 500-host
    /// storm's group message and for the largest group a message holds,
    /// compared with `tests/golden/<kind>[-group][-oversized].json`.
    /// `TALON_UPDATE_GOLDEN=1` rewrites the files instead.
    #[test]
    fn bodies_match_the_golden_files() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let update = std::env::var_os("TALON_UPDATE_GOLDEN").is_some_and(|v| v == "1");
        let options = fixtures::options();
        let alerts = [
            ("", fixtures::alert()),
            ("-oversized", fixtures::oversized()),
        ];
        let groups = [
            ("-group", fixtures::group()),
            ("-group-oversized", fixtures::oversized_group()),
        ];
        let mut failed = Vec::new();
        for kind in ChannelKind::CHAT {
            let bodies = alerts
                .iter()
                .map(|(suffix, alert)| (suffix, render(kind, alert, &options)))
                .chain(
                    groups
                        .iter()
                        .map(|(suffix, group)| (suffix, render_group(kind, group, &options))),
                );
            for (suffix, body) in bodies {
                let path = dir.join(format!("{kind}{suffix}.json"));
                let text = serde_json::to_string_pretty(&body.unwrap()).unwrap() + "\n";
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
