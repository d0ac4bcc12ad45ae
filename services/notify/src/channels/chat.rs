//! What the chat and incident kinds share: the channel's options, what an
//! alert says (title, facts, context pairs, footer), cutting text to a
//! service's limits, and [`Chat`], the sender that POSTs a kind's rendering
//! through [`webhook::post_json`] (its classification, its `Retry-After`).
//!
//! Each kind is one file with a pure `render(alert, options) -> Value`:
//! `slack.rs`, `mattermost.rs`, `teams.rs`, `googlechat.rs`, `discord.rs`,
//! `pagerduty.rs`.

use std::fmt;

use chrono::SecondsFormat;
use reqwest::header::HeaderMap;
use serde_json::Value;
use talon_kit::config::{ChannelConfig, ChannelKind};
use talon_proto::key::derived_msg_id;
use talon_proto::Alert;

use super::email::{self, Sections};
use super::{discord, googlechat, mattermost, pagerduty, slack, teams, webhook, DeliveryError};

/// What marks a cut: the text ends with it, counted as one character.
pub const ELLIPSIS: char = '…';

/// The label of the entry that stands for the context fields left out.
pub const LEFT_OUT_LABEL: &str = "…";

/// Shown for an empty value where a service refuses empty text.
pub const EMPTY_VALUE: &str = "(empty)";

/// A chat or incident channel kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Slack,
    Mattermost,
    Teams,
    GoogleChat,
    Discord,
    PagerDuty,
}

impl ChatKind {
    /// Every chat kind.
    pub const ALL: [ChatKind; 6] = [
        ChatKind::Slack,
        ChatKind::Mattermost,
        ChatKind::Teams,
        ChatKind::GoogleChat,
        ChatKind::Discord,
        ChatKind::PagerDuty,
    ];

    /// The chat kind of a configured channel kind, if it is one.
    pub fn of(kind: ChannelKind) -> Option<ChatKind> {
        match kind {
            ChannelKind::Slack => Some(ChatKind::Slack),
            ChannelKind::Mattermost => Some(ChatKind::Mattermost),
            ChannelKind::Teams => Some(ChatKind::Teams),
            ChannelKind::Googlechat => Some(ChatKind::GoogleChat),
            ChannelKind::Discord => Some(ChatKind::Discord),
            ChannelKind::Pagerduty => Some(ChatKind::PagerDuty),
            ChannelKind::Email | ChannelKind::Inbox | ChannelKind::Webhook => None,
        }
    }

    /// The kind's name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Slack => "slack",
            ChatKind::Mattermost => "mattermost",
            ChatKind::Teams => "teams",
            ChatKind::GoogleChat => "googlechat",
            ChatKind::Discord => "discord",
            ChatKind::PagerDuty => "pagerduty",
        }
    }

    /// The body this kind POSTs for `alert`.
    pub fn render(self, alert: &Alert, options: &ChannelOptions) -> Value {
        match self {
            ChatKind::Slack => slack::render(alert, options),
            ChatKind::Mattermost => mattermost::render(alert, options),
            ChatKind::Teams => teams::render(alert, options),
            ChatKind::GoogleChat => googlechat::render(alert, options),
            ChatKind::Discord => discord::render(alert, options),
            ChatKind::PagerDuty => pagerduty::render(alert, options),
        }
    }
}

impl fmt::Display for ChatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a channel's configuration changes in its rendering.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// The `include_*_details` switches.
    pub sections: Sections,
    /// slack, mattermost: the channel to post to.
    pub channel: Option<String>,
    /// slack, mattermost, discord: the name to post as.
    pub username: Option<String>,
    /// slack, mattermost, discord: the icon (avatar) to post with.
    pub icon_url: Option<String>,
    /// pagerduty: the integration's routing key (a secret).
    pub routing_key: Option<String>,
}

impl ChannelOptions {
    /// The options of `channel`, with its routing key already resolved.
    pub fn of(channel: &ChannelConfig, routing_key: Option<String>) -> ChannelOptions {
        ChannelOptions {
            sections: Sections::of(channel),
            channel: channel.channel.clone(),
            username: channel.username.clone(),
            icon_url: channel.icon_url.clone(),
            routing_key,
        }
    }
}

