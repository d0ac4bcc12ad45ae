//! The `mattermost` channel: an incoming-webhook post with `text` (the
//! title) and one Slack-style attachment: the severity's colour, the facts
//! as short fields, the context as long fields, the suppressed count and
//! the alert id as footer; `channel`, `username` and `icon_url` when the
//! channel sets them.
//!
//! Limits: the whole body within 16,383 characters (Mattermost's post
//! limit), values cut to 1,000 characters, context fields that do not fit
//! counted in a last one. An `@` in `text` and `fallback` (what
//! notifications show) is followed by a zero-width space, so no alert text
//! mentions `@channel`, `@all`, `@here` or anyone.
//!
//! A group message ([`render_group`]) is one post within the same limit:
//! the group's title as `text`, an attachment with its counts, time span
//! and values as fields, and a second with its rows as compact lines
//! (`name — client — severity — time`, the client linked to its page in
//! Velociraptor), `…and N more` when they do not all fit, and the group as
//! footer. Every `@` in its alert text is followed by a zero-width space.

use serde_json::{json, Map, Value};
use talon_proto::{Alert, GroupMessage};

use super::parts::{self, ChannelOptions};
use crate::channels::present;

/// Characters of the whole body.
pub const BODY_CHARS: usize = 16_383;
/// Characters of the title.
pub const TITLE_CHARS: usize = 1000;
/// Characters of a field's title.
pub const KEY_CHARS: usize = 200;
/// Characters of a field's value.
pub const VALUE_CHARS: usize = 1000;

/// `text` with a zero-width space after each `@`, so it mentions no one.
pub fn quiet(text: &str) -> String {
    text.replace('@', "@\u{200b}")
}

fn field(title: &str, value: &str, short: bool) -> Value {
    json!({"title": title, "value": value, "short": short})
}

/// The post for `alert`.
pub fn render(alert: &Alert, options: &ChannelOptions) -> Value {
    let title = parts::cut(
        &quiet(&present::title(alert, present::WHOLE_NAME)),
        TITLE_CHARS,
    );
    let mut facts: Vec<Value> = present::facts(alert, &options.sections)
        .iter()
        .map(|(label, value)| field(label, &parts::cut(value, VALUE_CHARS), true))
        .collect();
    if let Some(links) = parts::joined_links(alert, |l, u| format!("[{l}]({u})"), VALUE_CHARS) {
        facts.push(field("Velociraptor", &links, false));
    }
    let context = present::context_rows(alert);
    let build = |n: usize| {
        let mut fields = facts.clone();
        fields.extend(parts::kept(&context, n).iter().map(|(key, value)| {
            let key = parts::cut(&present::one_line(key), KEY_CHARS);
            field(&key, &parts::cut(parts::shown(value), VALUE_CHARS), false)
        }));
        let mut attachment = Map::new();
        attachment.insert("fallback".into(), Value::String(title.clone()));
        attachment.insert(
            "color".into(),
            Value::String(format!(
                "#{:06x}",
                present::severity_rgb(alert.severity.as_deref())
            )),
        );
        if let Some(line) = present::suppressed_line(alert) {
            attachment.insert("text".into(), Value::String(line));
        }
        attachment.insert("fields".into(), Value::Array(fields));
        attachment.insert("footer".into(), Value::String(present::footer(alert)));
        let mut body = json!({"text": title, "attachments": [attachment]});
        parts::post_as(&mut body, options);
        body
    };
    parts::fit(context.len(), build, |body| {
        body.to_string().chars().count() <= BODY_CHARS
    })
}

