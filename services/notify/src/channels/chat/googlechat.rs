//! The `googlechat` channel: a Google Chat incoming-webhook message with
//! one card (`cardsV2`): the title in the header with the alert id below
//! it, a section with the suppressed count and the facts as `decoratedText`
//! widgets, and a collapsible "Details" section with the context.
//!
//! Repeats of one alert thread together: `thread.threadKey` is the dedup
//! key (else the name), and the URL asks for
//! `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`.
//!
//! Limits: the body within 30,000 bytes (a message may have 32,000) and
//! 100 widgets, values cut to 1,000 characters; card text is escaped
//! (`&`, `<`, `>`), since Google Chat reads it as simple HTML.
//!
//! A group message ([`render_group`]) is one card within the same limits:
//! the group's title and footer in the header, its counts, time span and
//! values as `decoratedText` widgets, and an "Alerts" section with its rows
//! as compact lines (`name — client — severity — time`, the client linked
//! to its page in Velociraptor) in paragraphs of at most 1,000 characters,
//! `…and N more` when they do not all fit. Each group keeps one thread:
//! `thread.threadKey` is the group's key.

use serde_json::{json, Value};
use talon_proto::{Alert, GroupMessage};

use super::parts::{self, ChannelOptions};
use crate::channels::present;

/// The query parameter asking Google Chat to reply in the key's thread.
pub const REPLY_OPTION_PARAM: &str = "messageReplyOption";
/// Reply in the thread of the key, or start it.
pub const REPLY_OPTION: &str = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD";
/// The card's id in the message.
pub const CARD_ID: &str = "talon-alert";
/// Bytes of the whole body.
pub const BODY_BYTES: usize = 30_000;
/// Widgets in the card.
pub const MAX_WIDGETS: usize = 100;
/// Characters of the header's title.
pub const TITLE_CHARS: usize = 200;
/// Characters of a widget's label.
pub const KEY_CHARS: usize = 200;
/// Characters of a widget's text, escaped.
pub const VALUE_CHARS: usize = 1000;
/// Characters of a thread key.
pub const THREAD_KEY_CHARS: usize = 4000;
/// Details widgets shown before the section is expanded.
const UNCOLLAPSED: usize = 5;

/// The web hook URL with `messageReplyOption` set to [`REPLY_OPTION`].
pub fn url(base: &str) -> Result<String, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| e.to_string())?;
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != REPLY_OPTION_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair(REPLY_OPTION_PARAM, REPLY_OPTION);
    Ok(url.into())
}

fn decorated(label: &str, text: &str) -> Value {
    json!({"decoratedText": {
        "topLabel": parts::cut(&present::one_line(label), KEY_CHARS),
        "text": parts::cut_escaped(parts::shown(text), VALUE_CHARS, parts::escape_markup),
        "wrapText": true,
    }})
}

fn widgets(body: &Value) -> usize {
    body.pointer("/cardsV2/0/card/sections")
        .and_then(Value::as_array)
        .map_or(0, |s| {
            s.iter()
                .map(|s| {
                    s.get("widgets")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                })
                .sum()
        })
}

