//! What an alert says, as the e-mail and the chat kinds both show it: its
//! title, its text on one line, the client it is about, its severity's
//! colour, the channel's `include_*_details` switches, the short facts, the
//! context rows, the suppressed count and the footer. Pure functions over
//! the enriched [`Alert`]; no I/O.
//!
//! What a group message says, as the chat kinds show it: its title
//! ([`group_title`]), its facts (counts by severity and by client, the time
//! it spans, the digest's schedule, the group's values) and one compact line
//! per row ([`row_line`]), then [`and_more`].
//!
//! No control character (CR, LF, ...) ever reaches a title: a mail subject
//! is built from it, and so is every chat kind's notification text.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use talon_kit::config::ChannelConfig;
use talon_proto::group::{Count, GroupRow};
use talon_proto::{Alert, GroupMessage};

/// The `name_chars` of a [`title`] that keeps the whole name.
pub const WHOLE_NAME: usize = usize::MAX;

/// The optional sections of what a channel shows (its `include_*_details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    /// Client details: hostname, fqdn, os, labels, client id.
    pub client: bool,
    /// Flow details: the flow id.
    pub flow: bool,
    /// Artifact details: the artifact and its type.
    pub artifact: bool,
}

impl Sections {
    /// The switches of a channel.
    pub fn of(channel: &ChannelConfig) -> Sections {
        Sections {
            client: channel.include_client_details,
            flow: channel.include_flow_details,
            artifact: channel.include_artifact_details,
        }
    }
}

/// The title, in the style of Velociraptor's `Server.Monitor.Alerts`
/// subject: `Server alert` or `Alert from client <hostname>`, then
/// ` (<severity>)`, then `: ` and the name cut to `name_chars` characters
/// ([`WHOLE_NAME`] keeps it whole). Every control character in any part
/// becomes a space, so nothing in an alert can end a mail header. The
/// e-mail subject cuts the name to 30 characters; the chat kinds keep it
/// whole.
pub fn title(alert: &Alert, name_chars: usize) -> String {
    let mut title = match client_label(alert) {
        Some(client) => format!("Alert from client {}", one_line(client)),
        None => "Server alert".to_owned(),
    };
    if let Some(severity) = alert.severity.as_deref().filter(|s| !s.is_empty()) {
        title.push_str(&format!(" ({})", one_line(severity)));
    }
    let name: String = alert.name.chars().take(name_chars).collect();
    title.push_str(": ");
    title.push_str(&one_line(&name));
    title
}

/// What the title calls the client: its inventory hostname, else its id
/// unless the alert is the server's own.
pub fn client_label(alert: &Alert) -> Option<&str> {
    let hostname = alert
        .client
        .as_ref()
        .and_then(|c| c.hostname.as_deref())
        .filter(|h| !h.trim().is_empty());
    hostname.or_else(|| client_id(alert))
}

/// The client id after the `event_data.ClientId` override, unless it is
/// the server (`server`, or none).
pub fn client_id(alert: &Alert) -> Option<&str> {
    alert
        .effective_client_id()
        .or_else(|| alert.client.as_ref().and_then(|c| c.client_id.as_deref()))
        .filter(|id| !id.is_empty() && *id != "server")
}

/// `text` with every control character (and the Unicode line and paragraph
/// separators) replaced by a space.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The colour of a severity as `0xRRGGBB` (unknown or absent severities are
/// grey): the e-mail badge and the chat kinds' colour bars.
pub fn severity_rgb(severity: Option<&str>) -> u32 {
    match severity.map(str::to_ascii_lowercase).as_deref() {
        Some("critical") => 0x82071e,
        Some("high") => 0xcf222e,
        Some("medium") => 0xbc4c00,
        Some("low") => 0x0969da,
        _ => 0x57606a,
    }
}

