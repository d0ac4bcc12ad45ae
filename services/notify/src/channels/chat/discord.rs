//! The `discord` channel: a Discord web hook message with `content` (the
//! title) and one embed: the alert name, the suppressed count, the
//! severity's colour, the facts as inline fields, the context as fields,
//! the alert id in the footer and the alert's time; `username` and
//! `icon_url` (as `avatar_url`) when the channel sets them.
//!
//! `allowed_mentions: {"parse": []}`: no alert text can ping anyone, not
//! `@everyone`, `@here`, a user or a role.
//!
//! Within Discord's limits: content 2,000 characters, embed title 256,
//! description 4,096, 25 fields with names of 256 and values of 1,024, and
//! 6,000 characters over the whole embed; context fields that do not fit
//! are counted in a last one.
//!
//! A group message ([`render_group`]) is one message within the same
//! limits: the group's title as `content` and embed title, its rows as
//! compact lines in the description (`name — client — severity — time`,
//! the client linked to its page in Velociraptor), `…and N more` when they
//! do not all fit, its counts, time span and values as fields, its highest
//! severity's colour, the group in the footer and its last alert's time.

use chrono::SecondsFormat;
use serde_json::{json, Map, Value};
use talon_proto::{Alert, GroupMessage};

use super::parts::{self, ChannelOptions};
use crate::channels::present;

/// Characters of `content`.
pub const CONTENT_CHARS: usize = 2000;
/// Characters of an embed's title.
pub const TITLE_CHARS: usize = 256;
/// Characters of an embed's description.
pub const DESCRIPTION_CHARS: usize = 4096;
/// Fields in an embed.
pub const MAX_FIELDS: usize = 25;
/// Characters of a field's name.
pub const FIELD_NAME_CHARS: usize = 256;
/// Characters of a field's value.
pub const FIELD_VALUE_CHARS: usize = 1024;
/// Characters over an embed's title, description, field names and values
/// and footer.
pub const EMBED_CHARS: usize = 6000;
/// Characters of the name a message is posted as.
pub const USERNAME_CHARS: usize = 80;

fn field(name: &str, value: &str, inline: bool) -> Value {
    json!({
        "name": parts::cut(parts::shown(&present::one_line(name)), FIELD_NAME_CHARS),
        "value": parts::cut(parts::shown(value), FIELD_VALUE_CHARS),
        "inline": inline,
    })
}

/// The characters Discord counts against [`EMBED_CHARS`].
pub fn embed_chars(embed: &Value) -> usize {
    let len = |v: Option<&Value>| v.and_then(Value::as_str).map_or(0, |s| s.chars().count());
    let fields = embed
        .get("fields")
        .and_then(Value::as_array)
        .map_or(0, |fields| {
            fields
                .iter()
                .map(|f| len(f.get("name")) + len(f.get("value")))
                .sum()
        });
    len(embed.get("title"))
        + len(embed.get("description"))
        + len(embed.pointer("/footer/text"))
        + fields
}

/// The message's `content`, who it is posted as, `embed`, and no mention.
fn message(content: &str, embed: Map<String, Value>, options: &ChannelOptions) -> Value {
    let mut body = Map::new();
    body.insert(
        "content".into(),
        Value::String(parts::cut(content, CONTENT_CHARS)),
    );
    if let Some(name) = &options.username {
        body.insert(
            "username".into(),
            Value::String(parts::cut(name, USERNAME_CHARS)),
        );
    }
    if let Some(icon) = &options.icon_url {
        body.insert("avatar_url".into(), Value::String(icon.clone()));
    }
    body.insert("embeds".into(), json!([embed]));
    body.insert("allowed_mentions".into(), json!({"parse": []}));
    Value::Object(body)
}

/// Whether `body`'s embed is within [`MAX_FIELDS`], [`DESCRIPTION_CHARS`]
/// and [`EMBED_CHARS`].
fn within_limits(body: &Value) -> bool {
    let embed = body.pointer("/embeds/0").unwrap_or(&Value::Null);
    let description = embed
        .get("description")
        .and_then(Value::as_str)
        .map_or(0, |d| d.chars().count());
    embed
        .get("fields")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        <= MAX_FIELDS
        && description <= DESCRIPTION_CHARS
        && embed_chars(embed) <= EMBED_CHARS
}

