//! The `slack` channel: an incoming-webhook message with a `text` fallback
//! (what notifications show) and Block Kit blocks: a header with the title,
//! a section of fields (severity, client, artifact, ...), the context as
//! compact `*key*: value` lines in as many sections as it takes, and a
//! context block with the suppressed count and the alert id.
//!
//! Within Slack's limits: at most 50 blocks, 3,000 characters a section
//! text, 150 a header, 10 fields of 2,000 characters; what does not fit is
//! cut with `…` or counted in a last "N more fields left out" line. Text is
//! mrkdwn with `&`, `<`, `>` escaped, so no alert text becomes a mention
//! (`<!channel>`) or a link.
//!
//! A group message ([`render_group`]) is one message of the same limits:
//! the group's title in the header, its counts, time span and values as
//! fields, its rows as compact lines (`• name — client — severity — time`,
//! the client linked to its page in Velociraptor) packed into as many
//! sections as fit, `…and N more` when they do not all fit, and the group
//! in small print.

use serde_json::{json, Map, Value};
use talon_proto::{Alert, GroupMessage};

use super::parts::{self, ChannelOptions};
use crate::channels::present;

/// Blocks in one message.
pub const MAX_BLOCKS: usize = 50;
/// Characters in a section's text.
pub const SECTION_CHARS: usize = 3000;
/// Characters in a header's text.
pub const HEADER_CHARS: usize = 150;
/// Fields in one section.
pub const MAX_FIELDS: usize = 10;
/// Characters in one field's text.
pub const FIELD_CHARS: usize = 2000;
/// Characters of the `text` fallback talon sends (Slack cuts at 40,000).
pub const TEXT_CHARS: usize = 3000;
/// Characters of a context key shown before its value.
pub const KEY_CHARS: usize = 200;
/// Room kept in the last context section for the "left out" line.
const LEFT_OUT_ROOM: usize = 40;

/// `text` as mrkdwn, escaped and cut to `max` characters.
fn mrkdwn(text: &str, max: usize) -> String {
    parts::cut_escaped(text, max, parts::escape_markup)
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn header(title: &str) -> Value {
    json!({
        "type": "header",
        "text": {"type": "plain_text", "text": parts::cut(title, HEADER_CHARS), "emoji": false},
    })
}

/// A field: `*label*` over the value, escaped, within [`FIELD_CHARS`].
fn field(label: &str, value: &str) -> Value {
    let head = format!("*{}*\n", mrkdwn(label, KEY_CHARS));
    let room = FIELD_CHARS - head.chars().count();
    json!({"type": "mrkdwn", "text": head + &mrkdwn(value, room)})
}

/// The small print closing a message.
fn context(notes: Vec<Value>) -> Value {
    json!({"type": "context", "elements": notes})
}

/// The message's `text` fallback, blocks, and who it is posted as.
fn message(title: &str, blocks: Vec<Value>, options: &ChannelOptions) -> Value {
    let mut map = Map::new();
    map.insert("text".into(), Value::String(mrkdwn(title, TEXT_CHARS)));
    map.insert("blocks".into(), Value::Array(blocks));
    let mut body = Value::Object(map);
    parts::post_as(&mut body, options);
    body
}

/// The context lines packed into at most `room` section texts, each within
/// [`SECTION_CHARS`] (a line longer than a section is cut); when some do
/// not fit, the last section ends by saying how many.
fn pack(lines: &[(String, String)], room: usize) -> Vec<String> {
    if room == 0 {
        return Vec::new();
    }
    // The last section keeps room for the "left out" line.
    let capacity = |index: usize| {
        if index + 1 >= room {
            SECTION_CHARS - LEFT_OUT_ROOM
        } else {
            SECTION_CHARS
        }
    };
    let mut sections: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut placed = 0;
    for (key, value) in lines {
        let head = format!("*{}*: ", mrkdwn(&present::one_line(key), KEY_CHARS));
        let line_within = |cap: usize| {
            let room = cap.saturating_sub(head.chars().count());
            format!("{head}{}", mrkdwn(parts::shown(value), room))
        };
        let cap = capacity(sections.len());
        let line = line_within(cap);
        let used = current.chars().count();
        if used == 0 {
            current = line;
        } else if used + 1 + line.chars().count() <= cap {
            current.push('\n');
            current.push_str(&line);
        } else if sections.len() + 1 < room {
            sections.push(std::mem::take(&mut current));
            current = line_within(capacity(sections.len()));
        } else {
            break;
        }
        placed += 1;
    }
    if placed < lines.len() {
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&format!("_{}_", parts::left_out(lines.len() - placed)));
    }
    if !current.is_empty() {
        sections.push(current);
    }
    sections
}

