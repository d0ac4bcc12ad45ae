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

use chrono::SecondsFormat;
use serde_json::{json, Map, Value};
use talon_proto::Alert;

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
        let mut body = Map::new();
        body.insert(
            "content".into(),
            Value::String(parts::cut(
                &present::title(alert, present::WHOLE_NAME),
                CONTENT_CHARS,
            )),
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
    };
    parts::fit(context.len(), build, |body| {
        let embed = body.pointer("/embeds/0").unwrap_or(&Value::Null);
        embed
            .get("fields")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            <= MAX_FIELDS
            && embed_chars(embed) <= EMBED_CHARS
    })
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
}