impl fmt::Debug for ChannelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelOptions")
            .field("sections", &self.sections)
            .field("channel", &self.channel)
            .field("username", &self.username)
            .field("icon_url", &self.icon_url)
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<secret>"),
            )
            .finish()
    }
}

/// Why a chat channel cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("{url} is not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A chat or incident channel, ready to POST.
pub struct Chat {
    kind: ChatKind,
    http: reqwest::Client,
    url: String,
    options: ChannelOptions,
}

impl Chat {
    /// A channel of `kind` posting to `url` (which may hold a token: it is
    /// never shown but through [`webhook::redact`]).
    pub fn new(kind: ChatKind, url: &str, options: ChannelOptions) -> Result<Chat, ChatError> {
        let url = match kind {
            ChatKind::GoogleChat => googlechat::url(url).map_err(|reason| ChatError::BadUrl {
                url: webhook::redact(url),
                reason,
            })?,
            _ => url.to_owned(),
        };
        let http = webhook::client()?;
        Ok(Chat {
            kind,
            http,
            url,
            options,
        })
    }

    pub fn kind(&self) -> ChatKind {
        self.kind
    }

    /// The body a delivery of `alert` POSTs.
    pub fn render(&self, alert: &Alert) -> Value {
        self.kind.render(alert, &self.options)
    }

    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        let body = self.render(alert).to_string().into_bytes();
        webhook::post_json(&self.http, &self.url, &HeaderMap::new(), None, body).await
    }
}

/// The title, in Velociraptor's style as the e-mail subject but with the
/// whole name: `Server alert` or `Alert from client <hostname>`, then
/// ` (<severity>)`, then `: <name>`; on one line.
pub fn title(alert: &Alert) -> String {
    email::heading(alert, usize::MAX)
}

/// The alert's name on one line.
pub fn name(alert: &Alert) -> String {
    email::one_line(&alert.name)
}

/// The short facts every kind shows, in order: severity, client (with the
/// client details), artifact, flow (with the flow details), artifact type
/// (with the artifact details), organization, time. Absent ones are left out.
pub fn facts(alert: &Alert, sections: &Sections) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut push = |label: &'static str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            out.push((label, email::one_line(v)));
        }
    };
    push("Severity", alert.severity.as_deref());
    if sections.client {
        let client = match (email::client_label(alert), email::client_id(alert)) {
            (Some(label), Some(id)) if label != id => Some(format!("{label} ({id})")),
            (label, _) => label.map(str::to_owned),
        };
        push("Client", client.as_deref());
    }
    push("Artifact", alert.effective_artifact());
    if sections.flow {
        let flow = email::override_of(alert, "FlowId").or(alert.flow_id.as_deref());
        push("Flow", flow);
    }
    if sections.artifact {
        let kind = email::override_of(alert, "ArtifactType").or(alert.artifact_type.as_deref());
        push("Artifact type", kind);
    }
    push("Organization", alert.org_id.as_deref());
    let time = alert.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true);
    push("Time", Some(&time));
    out
}

/// The context pairs: enrich's flattened context, else the raw `event_data`.
pub fn context(alert: &Alert) -> Vec<(String, String)> {
    email::context_rows(alert)
}

/// The "N similar alerts were suppressed" line, when dedup counted any.
pub fn suppressed(alert: &Alert) -> Option<String> {
    email::suppressed_line(alert)
}

/// The small print: `talon · alert <id>`.
pub fn footer(alert: &Alert) -> String {
    format!("talon · alert {}", email::one_line(&alert.id))
}

/// Adds `channel`, `username` and `icon_url` when set (Slack's legacy web
/// hooks and Mattermost honour them; Slack app web hooks ignore them).
pub fn post_as(body: &mut Value, options: &ChannelOptions) {
    if let Value::Object(map) = body {
        let keys = [
            ("channel", &options.channel),
            ("username", &options.username),
            ("icon_url", &options.icon_url),
        ];
        for (key, value) in keys {
            if let Some(v) = value {
                map.insert(key.to_owned(), Value::String(v.clone()));
            }
        }
    }
}

/// The key repeats of one alert share: dedup's key, else the name.
pub fn dedup_key(alert: &Alert) -> &str {
    alert
        .dedup
        .as_ref()
        .map(|d| d.key.as_str())
        .filter(|k| !k.is_empty())
        .unwrap_or(&alert.name)
}

