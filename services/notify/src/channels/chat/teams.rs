//! The `teams` channel: a message for a Teams Workflows web hook ("Post to
//! a channel when a webhook request is received"), carrying one Adaptive
//! Card 1.4: the title as a TextBlock coloured by severity, the suppressed
//! count, the facts as a FactSet, the context as a second FactSet, and the
//! alert id in small print. (Teams retired the MessageCard connectors.)
//!
//! Limits: the whole body under 28 KB (Teams' message limit; talon keeps it
//! within 28,000 bytes), the title cut to 500 characters, keys to 200,
//! values to 1,000; context facts that do not fit are counted in a last one.
//!
//! A group message ([`render_group`]) is one card within the same limits:
//! the group's title coloured by its highest severity, its counts, time
//! span and values as a FactSet, its rows as compact lines (`name — client
//! — severity — time`, the client linked to its page in Velociraptor),
//! `…and N more` when they do not all fit, and the group in small print.

use serde_json::{json, Value};
use talon_proto::{Alert, GroupMessage};

use super::parts::{self, ChannelOptions};
use crate::channels::present;

/// The attachment's content type.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
/// The Adaptive Card schema version (the newest every Teams client renders).
pub const CARD_VERSION: &str = "1.4";
/// The card schema.
pub const CARD_SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";
/// Bytes of the whole body.
pub const BODY_BYTES: usize = 28_000;
/// Characters of the title.
pub const TITLE_CHARS: usize = 500;
/// Characters of a fact's title.
pub const KEY_CHARS: usize = 200;
/// Characters of a fact's value.
pub const VALUE_CHARS: usize = 1000;

/// The TextBlock colour of a severity.
pub fn colour(severity: Option<&str>) -> &'static str {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "high") => "Attention",
        Some("medium") => "Warning",
        Some("low") => "Accent",
        _ => "Default",
    }
}

fn fact_set<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let facts: Vec<Value> = pairs
        .map(|(title, value)| {
            json!({
                "title": parts::cut(&present::one_line(title), KEY_CHARS),
                "value": parts::cut(parts::shown(value), VALUE_CHARS),
            })
        })
        .collect();
    json!({"type": "FactSet", "facts": facts})
}

/// The message carrying one card of `body` and `actions`.
fn message(body: Vec<Value>, actions: &[Value]) -> Value {
    let mut card = json!({
        "type": "message",
        "attachments": [{
            "contentType": CONTENT_TYPE,
            "contentUrl": null,
            "content": {
                "$schema": CARD_SCHEMA,
                "type": "AdaptiveCard",
                "version": CARD_VERSION,
                "msteams": {"width": "Full"},
                "body": body,
            },
        }],
    });
    if let (Some(content), false) = (
        card.pointer_mut("/attachments/0/content")
            .and_then(Value::as_object_mut),
        actions.is_empty(),
    ) {
        content.insert("actions".into(), Value::Array(actions.to_vec()));
    }
    card
}

fn small_print(text: String) -> Value {
    json!({
        "type": "TextBlock",
        "text": text,
        "size": "Small",
        "isSubtle": true,
        "wrap": true,
    })
}