/// The short facts the chat kinds show, in order: severity, client (with
/// the client details), artifact, flow (with the flow details), artifact
/// type (with the artifact details), organization, time. Absent ones are
/// left out; each is on one line.
pub fn facts(alert: &Alert, sections: &Sections) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut push = |label: &'static str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            out.push((label, one_line(v)));
        }
    };
    push("Severity", alert.severity.as_deref());
    if sections.client {
        let client = match (client_label(alert), client_id(alert)) {
            (Some(label), Some(id)) if label != id => Some(format!("{label} ({id})")),
            (label, _) => label.map(str::to_owned),
        };
        push("Client", client.as_deref());
    }
    push("Artifact", alert.effective_artifact());
    if sections.flow {
        push("Flow", alert.effective_flow_id());
    }
    if sections.artifact {
        push("Artifact type", alert.effective_artifact_type());
    }
    push("Organization", alert.org_id.as_deref());
    let time = alert.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true);
    push("Time", Some(&time));
    out
}

/// The context table: enrich's flattened `context`, or the raw `event_data`
/// of an alert that was not enriched (strings as they are, the rest as JSON).
pub fn context_rows(alert: &Alert) -> Vec<(String, String)> {
    match &alert.context {
        Some(context) => context
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
        None => alert
            .event_data
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
    }
}

/// The "N similar alerts were suppressed" line, when dedup counted any.
pub fn suppressed_line(alert: &Alert) -> Option<String> {
    match alert.dedup.as_ref().map(|d| d.suppressed_before) {
        None | Some(0) => None,
        Some(1) => Some("1 similar alert was suppressed in the previous window".to_owned()),
        Some(n) => Some(format!(
            "{n} similar alerts were suppressed in the previous window"
        )),
    }
}

/// The alert's links into the Velociraptor GUI, labelled: host, flow,
/// hunt. enrich made them, but a message on an internal subject is read as
/// hostile too: only an `http(s)://` URL of at most 2,048 characters with
/// no space, control character or `<>"'\`^{|}` (nothing that could end a
/// link in HTML, Markdown or Slack's mrkdwn) is shown.
pub fn links(alert: &Alert) -> Vec<(&'static str, &str)> {
    let Some(links) = &alert.links else {
        return Vec::new();
    };
    [
        ("Host in Velociraptor", links.host.as_deref()),
        ("Flow in Velociraptor", links.flow.as_deref()),
        ("Hunt in Velociraptor", links.hunt.as_deref()),
    ]
    .into_iter()
    .filter_map(|(label, url)| Some((label, url.filter(|u| safe_url(u))?)))
    .collect()
}

pub fn safe_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !"<>\"'\\`^{|}".contains(c))
}

/// The chat kinds' small print: `talon · alert <id>`.
pub fn footer(alert: &Alert) -> String {
    format!("talon · alert {}", one_line(&alert.id))
}

/// Characters of an alert's name in a group's row, at most.
pub const ROW_NAME_CHARS: usize = 120;

/// Characters of a client, a severity or a field's name in a group's
/// counts and rows, at most.
pub const LABEL_CHARS: usize = 64;

/// Characters of a group's value, at most (notify keeps 1,024 already).
pub const GROUP_VALUE_CHARS: usize = 1024;

/// Clients named in a group's [`client_counts`] by the chat kinds; the
/// alerts of the others are added up.
pub const TOP_CLIENTS: usize = 5;

/// Severities named in a group's [`severity_counts`], at most.
pub const TOP_SEVERITIES: usize = talon_proto::group::MAX_COUNTED_CLIENTS;

/// `1 alert`, `2 alerts`.
pub fn alert_count(n: u64) -> String {
    if n == 1 {
        "1 alert".to_owned()
    } else {
        format!("{n} alerts")
    }
}

/// The title of a group's message: `500 alerts`, `Digest: 37 alerts` for
/// a digest, then `: ` and what the alerts share (their name, else the
/// group's values) when they share something. Whole, on one line.
pub fn group_title(group: &GroupMessage) -> String {
    let count = alert_count(group.count);
    let head = match group.digest {
        Some(_) => format!("Digest: {count}"),
        None => count,
    };
    let topic = group
        .common_name()
        .map(str::to_owned)
        .unwrap_or_else(|| group.label());
    if topic.trim().is_empty() {
        one_line(&head)
    } else {
        one_line(&format!("{head}: {topic}"))
    }
}