/// `key` when it has at most `max` characters; else its first characters
/// and a hash of the whole, `max` characters in all, so distinct long keys
/// stay distinct and one key always maps to the same value.
pub fn bounded_key(key: &str, max: usize) -> String {
    if key.chars().count() <= max {
        return key.to_owned();
    }
    let hash = derived_msg_id("chat-key", key);
    let keep = max.saturating_sub(hash.len() + 1);
    let head: String = key.chars().take(keep).collect();
    format!("{head}~{hash}")
}

/// The severity's colour as `0xRRGGBB` (as the e-mail badge; grey when
/// unknown or absent).
pub fn colour(alert: &Alert) -> u32 {
    email::severity_rgb(alert.severity.as_deref().unwrap_or(""))
}

/// `value`, or [`EMPTY_VALUE`] when it is blank.
pub fn shown(value: &str) -> &str {
    if value.trim().is_empty() {
        EMPTY_VALUE
    } else {
        value
    }
}

/// The first `n` context pairs and, when some are left out, a last pair
/// ([`LEFT_OUT_LABEL`], "N more fields left out") saying how many.
pub fn kept(context: &[(String, String)], n: usize) -> Vec<(String, String)> {
    let n = n.min(context.len());
    let mut out: Vec<(String, String)> = context.iter().take(n).cloned().collect();
    if n < context.len() {
        out.push((LEFT_OUT_LABEL.to_owned(), left_out(context.len() - n)));
    }
    out
}

/// `N more field(s) left out`.
pub fn left_out(n: usize) -> String {
    match n {
        1 => "1 more field left out".to_owned(),
        n => format!("{n} more fields left out"),
    }
}

/// `text` cut to `max` characters (not bytes), ending with [`ELLIPSIS`]
/// when cut.
pub fn cut(text: &str, max: usize) -> String {
    cut_escaped(text, max, |_| None)
}