/// The message for `alert`.
pub fn render(alert: &Alert, options: &ChannelOptions) -> Value {
    let mut head = vec![json!({
        "type": "TextBlock",
        "text": parts::cut(&present::title(alert, present::WHOLE_NAME), TITLE_CHARS),
        "size": "Large",
        "weight": "Bolder",
        "color": colour(alert.severity.as_deref()),
        "wrap": true,
    })];
    if let Some(line) = present::suppressed_line(alert) {
        head.push(json!({"type": "TextBlock", "text": line, "isSubtle": true, "wrap": true}));
    }
    let facts = present::facts(alert, &options.sections);
    if !facts.is_empty() {
        head.push(fact_set(facts.iter().map(|(l, v)| (*l, v.as_str()))));
    }
    let context = present::context_rows(alert);
    let footer = small_print(present::footer(alert));
    let actions: Vec<Value> = present::links(alert)
        .into_iter()
        .map(|(title, url)| json!({"type": "Action.OpenUrl", "title": title, "url": url}))
        .collect();
    let build = |n: usize| {
        let mut body = head.clone();
        if !context.is_empty() {
            body.push(json!({
                "type": "TextBlock",
                "text": "Details",
                "weight": "Bolder",
                "spacing": "Medium",
                "wrap": true,
            }));
            let kept = parts::kept(&context, n);
            body.push(fact_set(kept.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }
        body.push(footer.clone());
        message(body, &actions)
    };
    parts::fit(context.len(), build, |body| {
        parts::json_len(body) <= BODY_BYTES
    })
}

/// The message for `group`.
pub fn render_group(group: &GroupMessage, _options: &ChannelOptions) -> Value {
    let title = json!({
        "type": "TextBlock",
        "text": parts::cut(&present::group_title(group), TITLE_CHARS),
        "size": "Large",
        "weight": "Bolder",
        "color": colour(present::highest_severity(group)),
        "wrap": true,
    });
    let facts = present::group_facts(group);
    let lines: Vec<String> = group
        .rows
        .iter()
        .map(|row| present::row_line(group, row, parts::cut, parts::md_link))
        .collect();
    let line =
        |text: &str| json!({"type": "TextBlock", "text": text, "spacing": "None", "wrap": true});
    let build = |k: usize, n: usize| {
        let kept = parts::kept(&facts, k);
        let mut body = vec![
            title.clone(),
            fact_set(kept.iter().map(|(l, v)| (l.as_str(), v.as_str()))),
        ];
        if !lines.is_empty() {
            body.push(json!({
                "type": "TextBlock",
                "text": "Alerts",
                "weight": "Bolder",
                "spacing": "Medium",
                "wrap": true,
            }));
        }
        body.extend(lines.iter().take(n).map(|l| line(l)));
        let more = present::not_shown(group, n);
        if more > 0 {
            body.push(line(&present::and_more(more)));
        }
        body.push(small_print(present::group_footer(group)));
        message(body, &[])
    };
    parts::fit_in_turn(facts.len(), lines.len(), build, |body| {
        parts::json_len(body) <= BODY_BYTES
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    #[test]
    fn oversized_alerts_stay_under_28_kb() {
        let body = render(&fixtures::oversized(), &fixtures::options());
        let len = parts::json_len(&body);
        assert!(len <= BODY_BYTES, "{len}");
        assert!(len > BODY_BYTES - 2000, "the budget is used: {len}");
        let card = &body["attachments"][0]["content"];
        let title = card["body"][0]["text"].as_str().unwrap();
        assert!(title.chars().count() <= TITLE_CHARS && title.ends_with(parts::ELLIPSIS));
        let details = &card["body"][4]["facts"];
        let last = details.as_array().unwrap().last().unwrap();
        assert_eq!(last["title"], parts::LEFT_OUT_LABEL);
    }

    #[test]
    fn severities_have_colours() {
        fn check(severity: Option<&str>, expected: &str) {
            assert_eq!(colour(severity), expected, "{severity:?}");
        }
        check(Some("critical"), "Attention");
        check(Some("HIGH"), "Attention");
        check(Some("medium"), "Warning");
        check(Some("low"), "Accent");
        check(Some("info"), "Default");
        check(Some("odd"), "Default");
        check(None, "Default");
    }

    #[test]
    fn oversized_groups_stay_under_28_kb() {
        let body = render_group(&fixtures::oversized_group(), &fixtures::options());
        let len = parts::json_len(&body);
        assert!(len <= BODY_BYTES, "{len}");
        assert!(len > BODY_BYTES - 2000, "the budget is used: {len}");
        let card = &body["attachments"][0]["content"];
        let blocks = card["body"].as_array().unwrap();
        let title = blocks[0]["text"].as_str().unwrap();
        assert!(title.chars().count() <= TITLE_CHARS && title.ends_with(parts::ELLIPSIS));
        assert_eq!(blocks[0]["color"], "Attention");
        for fact in blocks[1]["facts"].as_array().unwrap() {
            assert!(fact["title"].as_str().unwrap().chars().count() <= KEY_CHARS);
            assert!(fact["value"].as_str().unwrap().chars().count() <= VALUE_CHARS);
        }
        // Title, facts, "Alerts", the rows, "…and N more", footer.
        let shown = blocks.len() - 5;
        let more = blocks[blocks.len() - 2]["text"].as_str().unwrap();
        assert_eq!(more, format!("…and {} more", 10_000 - shown));
    }

    #[test]
    fn a_group_lists_its_rows_and_mentions_no_one() {
        let body = render_group(&fixtures::group(), &fixtures::options());
        let card = &body["attachments"][0]["content"];
        // Teams mentions only through `msteams.entities`.
        assert_eq!(card["msteams"], json!({"width": "Full"}));
        let blocks = card["body"].as_array().unwrap();
        assert_eq!(blocks.len(), 3 + 100 + 2, "every listed row fits");
        assert_eq!(
            blocks[6]["text"],
            "Sigma: Mimikatz Use <!channel> & @everyone — [web-003](https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003) — medium — 20:43:11"
        );
        assert_eq!(blocks[blocks.len() - 2]["text"], "…and 400 more");
    }
}