/// `2020-10-07 20:43:08` (UTC).
fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The time a group's alerts span: `2020-10-07 20:43:08 to 20:51:27 UTC`
/// (the date once when it is the same), or one time.
pub fn group_span(group: &GroupMessage) -> String {
    let (first, last) = (&group.first_at, &group.last_at);
    if first == last {
        format!("{} UTC", time(first))
    } else if first.date_naive() == last.date_naive() {
        format!("{} to {} UTC", time(first), last.format("%H:%M:%S"))
    } else {
        format!("{} to {} UTC", time(first), time(last))
    }
}

/// `text` on one line, cut to `max` characters with `…`.
fn label(text: &str, max: usize) -> String {
    let text = one_line(text);
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `value (count), ...`: the first `top` of `counts` (`blank` standing
/// for an empty value), then `rest(n)` for the `n` alerts of the others
/// (`extra` of them not in `counts`), when there are any.
fn counts(
    counts: &[Count],
    top: usize,
    blank: &str,
    extra: u64,
    rest: impl Fn(u64) -> String,
) -> String {
    let mut out: Vec<String> = counts
        .iter()
        .take(top)
        .map(|c| {
            let value = if c.value.trim().is_empty() {
                blank
            } else {
                &c.value
            };
            format!("{} ({})", label(value, LABEL_CHARS), c.count)
        })
        .collect();
    let others = extra + counts.iter().skip(top).map(|c| c.count).sum::<u64>();
    if others > 0 {
        out.push(rest(others));
    }
    out.join(", ")
}

/// `high (450), medium (40), critical (10)`: the counts by severity, most
/// first (`(none)`: alerts without one).
pub fn severity_counts(group: &GroupMessage) -> String {
    counts(&group.by_severity, TOP_SEVERITIES, "(none)", 0, |n| {
        format!("{n} of other severities")
    })
}

/// `web-000 (12), web-001 (3), 480 on other clients`: the first `top`
/// clients by their alerts (`server`: the server's own), and the alerts of
/// the others added up.
pub fn client_counts(group: &GroupMessage, top: usize) -> String {
    counts(&group.by_client, top, "server", group.other_clients, |n| {
        format!("{n} on other clients")
    })
}

/// What a group's message says beside its title and rows, as `(label,
/// value)` pairs on one line each: `Severity`, `Clients` (the first
/// [`TOP_CLIENTS`]), `Time`, `Digest` (its schedule, when it is one), then
/// each of the group's values under its field's name.
pub fn group_facts(group: &GroupMessage) -> Vec<(String, String)> {
    let mut out = vec![
        ("Severity".to_owned(), severity_counts(group)),
        ("Clients".to_owned(), client_counts(group, TOP_CLIENTS)),
        ("Time".to_owned(), group_span(group)),
    ];
    if let Some(digest) = &group.digest {
        out.push(("Digest".to_owned(), label(digest, GROUP_VALUE_CHARS)));
    }
    out.extend(group.group.iter().map(|g| {
        (
            label(&g.field, LABEL_CHARS),
            label(&g.value, GROUP_VALUE_CHARS),
        )
    }));
    out
}

/// The row's link to its client in the Velociraptor GUI, when it is safe
/// (as [`links`] tells).
pub fn row_link(row: &GroupRow) -> Option<&str> {
    row.link.as_deref().filter(|u| safe_url(u))
}

/// A row as one compact line: `name — client — severity — time`
/// (`server` for the server's own alerts, the severity left out when it
/// has none, the time of day alone when the group spans one day). `text`
/// writes each part from its one-line text and the characters it may have
/// (escaping it as the kind needs); `link` links the written client to
/// its page in Velociraptor when the row has a safe link.
pub fn row_line(
    group: &GroupMessage,
    row: &GroupRow,
    text: impl Fn(&str, usize) -> String,
    link: impl Fn(&str, &str) -> String,
) -> String {
    let client = text(
        &one_line(row.client.as_deref().unwrap_or("server")),
        LABEL_CHARS,
    );
    let mut parts = vec![
        text(&one_line(&row.name), ROW_NAME_CHARS),
        match row_link(row) {
            Some(url) => link(&client, url),
            None => client,
        },
    ];
    if let Some(severity) = row.severity.as_deref().filter(|s| !s.trim().is_empty()) {
        parts.push(text(&one_line(severity), LABEL_CHARS));
    }
    let when = if group.first_at.date_naive() == group.last_at.date_naive() {
        row.timestamp.format("%H:%M:%S").to_string()
    } else {
        time(&row.timestamp)
    };
    parts.push(text(&when, LABEL_CHARS));
    parts.join(" — ")
}

/// The alerts of `group` a message showing its first `shown` rows leaves
/// out: the other rows and those never listed.
pub fn not_shown(group: &GroupMessage, shown: usize) -> u64 {
    group.rows.len().saturating_sub(shown) as u64 + group.not_listed
}

/// `…and N more`.
pub fn and_more(n: u64) -> String {
    format!("…and {n} more")
}

/// The highest severity of a group's alerts (`critical`, `high`, `medium`,
/// `low`; else the most common one), for its colour.
pub fn highest_severity(group: &GroupMessage) -> Option<&str> {
    let rank = |s: &str| match s.to_ascii_lowercase().as_str() {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    };
    let mut best: Option<&Count> = None;
    for c in &group.by_severity {
        if best.is_none_or(|b| rank(&c.value) > rank(&b.value)) {
            best = Some(c);
        }
    }
    best.map(|c| c.value.as_str()).filter(|s| !s.is_empty())
}

/// The chat kinds' small print of a group: `talon · group <key> · message N`.
pub fn group_footer(group: &GroupMessage) -> String {
    one_line(&format!(
        "talon · group {} · message {}",
        group.group_key, group.sequence
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;

    #[test]
    fn links_are_labelled_and_only_safe_urls_are_shown() {
        let mut a = fixtures::alert();
        let got = links(&a);
        assert_eq!(
            got,
            [
                ("Host in Velociraptor", "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.1234"),
                ("Flow in Velociraptor", "https://vr.example.org:8889/app/index.html?org_id=root#/collected/C.1234/F.ABCD"),
            ]
        );
        for bad in [
            "javascript:alert(1)",
            "https://x.example.org/a b",
            "https://x.example.org/\">",
            "https://x.example.org/|evil",
            "https://x.example.org/\r\nX",
            "https://x.example.org/é",
            "",
        ] {
            a.links = Some(talon_proto::Links {
                host: Some(bad.to_owned()),
                ..Default::default()
            });
            assert!(links(&a).is_empty(), "{bad:?}");
        }
        a.links = Some(talon_proto::Links {
            host: Some(format!("https://x.example.org/{}", "a".repeat(2048))),
            ..Default::default()
        });
        assert!(links(&a).is_empty(), "too long");
        a.links = None;
        assert!(links(&a).is_empty());
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
    fn severities_have_colours() {
        fn check(severity: Option<&str>, expected: u32) {
            assert_eq!(severity_rgb(severity), expected, "{severity:?}");
        }
        check(Some("critical"), 0x82071e);
        check(Some("HIGH"), 0xcf222e);
        check(Some("medium"), 0xbc4c00);
        check(Some("low"), 0x0969da);
        check(Some("odd"), 0x57606a);
        check(Some(""), 0x57606a);
        check(None, 0x57606a);
    }

    #[test]
    fn group_titles_say_how_many_and_what_they_share() {
        fn check(edit: impl FnOnce(&mut GroupMessage), expected: &str) {
            let mut g = fixtures::group();
            edit(&mut g);
            assert_eq!(group_title(&g), expected);
        }
        check(
            |_| {},
            "500 alerts: Sigma: Mimikatz Use <!channel> & @everyone",
        );
        check(
            |g| {
                g.group = vec![talon_proto::group::GroupValue {
                    field: "client_id".into(),
                    value: "C.1".into(),
                }];
            },
            "500 alerts: client_id=C.1",
        );
        check(
            |g| {
                g.group.clear();
                g.digest = Some("daily 08:00".into());
                g.count = 37;
            },
            "Digest: 37 alerts",
        );
        check(
            |g| {
                g.group.clear();
                g.rows.truncate(1);
                g.not_listed = 0;
                g.count = 1;
            },
            "1 alert: Sigma: Mimikatz Use <!channel> & @everyone",
        );
        check(
            |g| g.group[0].value = "a\r\nBcc: x\u{2028}y".into(),
            "500 alerts: a  Bcc: x y",
        );
    }

    #[test]
    fn group_counts_name_the_top_and_add_up_the_rest() {
        fn count(value: &str, count: u64) -> Count {
            Count {
                value: value.into(),
                count,
            }
        }
        let mut g = fixtures::group();
        assert_eq!(
            severity_counts(&g),
            "high (450), medium (40), critical (10)"
        );
        assert_eq!(
            client_counts(&g, 2),
            "web-000 (1), web-001 (1), 498 on other clients"
        );
        g.by_client = vec![count("web-01", 7), count("", 3)];
        g.other_clients = 0;
        assert_eq!(client_counts(&g, 5), "web-01 (7), server (3)");
        g.by_severity = vec![count("", 2)];
        assert_eq!(severity_counts(&g), "(none) (2)");
        g.by_client = vec![count(&"h".repeat(100), 1)];
        let long = client_counts(&g, 5);
        assert_eq!(long.chars().count(), LABEL_CHARS + " (1)".len(), "{long}");
    }

    #[test]
    fn highest_severity_ranks_not_counts() {
        fn check(severities: &[&str], expected: Option<&str>) {
            let mut g = fixtures::group();
            g.by_severity = severities
                .iter()
                .map(|s| Count {
                    value: (*s).into(),
                    count: 1,
                })
                .collect();
            assert_eq!(highest_severity(&g), expected, "{severities:?}");
        }
        check(&["high", "medium", "critical"], Some("critical"));
        check(&["low", "Medium"], Some("Medium"));
        check(&["odd", "low"], Some("low"));
        check(&["odd", "other"], Some("odd"));
        check(&[""], None);
        check(&[], None);
    }

    #[test]
    fn rows_are_one_compact_line() {
        fn check(edit: impl FnOnce(&mut GroupMessage), expected: &str) {
            let mut g = fixtures::group();
            edit(&mut g);
            let row = g.rows[3].clone();
            let line = row_line(&g, &row, |t, _| t.to_owned(), |c, u| format!("[{c}]({u})"));
            assert_eq!(line, expected);
        }
        let url = "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003";
        let name = "Sigma: Mimikatz Use <!channel> & @everyone";
        check(
            |_| {},
            &format!("{name} — [web-003]({url}) — medium — 20:43:11"),
        );
        check(
            |g| {
                g.rows[3].link = Some("javascript:alert(1)".into());
                g.rows[3].severity = None;
                g.rows[3].client = None;
            },
            &format!("{name} — server — 20:43:11"),
        );
        check(
            |g| {
                g.last_at += chrono::Duration::days(1);
                g.rows[3].name = "two\nlines".into();
            },
            &format!("two lines — [web-003]({url}) — medium — 2020-10-07 20:43:11"),
        );
        // Each part is handed over with the characters it may have.
        let g = fixtures::oversized_group();
        let row = g.rows[0].clone();
        let line = row_line(
            &g,
            &row,
            |t, max| t.chars().take(max).collect(),
            |c, _| c.to_owned(),
        );
        let parts: Vec<&str> = line.split(" — ").collect();
        assert_eq!(parts[0].chars().count(), ROW_NAME_CHARS);
        assert_eq!(parts[1].chars().count(), LABEL_CHARS);
    }

    #[test]
    fn group_facts_come_in_order() {
        let g = fixtures::oversized_group();
        let facts = group_facts(&g);
        let labels: Vec<&str> = facts.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Severity",
                "Clients",
                "Time",
                "Digest",
                "name",
                "context.User"
            ]
        );
        assert_eq!(facts[2].1, "2020-10-07 20:43:08 UTC");
        assert_eq!(facts[4].1.chars().count(), GROUP_VALUE_CHARS);
        assert_eq!(not_shown(&g, 10), 9_990);
        assert_eq!(and_more(9_990), "…and 9990 more");
        assert_eq!(
            group_footer(&g),
            "talon · group ffffffffffffffffffffffffffffffff · message 18446744073709551615"
        );
    }
}