/// The message for `alert`.
pub fn render(alert: &Alert, options: &ChannelOptions) -> Value {
    let mut summary = Vec::new();
    if let Some(line) = present::suppressed_line(alert) {
        summary.push(json!({"textParagraph": {"text": parts::cut_escaped(&line, VALUE_CHARS, parts::escape_markup)}}));
    }
    summary.extend(
        present::facts(alert, &options.sections)
            .iter()
            .map(|(label, value)| decorated(label, value)),
    );
    let buttons: Vec<Value> = present::links(alert)
        .into_iter()
        .map(|(text, url)| json!({"text": text, "onClick": {"openLink": {"url": url}}}))
        .collect();
    if !buttons.is_empty() {
        summary.push(json!({"buttonList": {"buttons": buttons}}));
    }
    let context = present::context_rows(alert);
    let build = |n: usize| {
        let mut sections = vec![json!({"widgets": summary})];
        if !context.is_empty() {
            let details: Vec<Value> = parts::kept(&context, n)
                .iter()
                .map(|(key, value)| decorated(key, value))
                .collect();
            sections.push(json!({
                "header": "Details",
                "collapsible": true,
                "uncollapsibleWidgetsCount": UNCOLLAPSED,
                "widgets": details,
            }));
        }
        json!({
            "cardsV2": [{
                "cardId": CARD_ID,
                "card": {
                    "header": {
                        "title": parts::cut(&present::title(alert, present::WHOLE_NAME), TITLE_CHARS),
                        "subtitle": present::footer(alert),
                    },
                    "sections": sections,
                },
            }],
            "thread": {"threadKey": parts::bounded_key(parts::dedup_key(alert), THREAD_KEY_CHARS)},
        })
    };
    parts::fit(context.len(), build, |body| {
        parts::json_len(body) <= BODY_BYTES && widgets(body) <= MAX_WIDGETS
    })
}