/// The message for `alert`.
pub fn render(alert: &Alert, options: &ChannelOptions) -> Value {
    let title = present::title(alert, present::WHOLE_NAME);
    let mut blocks = vec![header(&title)];
    let fields: Vec<Value> = present::facts(alert, &options.sections)
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(label, value)| field(label, &value))
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut notes = Vec::new();
    // Slack's own link syntax; present::links lets no `|` or `>` through.
    if let Some(links) = parts::joined_links(alert, |l, u| format!("<{u}|{l}>"), SECTION_CHARS) {
        notes.push(json!({"type": "mrkdwn", "text": links}));
    }
    if let Some(line) = present::suppressed_line(alert) {
        notes.push(json!({"type": "mrkdwn", "text": mrkdwn(&line, SECTION_CHARS)}));
    }
    notes.push(json!({"type": "mrkdwn", "text": mrkdwn(&present::footer(alert), SECTION_CHARS)}));
    // Room for the context, before the closing context block.
    let room = MAX_BLOCKS - blocks.len() - 1;
    blocks.extend(
        pack(&present::context_rows(alert), room)
            .into_iter()
            .map(section),
    );
    blocks.push(context(notes));
    message(&title, blocks, options)
}

/// `lines` (none longer than a section) and then `more`, when there is
/// one, packed in order into section texts of at most [`SECTION_CHARS`].
fn pack_lines<'a>(lines: impl Iterator<Item = &'a String>, more: Option<String>) -> Vec<String> {
    let mut sections = Vec::new();
    let (mut current, mut used) = (String::new(), 0);
    let mut add = |line: &str| {
        let n = line.chars().count();
        if used > 0 && used + 1 + n > SECTION_CHARS {
            sections.push(std::mem::take(&mut current));
            used = 0;
        }
        if used > 0 {
            current.push('\n');
            used += 1;
        }
        current.push_str(line);
        used += n;
    };
    for line in lines {
        add(line);
    }
    if let Some(more) = more {
        add(&more);
    }
    if !current.is_empty() {
        sections.push(current);
    }
    sections
}

