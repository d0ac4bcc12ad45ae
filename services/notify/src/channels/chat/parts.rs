//! What the chat and incident kinds build their bodies from: the channel's
//! options, the key repeats of one alert share, and the means to stay within
//! a service's limits (cutting text with `…`, escaping markup, Markdown
//! links no text can break out of, keeping the context pairs, or a group's
//! facts and rows, that fit and counting the rest). What an alert or a
//! group says is in [`present`](crate::channels::present); these are the
//! chat kinds' own.

use std::fmt;

use serde_json::Value;
use talon_kit::config::{ChannelConfig, ChatSpec};
use talon_proto::key::derived_msg_id;
use talon_proto::Alert;

use crate::channels::present::{self, Sections};

/// What marks a cut: the text ends with it, counted as one character.
pub const ELLIPSIS: char = '…';

/// The label of the entry that stands for the context fields left out.
pub const LEFT_OUT_LABEL: &str = "…";

/// Shown for an empty value where a service refuses empty text.
pub const EMPTY_VALUE: &str = "(empty)";

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
    /// The options of `channel`, a chat one with `spec`, with its routing
    /// key already read.
    pub fn of(
        channel: &ChannelConfig,
        spec: &ChatSpec,
        routing_key: Option<String>,
    ) -> ChannelOptions {
        ChannelOptions {
            sections: Sections::of(channel),
            channel: spec.channel.clone(),
            username: spec.username.clone(),
            icon_url: spec.icon_url.clone(),
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
    let hash = derived_msg_id(talon_proto::names::MsgIdDomain::ChatKey, key);
    let keep = max.saturating_sub(hash.len() + 1);
    let head: String = key.chars().take(keep).collect();
    format!("{head}~{hash}")
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

/// The alert's links into the Velociraptor GUI, each written by `link`,
/// joined by ` · `, as many as fit in `max` characters (in order: host,
/// flow, hunt); `None` when none does.
pub fn joined_links(
    alert: &Alert,
    link: impl Fn(&str, &str) -> String,
    max: usize,
) -> Option<String> {
    let mut out = String::new();
    for (label, url) in present::links(alert) {
        let one = link(label, url);
        let sep = if out.is_empty() { "" } else { " · " };
        if out.chars().count() + sep.chars().count() + one.chars().count() > max {
            break;
        }
        out.push_str(sep);
        out.push_str(&one);
    }
    (!out.is_empty()).then_some(out)
}

/// The length of `value` as JSON, in bytes.
pub fn json_len(value: &Value) -> usize {
    value.to_string().len()
}

/// The largest rendering that `fits`: `build(n)` renders the first `n` of
/// `total` context pairs (and says how many were left out); the most that
/// fit are kept. `build(0)` is returned when nothing fits.
pub fn fit(total: usize, build: impl Fn(usize) -> Value, fits: impl Fn(&Value) -> bool) -> Value {
    build(most(total, |n| fits(&build(n))))
}

/// The largest `n` of `0..=total` that `fits` (which holds for every `n`
/// below one it holds for); 0 when none does.
pub fn most(total: usize, fits: impl Fn(usize) -> bool) -> usize {
    if fits(total) {
        return total;
    }
    // fits(lo) or lo == 0; !fits(hi).
    let (mut lo, mut hi) = (0, total);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The largest rendering that `fits` of two lists, in turn: `build(k, n)`
/// renders the first `k` of `first` items (a group's facts) and the first
/// `n` of `then` (its rows), saying how many were left out. The most of
/// the first that fit without any of the second are kept, then the most
/// of the second that fit beside them.
pub fn fit_in_turn(
    first: usize,
    then: usize,
    build: impl Fn(usize, usize) -> Value,
    fits: impl Fn(&Value) -> bool,
) -> Value {
    let k = most(first, |k| fits(&build(k, 0)));
    let n = most(then, |n| fits(&build(k, n)));
    build(k, n)
}

/// A Markdown link (Mattermost, Discord, Teams) labelled `label` to `url`,
/// a safe one ([`present::row_link`]). Brackets and backslashes in the
/// label become their full-width look-alikes, so no alert text can close
/// the label and start a link of its own; parentheses in the URL are
/// percent-encoded, so none ends it early.
pub fn md_link(label: &str, url: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| match c {
            '[' => '［',
            ']' => '］',
            '\\' => '＼',
            c => c,
        })
        .collect();
    let url = url.replace('(', "%28").replace(')', "%29");
    format!("[{label}]({url})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

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
    fn markdown_links_cannot_be_broken_out_of() {
        fn check(label: &str, url: &str, expected: &str) {
            assert_eq!(md_link(label, url), expected);
        }
        check(
            "web-01",
            "https://vr/x#/host/C.1",
            "[web-01](https://vr/x#/host/C.1)",
        );
        check(
            "x](https://evil.example.org)[y",
            "https://vr/a(b)",
            "[x］(https://evil.example.org)［y](https://vr/a%28b%29)",
        );
        check("a\\", "https://vr/", "[a＼](https://vr/)");
    }

    #[test]
    fn fits_in_turn_keep_the_first_list_first() {
        // A rendering is its facts and rows, each weighing 10.
        let build = |k: usize, n: usize| Value::from(k * 10 + n * 10);
        fn check(
            facts: usize,
            rows: usize,
            limit: u64,
            expected: u64,
            build: impl Fn(usize, usize) -> Value,
        ) {
            let v = fit_in_turn(facts, rows, build, |v| v.as_u64().unwrap() <= limit);
            assert_eq!(v, Value::from(expected), "({facts}, {rows}) <= {limit}");
        }
        check(3, 10, 1000, 130, build);
        check(3, 10, 75, 70, build);
        check(3, 10, 25, 20, build);
        check(3, 10, 5, 0, build);
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
}