/// `lines` and then `more`, when there is one, joined by `<br>` into
/// paragraphs of at most [`VALUE_CHARS`] characters (a longer line, with
/// a long link, is a paragraph of its own).
fn paragraphs<'a>(lines: impl Iterator<Item = &'a String>, more: Option<&'a str>) -> Vec<Value> {
    const BREAK: &str = "<br>";
    let mut out = Vec::new();
    let (mut current, mut used) = (String::new(), 0);
    for line in lines.map(String::as_str).chain(more) {
        let n = line.chars().count();
        if used > 0 && used + BREAK.len() + n > VALUE_CHARS {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        if used > 0 {
            current.push_str(BREAK);
            used += BREAK.len();
        }
        current.push_str(line);
        used += n;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out.into_iter()
        .map(|text| json!({"textParagraph": {"text": text}}))
        .collect()
}

/// The message for `group`.
pub fn render_group(group: &GroupMessage, _options: &ChannelOptions) -> Value {
    let facts = present::group_facts(group);
    let lines: Vec<String> = group
        .rows
        .iter()
        .map(|row| {
            present::row_line(
                group,
                row,
                |t, max| parts::cut_escaped(t, max, parts::escape_markup),
                // A safe link has no `"`, `<` or `>`; its `&` become entities.
                |c, u| format!("<a href=\"{}\">{c}</a>", u.replace('&', "&amp;")),
            )
        })
        .collect();
    let build = |k: usize, n: usize| {
        let summary: Vec<Value> = parts::kept(&facts, k)
            .iter()
            .map(|(label, value)| decorated(label, value))
            .collect();
        let mut sections = vec![json!({"widgets": summary})];
        let more = present::not_shown(group, n);
        let more = (more > 0).then(|| present::and_more(more));
        let rows = paragraphs(lines.iter().take(n), more.as_deref());
        if !rows.is_empty() {
            sections.push(json!({"header": "Alerts", "widgets": rows}));
        }
        json!({
            "cardsV2": [{
                "cardId": CARD_ID,
                "card": {
                    "header": {
                        "title": parts::cut(&present::group_title(group), TITLE_CHARS),
                        "subtitle": present::group_footer(group),
                    },
                    "sections": sections,
                },
            }],
            "thread": {"threadKey": parts::bounded_key(&group.group_key, THREAD_KEY_CHARS)},
        })
    };
    parts::fit_in_turn(facts.len(), lines.len(), build, |body| {
        parts::json_len(body) <= BODY_BYTES && widgets(body) <= MAX_WIDGETS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    #[test]
    fn urls_ask_to_reply_in_the_thread() {
        fn check(base: &str, expected: &str) {
            assert_eq!(url(base).unwrap(), expected);
        }
        check(
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T",
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&token=T&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
        );
        check(
            "https://chat.googleapis.com/v1/spaces/AAA/messages?messageReplyOption=REPLY_MESSAGE_OR_FAIL&key=K",
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=K&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
        );
        check(
            "http://127.0.0.1:8080/chat",
            "http://127.0.0.1:8080/chat?messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD",
        );
        assert!(url("not a url").is_err());
    }

    #[test]
    fn repeats_of_one_key_share_a_thread() {
        let mut a = fixtures::alert();
        let first = render(&a, &fixtures::options());
        a.id = "another".into();
        let second = render(&a, &fixtures::options());
        assert_eq!(first["thread"]["threadKey"], "Honey file | C.1234");
        assert_eq!(first["thread"], second["thread"]);
    }

    #[test]
    fn oversized_alerts_stay_within_the_limits() {
        let body = render(&fixtures::oversized(), &fixtures::options());
        assert!(parts::json_len(&body) <= BODY_BYTES);
        assert!(widgets(&body) <= MAX_WIDGETS);
        let card = &body["cardsV2"][0]["card"];
        assert!(card["header"]["title"].as_str().unwrap().chars().count() <= TITLE_CHARS);
        let details = card["sections"][1]["widgets"].as_array().unwrap();
        let last = &details.last().unwrap()["decoratedText"];
        assert_eq!(last["topLabel"], parts::LEFT_OUT_LABEL);
        for w in details {
            let text = w["decoratedText"]["text"].as_str().unwrap();
            assert!(!text.contains('<'), "escaped: {text}");
        }
    }

    #[test]
    fn a_group_keeps_one_thread() {
        let mut group = fixtures::group();
        let first = render_group(&group, &fixtures::options());
        assert_eq!(first["thread"]["threadKey"], group.group_key.as_str());
        group.sequence += 1;
        group.rows.truncate(10);
        let next = render_group(&group, &fixtures::options());
        assert_eq!(first["thread"], next["thread"]);
        let oversized = fixtures::oversized_group();
        let body = render_group(&oversized, &fixtures::options());
        assert_eq!(body["thread"]["threadKey"], oversized.group_key.as_str());
    }

    #[test]
    fn oversized_groups_stay_within_the_limits() {
        let body = render_group(&fixtures::oversized_group(), &fixtures::options());
        assert!(parts::json_len(&body) <= BODY_BYTES);
        assert!(widgets(&body) <= MAX_WIDGETS);
        let card = &body["cardsV2"][0]["card"];
        assert!(card["header"]["title"].as_str().unwrap().chars().count() <= TITLE_CHARS);
        for w in card["sections"][0]["widgets"].as_array().unwrap() {
            let text = w["decoratedText"]["text"].as_str().unwrap();
            assert!(
                text.chars().count() <= VALUE_CHARS && !text.contains('<'),
                "{text}"
            );
        }
        let rows = card["sections"][1]["widgets"].as_array().unwrap();
        let texts: Vec<&str> = rows
            .iter()
            .map(|w| w["textParagraph"]["text"].as_str().unwrap())
            .collect();
        assert!(texts.iter().all(|t| t.chars().count() <= VALUE_CHARS));
        let shown: usize = texts.iter().map(|t| t.matches("<a href=").count()).sum();
        let more = format!("…and {} more", 10_000 - shown);
        assert!(texts.last().unwrap().ends_with(&more), "{texts:?}");
    }

    #[test]
    fn a_groups_text_is_escaped() {
        let body = render_group(&fixtures::group(), &fixtures::options());
        // The header is plain text; the sections are read as HTML.
        let sections = body["cardsV2"][0]["card"]["sections"].to_string();
        assert!(!sections.contains("<!channel>"), "{sections}");
        assert!(sections.contains("&lt;!channel&gt; &amp; @everyone"));
        assert!(sections.contains(
            "— <a href=\\\"https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003\\\">web-003</a> — medium — 20:43:11"
        ), "{sections}");
        assert!(sections.contains("…and 400 more"));
    }
}