/// The post for `group`.
pub fn render_group(group: &GroupMessage, options: &ChannelOptions) -> Value {
    let title = parts::cut(&quiet(&present::group_title(group)), TITLE_CHARS);
    let color = format!(
        "#{:06x}",
        present::severity_rgb(present::highest_severity(group))
    );
    let facts = present::group_facts(group);
    let lines: Vec<String> = group
        .rows
        .iter()
        .map(|row| {
            present::row_line(
                group,
                row,
                |t, max| quiet(&parts::cut(t, max)),
                parts::md_link,
            )
        })
        .collect();
    let build = |k: usize, n: usize| {
        let fields: Vec<Value> = parts::kept(&facts, k)
            .iter()
            .map(|(label, value)| {
                let label = parts::cut(&quiet(label), KEY_CHARS);
                field(
                    &label,
                    &quiet(&parts::cut(parts::shown(value), VALUE_CHARS)),
                    false,
                )
            })
            .collect();
        let more = present::not_shown(group, n);
        let more = (more > 0).then(|| present::and_more(more));
        let text: Vec<&str> = lines
            .iter()
            .take(n)
            .chain(&more)
            .map(String::as_str)
            .collect();
        let mut body = json!({
            "text": title,
            "attachments": [
                {"fallback": title, "color": color, "fields": fields},
                {
                    "fallback": title,
                    "color": color,
                    "text": text.join("\n"),
                    "footer": present::group_footer(group),
                },
            ],
        });
        parts::post_as(&mut body, options);
        body
    };
    parts::fit_in_turn(facts.len(), lines.len(), build, |body| {
        body.to_string().chars().count() <= BODY_CHARS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    #[test]
    fn oversized_alerts_stay_within_mattermosts_limits() {
        let body = render(&fixtures::oversized(), &fixtures::options());
        assert!(body.to_string().chars().count() <= BODY_CHARS);
        let fields = body["attachments"][0]["fields"].as_array().unwrap();
        let last = fields.last().unwrap();
        assert_eq!(last["title"], parts::LEFT_OUT_LABEL);
        assert!(last["value"]
            .as_str()
            .unwrap()
            .ends_with("more fields left out"));
        for f in fields {
            assert!(f["value"].as_str().unwrap().chars().count() <= VALUE_CHARS);
            assert!(f["title"].as_str().unwrap().chars().count() <= KEY_CHARS);
        }
        assert!(body["text"].as_str().unwrap().chars().count() <= TITLE_CHARS);
    }

    #[test]
    fn notifications_mention_no_one() {
        fn check(input: &str, expected: &str) {
            assert_eq!(quiet(input), expected);
        }
        check("plain", "plain");
        check("@channel", "@\u{200b}channel");
        check("a@b @all", "a@\u{200b}b @\u{200b}all");
        let mut a = fixtures::alert();
        a.name = "@here look".into();
        let body = render(&a, &fixtures::options());
        for text in [&body["text"], &body["attachments"][0]["fallback"]] {
            assert!(!text.as_str().unwrap().contains("@here"), "{text}");
        }
    }

    #[test]
    fn oversized_groups_stay_within_mattermosts_limits() {
        let body = render_group(&fixtures::oversized_group(), &fixtures::options());
        assert!(body.to_string().chars().count() <= BODY_CHARS);
        assert!(body["text"].as_str().unwrap().chars().count() <= TITLE_CHARS);
        let fields = body["attachments"][0]["fields"].as_array().unwrap();
        for f in fields {
            assert!(f["value"].as_str().unwrap().chars().count() <= VALUE_CHARS);
            assert!(f["title"].as_str().unwrap().chars().count() <= KEY_CHARS);
        }
        let rows = body["attachments"][1]["text"].as_str().unwrap();
        let shown = rows.lines().count() - 1;
        assert!(shown > 10, "{shown} rows");
        let more = format!("…and {} more", 10_000 - shown);
        assert!(rows.ends_with(&more), "{rows}");
    }

    #[test]
    fn a_group_mentions_no_one() {
        let body = render_group(&fixtures::group(), &fixtures::options());
        let text = body.to_string();
        for mention in ["@everyone", "@channel", "@here", "@all"] {
            assert!(!text.contains(mention), "{mention}: {text}");
        }
        assert!(text.contains("@\u{200b}everyone"));
        let rows = body["attachments"][1]["text"].as_str().unwrap();
        assert!(rows.contains(
            "— [web-003](https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003) — medium — 20:43:11"
        ), "{rows}");
        assert!(rows.ends_with("…and 400 more"), "{rows}");
    }
}