/// `text` with each character escaped by `escape` (when it answers), cut
/// so the result has at most `max` characters, ending with [`ELLIPSIS`]
/// when cut; an escape is never split.
pub fn cut_escaped(text: &str, max: usize, escape: fn(char) -> Option<&'static str>) -> String {
    let width = |c: char| escape(c).map_or(1, |e| e.chars().count());
    if text.chars().map(width).sum::<usize>() <= max {
        return text.chars().fold(String::new(), |mut out, c| {
            match escape(c) {
                Some(e) => out.push_str(e),
                None => out.push(c),
            }
            out
        });
    }
    let room = max.saturating_sub(1);
    let (mut out, mut used) = (String::new(), 0);
    for c in text.chars() {
        let w = width(c);
        if used + w > room {
            break;
        }
        used += w;
        match escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    if max > 0 {
        out.push(ELLIPSIS);
    }
    out
}

/// `&`, `<` and `>` as entities: what Slack's mrkdwn and Google Chat's
/// card text need escaped (so no alert text becomes a mention or a tag).
pub fn escape_markup(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

/// The length of `value` as JSON, in bytes.
pub fn json_len(value: &Value) -> usize {
    value.to_string().len()
}

/// The largest rendering that `fits`: `build(n)` renders the first `n` of
/// `total` context pairs (and says how many were left out); the most that
/// fit are kept. `build(0)` is returned when nothing fits.
pub fn fit(total: usize, build: impl Fn(usize) -> Value, fits: impl Fn(&Value) -> bool) -> Value {
    let all = build(total);
    if fits(&all) {
        return all;
    }
    // fits(lo) or lo == 0; !fits(hi).
    let (mut lo, mut hi) = (0, total);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(&build(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    build(lo)
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn cuts_count_characters_and_end_with_an_ellipsis() {
        fn check(text: &str, max: usize, expected: &str) {
            let got = cut(text, max);
            assert_eq!(got, expected, "cut({text:?}, {max})");
            assert!(got.chars().count() <= max);
        }
        check("short", 10, "short");
        check("exactly10!", 10, "exactly10!");
        check("eleven char", 10, "eleven ch…");
        check(&"é".repeat(5), 3, "éé…");
        check("abc", 1, "…");
        check("abc", 0, "");
        check("", 5, "");
    }

    #[test]
    fn escaped_cuts_never_split_an_entity() {
        fn check(text: &str, max: usize, expected: &str) {
            let got = cut_escaped(text, max, escape_markup);
            assert_eq!(got, expected, "cut_escaped({text:?}, {max})");
            assert!(got.chars().count() <= max);
        }
        check("a<b>&c", 20, "a&lt;b&gt;&amp;c");
        check("a<b>&c", 16, "a&lt;b&gt;&amp;c");
        check("a<b>&c", 15, "a&lt;b&gt;…");
        check("<<<<", 9, "&lt;&lt;…");
        check("<!channel>", 30, "&lt;!channel&gt;");
    }

    #[test]
    fn bounded_keys_are_stable_and_distinct() {
        fn check(key: &str, max: usize, expect_same: bool) {
            let got = bounded_key(key, max);
            assert!(got.chars().count() <= max, "{got}");
            assert_eq!(got == key, expect_same, "{got}");
            assert_eq!(got, bounded_key(key, max), "stable");
        }
        check("Honey file", 255, true);
        check(&"k".repeat(255), 255, true);
        check(&"k".repeat(256), 255, false);
        check(&"é".repeat(300), 255, false);
        let (a, b) = (
            format!("{}a", "k".repeat(300)),
            format!("{}b", "k".repeat(300)),
        );
        assert_ne!(bounded_key(&a, 255), bounded_key(&b, 255));
    }

    #[test]
    fn dedup_key_falls_back_to_the_name() {
        let mut a = fixtures::alert();
        assert_eq!(dedup_key(&a), "Honey file | C.1234");
        a.dedup = None;
        assert_eq!(dedup_key(&a), a.name);
    }

    #[test]
    fn facts_follow_the_switches() {
        fn check(sections: Sections, expected: &[(&str, &str)]) {
            let a = fixtures::alert();
            let got = facts(&a, &sections);
            let got: Vec<(&str, &str)> = got.iter().map(|(l, v)| (*l, v.as_str())).collect();
            assert_eq!(got, expected, "{sections:?}");
        }
        let all = [
            ("Severity", "high"),
            ("Client", "web-01 (C.1234)"),
            ("Artifact", "Linux.Detection.Honeyfiles"),
            ("Flow", "F.ABCD"),
            ("Artifact type", "CLIENT_EVENT"),
            ("Organization", "root"),
            ("Time", "2020-10-07T20:43:08Z"),
        ];
        check(
            Sections {
                client: true,
                flow: true,
                artifact: true,
            },
            &all,
        );
        check(
            Sections {
                client: false,
                flow: false,
                artifact: false,
            },
            &[all[0], all[2], all[5], all[6]],
        );
    }

    #[test]
    fn fit_keeps_the_most_that_fit() {
        fn check(total: usize, limit: usize, expected: usize) {
            let v = fit(total, Value::from, |v| {
                v.as_u64().unwrap() as usize <= limit
            });
            assert_eq!(v, Value::from(expected), "fit({total}, <= {limit})");
        }
        check(10, 100, 10);
        check(10, 10, 10);
        check(10, 9, 9);
        check(10, 3, 3);
        check(10, 0, 0);
        check(0, 0, 0);
        check(1000, 517, 517);
    }

    #[test]
    fn a_bad_google_chat_url_is_refused_without_showing_it() {
        match Chat::new(ChatKind::GoogleChat, "chat/T0KEN", fixtures::options()) {
            Err(e @ ChatError::BadUrl { .. }) => {
                let shown = e.to_string();
                assert!(shown.starts_with("<url> is not a URL"), "{shown}");
                assert!(!shown.contains("T0KEN"), "{shown}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
        let chat = Chat::new(ChatKind::Slack, "http://127.0.0.1:9/x", fixtures::options());
        assert_eq!(chat.map(|c| c.kind()).ok(), Some(ChatKind::Slack));
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
        for kind in ChatKind::ALL {
            for (suffix, alert) in [
                ("", fixtures::alert()),
                ("-oversized", fixtures::oversized()),
            ] {
                let path = dir.join(format!("{kind}{suffix}.json"));
                let body = kind.render(&alert, &options);
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
