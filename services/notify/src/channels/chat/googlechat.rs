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

use serde_json::{json, Value};
use talon_proto::Alert;

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
}