/// The message for `group`. A row's line is at most about 2,400
/// characters (its name, client and severity are cut, a safe link has at
/// most 2,048), so each fits in a section.
pub fn render_group(group: &GroupMessage, options: &ChannelOptions) -> Value {
    let title = present::group_title(group);
    let facts = present::group_facts(group);
    let facts = if facts.len() > MAX_FIELDS {
        parts::kept(&facts, MAX_FIELDS - 1)
    } else {
        facts
    };
    let head = [
        header(&title),
        json!({
            "type": "section",
            "fields": facts.iter().map(|(l, v)| field(l, v)).collect::<Vec<_>>(),
        }),
    ];
    let lines: Vec<String> = group
        .rows
        .iter()
        .map(|row| {
            // Slack's own link syntax; a safe link has no `|` or `>`.
            let line = present::row_line(group, row, mrkdwn, |c, u| format!("<{u}|{c}>"));
            format!("• {line}")
        })
        .collect();
    let footer = context(vec![json!({
        "type": "mrkdwn",
        "text": mrkdwn(&present::group_footer(group), SECTION_CHARS),
    })]);
    let build = |n: usize| {
        let more = present::not_shown(group, n);
        let more = (more > 0).then(|| format!("_{}_", present::and_more(more)));
        let mut blocks = head.to_vec();
        blocks.extend(
            pack_lines(lines.iter().take(n), more)
                .into_iter()
                .map(section),
        );
        blocks.push(footer.clone());
        message(&title, blocks, options)
    };
    parts::fit(lines.len(), build, |body| {
        body.get("blocks")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
            <= MAX_BLOCKS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    fn text_of(block: &Value) -> &str {
        block["text"]["text"].as_str().unwrap_or("")
    }

    #[test]
    fn oversized_alerts_stay_within_slacks_limits() {
        let body = render(&fixtures::oversized(), &fixtures::options());
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), MAX_BLOCKS, "the context fills every block");
        assert_eq!(blocks[0]["type"], "header");
        assert!(text_of(&blocks[0]).chars().count() <= HEADER_CHARS);
        assert!(text_of(&blocks[0]).ends_with(parts::ELLIPSIS));
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        for f in fields {
            assert!(f["text"].as_str().unwrap().chars().count() <= FIELD_CHARS);
        }
        for block in &blocks[2..blocks.len() - 1] {
            assert_eq!(block["type"], "section");
            let n = text_of(block).chars().count();
            assert!(n <= SECTION_CHARS && n > 0, "{n}");
        }
        let last_section = text_of(&blocks[blocks.len() - 2]);
        assert!(
            last_section.ends_with("more fields left out_"),
            "{last_section}"
        );
        assert!(body["text"].as_str().unwrap().chars().count() <= TEXT_CHARS);
    }

    #[test]
    fn context_lines_are_packed_and_escaped() {
        fn check(lines: &[(&str, &str)], room: usize, expected: &[&str]) {
            let lines: Vec<(String, String)> = lines
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(pack(&lines, room), expected);
        }
        check(&[("a", "1"), ("b", "<x>")], 5, &["*a*: 1\n*b*: &lt;x&gt;"]);
        check(&[("a", "")], 5, &["*a*: (empty)"]);
        check(&[], 5, &[]);
        let long = "x".repeat(SECTION_CHARS);
        let got = pack(
            &[
                ("a".into(), long.clone()),
                ("b".into(), long.clone()),
                ("c".into(), long.clone()),
            ],
            2,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|s| s.chars().count() <= SECTION_CHARS));
        assert!(got[1].ends_with("_1 more field left out_"), "{}", got[1]);
        assert!(pack(&[("a".into(), long)], 0).is_empty());
    }

    #[test]
    fn no_text_can_mention() {
        let body = render(&fixtures::alert(), &fixtures::options()).to_string();
        assert!(!body.contains("<!channel>"), "{body}");
        assert!(body.contains("&lt;!channel&gt;"), "{body}");
    }

    #[test]
    fn oversized_groups_stay_within_slacks_limits() {
        let group = fixtures::oversized_group();
        let body = render_group(&group, &fixtures::options());
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), MAX_BLOCKS, "the rows fill every block");
        assert_eq!(blocks[0]["type"], "header");
        assert!(text_of(&blocks[0]).chars().count() <= HEADER_CHARS);
        assert!(text_of(&blocks[0]).starts_with("Digest: 10000 alerts: Group "));
        let fields = blocks[1]["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        for f in fields {
            assert!(f["text"].as_str().unwrap().chars().count() <= FIELD_CHARS);
        }
        let mut rows = 0;
        for block in &blocks[2..blocks.len() - 1] {
            assert_eq!(block["type"], "section");
            let n = text_of(block).chars().count();
            assert!(n <= SECTION_CHARS && n > 0, "{n}");
            rows += text_of(block).matches("• ").count();
        }
        let last = text_of(&blocks[blocks.len() - 2]);
        let more = format!("_…and {} more_", group.rows.len() - rows);
        assert!(last.ends_with(&more), "{last}");
        assert_eq!(blocks[blocks.len() - 1]["type"], "context");
        assert!(body["text"].as_str().unwrap().chars().count() <= TEXT_CHARS);
    }

    #[test]
    fn a_group_lists_its_rows_and_mentions_no_one() {
        let body = render_group(&fixtures::group(), &fixtures::options());
        let mut blocks = body["blocks"].as_array().unwrap().clone();
        // The header is plain text, which Slack never reads as a mention.
        let header = blocks.remove(0);
        assert_eq!(header["text"]["type"], "plain_text");
        let rest = format!("{} {}", body["text"], Value::Array(blocks));
        assert!(!rest.contains("<!channel>"), "{rest}");
        assert!(rest.contains("&lt;!channel&gt; &amp; @everyone"), "{rest}");
        assert!(rest.contains(
            "— <https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003|web-003> — medium — 20:43:11"
        ));
        assert!(
            rest.contains("_…and 400 more_"),
            "the 100 rows fit, 400 not listed"
        );
        assert_eq!(body["channel"], "#secops");
    }

    #[test]
    fn a_small_group_says_no_more() {
        let mut group = fixtures::group();
        group.rows.truncate(3);
        group.not_listed = 0;
        let body = render_group(&group, &fixtures::options()).to_string();
        assert_eq!(body.matches("• ").count(), 3);
        assert!(!body.contains("more_"), "{body}");
    }
}