/// The message for `alert`.
pub fn render(alert: &Alert, options: &ChannelOptions) -> Value {
    let mut facts: Vec<Value> = present::facts(alert, &options.sections)
        .iter()
        .map(|(label, value)| field(label, value, true))
        .collect();
    if let Some(links) = parts::joined_links(alert, |l, u| format!("[{l}]({u})"), FIELD_VALUE_CHARS)
    {
        facts.push(field("Velociraptor", &links, false));
    }
    let context = present::context_rows(alert);
    let build = |n: usize| {
        let mut fields = facts.clone();
        fields.extend(
            parts::kept(&context, n)
                .iter()
                .map(|(key, value)| field(key, value, false)),
        );
        let mut embed = Map::new();
        embed.insert(
            "title".into(),
            Value::String(parts::cut(&present::one_line(&alert.name), TITLE_CHARS)),
        );
        if let Some(line) = present::suppressed_line(alert) {
            embed.insert(
                "description".into(),
                Value::String(parts::cut(&line, DESCRIPTION_CHARS)),
            );
        }
        embed.insert(
            "color".into(),
            Value::from(present::severity_rgb(alert.severity.as_deref())),
        );
        embed.insert("fields".into(), Value::Array(fields));
        embed.insert("footer".into(), json!({"text": present::footer(alert)}));
        embed.insert(
            "timestamp".into(),
            Value::String(alert.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        message(&present::title(alert, present::WHOLE_NAME), embed, options)
    };
    parts::fit(context.len(), build, within_limits)
}

/// The message for `group`.
pub fn render_group(group: &GroupMessage, options: &ChannelOptions) -> Value {
    let title = present::group_title(group);
    let facts = present::group_facts(group);
    let lines: Vec<String> = group
        .rows
        .iter()
        .map(|row| present::row_line(group, row, parts::cut, parts::md_link))
        .collect();
    let build = |k: usize, n: usize| {
        let more = present::not_shown(group, n);
        let more = (more > 0).then(|| present::and_more(more));
        let rows: Vec<&str> = lines
            .iter()
            .take(n)
            .chain(&more)
            .map(String::as_str)
            .collect();
        let fields: Vec<Value> = parts::kept(&facts, k)
            .iter()
            .map(|(label, value)| field(label, value, false))
            .collect();
        let mut embed = Map::new();
        embed.insert(
            "title".into(),
            Value::String(parts::cut(&title, TITLE_CHARS)),
        );
        if !rows.is_empty() {
            embed.insert("description".into(), Value::String(rows.join("\n")));
        }
        embed.insert(
            "color".into(),
            Value::from(present::severity_rgb(present::highest_severity(group))),
        );
        embed.insert("fields".into(), Value::Array(fields));
        embed.insert(
            "footer".into(),
            json!({"text": present::group_footer(group)}),
        );
        embed.insert(
            "timestamp".into(),
            Value::String(group.last_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        message(&title, embed, options)
    };
    parts::fit_in_turn(facts.len(), lines.len(), build, within_limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    #[test]
    fn oversized_alerts_stay_within_discords_limits() {
        let body = render(&fixtures::oversized(), &fixtures::options());
        let len = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(len(&body["content"]) <= CONTENT_CHARS);
        let embed = &body["embeds"][0];
        assert!(len(&embed["title"]) <= TITLE_CHARS);
        assert!(len(&embed["description"]) <= DESCRIPTION_CHARS);
        assert!(embed_chars(embed) <= EMBED_CHARS, "{}", embed_chars(embed));
        let fields = embed["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        for f in fields {
            assert!((1..=FIELD_NAME_CHARS).contains(&len(&f["name"])));
            assert!((1..=FIELD_VALUE_CHARS).contains(&len(&f["value"])));
        }
        assert_eq!(fields.last().unwrap()["name"], parts::LEFT_OUT_LABEL);
    }

    #[test]
    fn nothing_can_ping() {
        let body = render(&fixtures::alert(), &fixtures::options());
        assert_eq!(body["allowed_mentions"], json!({"parse": []}));
        assert!(body.to_string().contains("@everyone"), "the text is kept");
    }

    #[test]
    fn twenty_five_fields_at_most() {
        let mut a = fixtures::alert();
        a.context = Some(
            (0..40)
                .map(|i| talon_proto::ContextEntry {
                    key: format!("k{i}"),
                    value: "v".into(),
                })
                .collect(),
        );
        let body = render(&a, &fixtures::options());
        let fields = body["embeds"][0]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), MAX_FIELDS);
        // The facts, and the Velociraptor links' field.
        let facts = present::facts(&a, &fixtures::options().sections).len() + 1;
        let left = 40 - (MAX_FIELDS - facts - 1);
        assert_eq!(fields[24]["value"], parts::left_out(left));
    }

    #[test]
    fn oversized_groups_stay_within_discords_limits() {
        let body = render_group(&fixtures::oversized_group(), &fixtures::options());
        let len = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(len(&body["content"]) <= CONTENT_CHARS);
        let embed = &body["embeds"][0];
        assert!(len(&embed["title"]) <= TITLE_CHARS);
        assert!(len(&embed["description"]) <= DESCRIPTION_CHARS);
        assert!(embed_chars(embed) <= EMBED_CHARS, "{}", embed_chars(embed));
        let fields = embed["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        for f in fields {
            assert!((1..=FIELD_NAME_CHARS).contains(&len(&f["name"])));
            assert!((1..=FIELD_VALUE_CHARS).contains(&len(&f["value"])));
        }
        let rows = embed["description"].as_str().unwrap();
        let shown = rows.lines().count() - 1;
        assert!(
            rows.ends_with(&format!("…and {} more", 10_000 - shown)),
            "{rows}"
        );
        assert_eq!(embed["color"], present::severity_rgb(Some("critical")));
    }

    #[test]
    fn a_group_can_ping_no_one() {
        let body = render_group(&fixtures::group(), &fixtures::options());
        assert_eq!(body["allowed_mentions"], json!({"parse": []}));
        let rows = body["embeds"][0]["description"].as_str().unwrap();
        assert!(rows.contains(
            "— [web-003](https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003) — medium — 20:43:11"
        ), "{rows}");
    }
}
