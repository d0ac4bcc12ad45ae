//! What a group's mail says: one mail for a [`GroupMessage`] (the alerts of
//! one group of a channel with `group_by`, or of its `digest`), as a subject,
//! a plain-text body and an HTML body with the same parts. Pure functions
//! over the message; no I/O.
//!
//! - The subject: `[talon] <count> alerts`, then `: ` and what the alerts
//!   share (their name, else the group's values, else the digest's
//!   schedule) cut at a word to [`SUBJECT_CHARS`] characters. No control
//!   character ever reaches it.
//! - The body: a summary (count, time range, the group's values, the
//!   digest's schedule, the message's number in its group), the counts by
//!   severity and by client, the first alerts whole (the sections of an
//!   alert's own mail, [`render::text_sections`], cut to
//!   [`WHOLE_ALERT_LIMITS`]), the other listed alerts as a table (time,
//!   severity, client linked to its page in Velociraptor, name), then
//!   "N more alerts not listed". The plain text ends with every alert id
//!   of the message; the HTML says they are there rather than doubling the
//!   mail. Every value in the HTML is escaped.
//!
//! The size is bounded whatever the group: every value is cut, at most
//! [`FULL_ALERTS`] alerts are shown whole, the table stops before
//! [`TABLE_BYTES`] of HTML (the rows it leaves out are counted as not
//! listed) and the id list before [`IDS_BYTES`] (10,000 ids take 330 KB).
//! That keeps a formatted group mail under [`MAX_MAIL_BYTES`] (4 MiB; mail
//! servers commonly take 10 to 25 MB), tested on the largest group a
//! message holds (about 1.3 MB). A group of the default 100 rows of usual
//! alerts is about 80 KB of HTML, under the 102 KB past which Gmail clips
//! a mail.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use talon_proto::group::{Count, GroupRow, FULL_ALERTS};
use talon_proto::{Alert, GroupMessage, Links};

use super::render::{
    self, badge, cut, escape, severity_colour, Heading, Limits, BODY_STYLE, CARD_STYLE,
    FOOTER_STYLE, H1_STYLE, H2_STYLE, KEY_STYLE, TABLE_STYLE, VALUE_STYLE,
};
use crate::channels::present::{self, one_line, Sections};

/// Characters of the subject's topic, at most (cut at a word, then `…`).
pub const SUBJECT_CHARS: usize = 60;

/// Characters of the heading's topic and of a group value, at most.
pub const TOPIC_CHARS: usize = 120;

/// Characters of a client or severity in the counts and the table, at most.
pub const LABEL_CHARS: usize = 64;

/// Characters of an alert's name in the table, at most.
pub const ROW_NAME_CHARS: usize = 120;

/// Group values and counted severities or clients shown, at most (the
/// rest are counted).
pub const MAX_LISTED_COUNTS: usize = talon_proto::group::MAX_COUNTED_CLIENTS;

/// How much of a whole alert's sections a group mail shows.
pub const WHOLE_ALERT_LIMITS: Limits = Limits {
    rows: 25,
    label_chars: 40,
    value_chars: 300,
};

/// The table's HTML, at most: the rows past it are counted as not listed.
pub const TABLE_BYTES: usize = 512 * 1024;

/// The plain text's list of alert ids, at most.
pub const IDS_BYTES: usize = 512 * 1024;

/// A formatted group mail (headers, both bodies, their transfer encoding),
/// at most.
pub const MAX_MAIL_BYTES: usize = 4 * 1024 * 1024;

/// Columns of the plain text's id list.
const IDS_COLUMNS: usize = 76;

const SUMMARY_STYLE: &str = "margin:0 0 12px 0";
const COUNTS_STYLE: &str = "margin:0 0 8px 0;line-height:22px";
const PILL_STYLE: &str = "display:inline-block;padding:0 8px;margin:0 6px 2px 0;\
border-radius:10px;font-size:12px;line-height:18px;color:#ffffff";
const ALERT_STYLE: &str = "margin:12px 0;padding:8px 12px;border:1px solid #d0d7de;\
border-radius:4px;border-left-width:4px";
const H3_STYLE: &str = "font-size:15px;margin:0 0 8px 0;word-break:break-word";
const H4_STYLE: &str = "font-size:13px;margin:12px 0 4px 0;color:#656d76";
const ROWS_STYLE: &str = "border-collapse:collapse;width:100%;font-size:13px";
const TH_STYLE: &str = "padding:4px 10px 4px 0;text-align:left;color:#656d76;\
font-size:12px;border-bottom:1px solid #d0d7de";
const TD_STYLE: &str = "padding:3px 10px 3px 0;border-bottom:1px solid #eaeef2";
const CLIENT_STYLE: &str =
    "padding:3px 10px 3px 0;border-bottom:1px solid #eaeef2;word-break:break-word";
const TIME_STYLE: &str =
    "padding:3px 10px 3px 0;border-bottom:1px solid #eaeef2;white-space:nowrap;color:#656d76";
const NAME_STYLE: &str = "padding:3px 0;border-bottom:1px solid #eaeef2;word-break:break-word";
const ROW_LINK_STYLE: &str = "color:#0969da";
const MORE_STYLE: &str = "margin:12px 0 0 0;font-weight:600";

/// The section titles of a whole alert in a group mail.
const ALERT_HEADING: Heading = Heading {
    tag: "h4",
    style: H4_STYLE,
};

/// `[talon] <count> alerts: <topic>`, the topic cut at a word to
/// [`SUBJECT_CHARS`]; every control character becomes a space.
pub fn subject(group: &GroupMessage) -> String {
    let mut subject = format!("[talon] {}", alerts(group.count));
    if let Some(topic) = topic(group) {
        subject.push_str(": ");
        subject.push_str(&cut_at_word(&topic, SUBJECT_CHARS));
    }
    subject
}

/// What the alerts share, on one line: their name, else the group's
/// values, else the digest's schedule.
fn topic(group: &GroupMessage) -> Option<String> {
    let topic = group
        .common_name()
        .map(str::to_owned)
        .or_else(|| Some(group.label()).filter(|l| !l.is_empty()))
        .or_else(|| group.digest.as_ref().map(|d| format!("digest {d}")))?;
    Some(one_line(&topic)).filter(|t| !t.trim().is_empty())
}

/// `text` cut to `chars` characters, at its last space when one is near the
/// end, then `…`.
fn cut_at_word(text: &str, chars: usize) -> String {
    let Some((end, _)) = text.char_indices().nth(chars) else {
        return text.to_owned();
    };
    let kept = text.get(..end).unwrap_or(text);
    let kept = match kept.rfind(' ') {
        Some(space) if kept.get(space..).is_some_and(|t| t.chars().count() <= 15) => {
            kept.get(..space).unwrap_or(kept)
        }
        _ => kept,
    };
    format!("{}…", kept.trim_end())
}

/// `1 alert`, `2 alerts`.
fn alerts(n: u64) -> String {
    if n == 1 {
        "1 alert".to_owned()
    } else {
        format!("{n} alerts")
    }
}

/// `2020-10-07 20:43:08` (UTC).
fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `at <time> UTC`, or `from <time> to <time> UTC` (the date once when it
/// is the same).
fn span(first: &DateTime<Utc>, last: &DateTime<Utc>) -> String {
    if first == last {
        format!("at {} UTC", time(first))
    } else if first.date_naive() == last.date_naive() {
        format!("from {} to {} UTC", time(first), last.format("%H:%M:%S"))
    } else {
        format!("from {} to {} UTC", time(first), time(last))
    }
}

/// The summary line: `500 alerts from ... UTC (message 2 of this group).`
fn summary(group: &GroupMessage) -> String {
    let mut line = format!(
        "{} {}",
        alerts(group.count),
        span(&group.first_at, &group.last_at)
    );
    if group.sequence > 1 {
        line.push_str(&format!(" (message {} of this group)", group.sequence));
    }
    line.push('.');
    line
}

/// The group's values and the digest's schedule, as `label | value` rows.
fn facts(group: &GroupMessage) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = group
        .group
        .iter()
        .take(MAX_LISTED_COUNTS)
        .map(|g| {
            (
                one_line(&cut(&g.field, LABEL_CHARS)),
                one_line(&cut(&g.value, TOPIC_CHARS)),
            )
        })
        .collect();
    let more = group.group.len().saturating_sub(MAX_LISTED_COUNTS);
    if more > 0 {
        rows.push(("…".to_owned(), format!("{more} more values")));
    }
    if let Some(digest) = &group.digest {
        rows.push(("Digest".to_owned(), one_line(&cut(digest, TOPIC_CHARS))));
    }
    rows
}

/// A count's value as shown: cut, on one line, `empty` for `""`.
fn count_label(value: &str, empty: &str) -> String {
    if value.is_empty() {
        empty.to_owned()
    } else {
        one_line(&cut(value, LABEL_CHARS))
    }
}

/// Counts beyond [`MAX_LISTED_COUNTS`], added to `other`.
fn others(counts: &[Count], other: u64) -> u64 {
    counts
        .iter()
        .skip(MAX_LISTED_COUNTS)
        .fold(other, |sum, c| sum.saturating_add(c.count))
}

/// `high (450), medium (40)`, then `N <others_label>` when some are not
/// named.
fn counts_line(counts: &[Count], other: u64, empty: &str, others_label: &str) -> String {
    let mut parts: Vec<String> = counts
        .iter()
        .take(MAX_LISTED_COUNTS)
        .map(|c| format!("{} ({})", count_label(&c.value, empty), c.count))
        .collect();
    let other = others(counts, other);
    if other > 0 {
        parts.push(format!("{other} {others_label}"));
    }
    parts.join(", ")
}

/// The rows a mail lays out.
#[derive(Debug)]
struct Plan<'a> {
    /// The whole alerts.
    whole: Vec<&'a Alert>,
    /// The table: the listed rows but the whole alerts', as many as fit in
    /// [`TABLE_BYTES`] of HTML.
    table: Vec<&'a GroupRow>,
    /// Alerts counted but neither whole nor in the table.
    not_listed: u64,
    /// Of those, the rows past [`TABLE_BYTES`].
    left_out: u64,
}

/// What a mail shows of `group`, decided once for both bodies.
fn plan<'a>(group: &'a GroupMessage, console: Option<&str>) -> Plan<'a> {
    let whole: Vec<&Alert> = group.alerts.iter().take(FULL_ALERTS).collect();
    let ids: HashSet<&str> = whole.iter().map(|a| a.id.as_str()).collect();
    let mut table = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0u64;
    for row in group.rows.iter().filter(|r| !ids.contains(r.id.as_str())) {
        bytes += html_row(row, console).len();
        if bytes > TABLE_BYTES {
            left_out += 1;
        } else {
            table.push(row);
        }
    }
    Plan {
        whole,
        table,
        not_listed: group.not_listed.saturating_add(left_out),
        left_out,
    }
}

/// A row's client as shown; `server` for the server's own alerts.
fn row_client(row: &GroupRow) -> String {
    match row.client.as_deref().filter(|c| !c.is_empty()) {
        Some(client) => one_line(&cut(client, LABEL_CHARS)),
        None => "server".to_owned(),
    }
}

fn row_severity(row: &GroupRow) -> String {
    one_line(&cut(row.severity.as_deref().unwrap_or(""), LABEL_CHARS))
}

fn row_name(row: &GroupRow) -> String {
    one_line(&cut(&row.name, ROW_NAME_CHARS))
}

/// The row's link to its client in Velociraptor, when it is one
/// [`present::links`] shows (`http(s)://`, short, nothing that could end
/// a link). The rule is `present`'s own, asked through an alert holding
/// just that link.
fn row_link(row: &GroupRow) -> Option<&str> {
    let url = row.link.as_deref()?;
    let probe = Alert {
        links: Some(Links {
            host: Some(url.to_owned()),
            ..Links::default()
        }),
        ..Alert::sample()
    };
    (!present::links(&probe).is_empty()).then_some(url)
}

/// `400 more alerts not listed.`, and why when the table's size cut some.
fn not_listed_line(plan: &Plan) -> String {
    let mut line = match plan.not_listed {
        1 => "1 more alert not listed".to_owned(),
        n => format!("{n} more alerts not listed"),
    };
    if plan.left_out > 0 {
        line.push_str(&format!(
            " (a mail's table stops at {} KiB)",
            TABLE_BYTES / 1024
        ));
    }
    line.push('.');
    line
}

/// The last line: the channel, the group and the message's number.
fn footer(group: &GroupMessage) -> String {
    format!(
        "Sent by talon, channel {}: group {}, message {}.",
        one_line(&cut(&group.channel, LABEL_CHARS)),
        one_line(&cut(&group.group_key, LABEL_CHARS)),
        group.sequence
    )
}

/// `text` underlined with `-`.
fn text_title(out: &mut String, title: &str) {
    out.push_str(title);
    out.push('\n');
    out.push_str(&"-".repeat(title.chars().count()));
    out.push('\n');
}

/// The plain-text alternative: the same parts as the HTML body, and every
/// alert id of the message.
/// `console`: the console's address (`[console].public_url`): every alert
/// then links to its page there.
pub fn text_body(group: &GroupMessage, switches: &Sections, console: Option<&str>) -> String {
    let plan = plan(group, console);
    let mut out = String::new();
    out.push_str(&heading(group));
    out.push_str("\n\n");
    out.push_str(&summary(group));
    out.push('\n');
    for (label, value) in facts(group) {
        out.push_str(&format!("{label}: {value}\n"));
    }
    out.push_str(&format!(
        "By severity: {}\n",
        counts_line(&group.by_severity, 0, "no severity", "other")
    ));
    out.push_str(&format!(
        "By client: {}\n\n",
        counts_line(
            &group.by_client,
            group.other_clients,
            "server",
            "on other clients"
        )
    ));

    if !plan.whole.is_empty() {
        text_title(&mut out, &first_title(plan.whole.len()));
        out.push('\n');
        for (i, alert) in plan.whole.iter().enumerate() {
            out.push_str(&format!(
                "[{}] {}\n\n",
                i + 1,
                one_line(&cut(&alert.name, TOPIC_CHARS))
            ));
            if let Some(url) = console_link(console, &alert.id) {
                out.push_str(&format!("In the console: {url}\n\n"));
            }
            render::text_sections(alert, switches, WHOLE_ALERT_LIMITS, &mut out);
        }
    }

    if !plan.table.is_empty() {
        text_title(&mut out, &format!("Further alerts ({})", plan.table.len()));
        text_table(&plan.table, console, &mut out);
        out.push('\n');
    }
    if plan.not_listed > 0 {
        out.push_str(&not_listed_line(&plan));
        out.push_str("\n\n");
    }

    text_title(&mut out, &format!("Alert ids ({})", group.alert_ids.len()));
    text_ids(&group.alert_ids, &mut out);
    out.push_str("\n-- \n");
    out.push_str(&footer(group));
    out.push('\n');
    out
}

/// `<count> alerts: <topic>`, the heading of both bodies.
fn heading(group: &GroupMessage) -> String {
    match topic(group) {
        Some(topic) => format!("{}: {}", alerts(group.count), cut(&topic, TOPIC_CHARS)),
        None => alerts(group.count),
    }
}

fn first_title(n: usize) -> String {
    if n == 1 {
        "The first alert".to_owned()
    } else {
        format!("The first {n} alerts")
    }
}

/// The table in columns: time, severity, client, name; a row's link on the
/// line below it.
fn text_table(rows: &[&GroupRow], console: Option<&str>, out: &mut String) {
    let severities: Vec<String> = rows.iter().map(|r| row_severity(r)).collect();
    let clients: Vec<String> = rows.iter().map(|r| row_client(r)).collect();
    let width = |label: &str, column: &[String]| {
        column
            .iter()
            .map(|c| c.chars().count())
            .chain([label.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let severity_width = width("Severity", &severities);
    let client_width = width("Client", &clients);
    out.push_str(&format!(
        "{:<19}  {:<severity_width$}  {:<client_width$}  Name\n",
        "Time (UTC)", "Severity", "Client"
    ));
    for ((row, severity), client) in rows.iter().zip(&severities).zip(&clients) {
        out.push_str(&format!(
            "{}  {severity:<severity_width$}  {client:<client_width$}  {}\n",
            time(&row.timestamp),
            row_name(row)
        ));
        if let Some(link) = row_link(row) {
            out.push_str(&format!("    {link}\n"));
        }
        if let Some(link) = console_link(console, &row.id) {
            out.push_str(&format!("    {link}\n"));
        }
    }
}

/// The ids, space-separated, in lines of at most [`IDS_COLUMNS`] (an id
/// longer than that on a line of its own), stopping before [`IDS_BYTES`].
fn text_ids(ids: &[String], out: &mut String) {
    let mut bytes = 0;
    let mut line = String::new();
    for (i, id) in ids.iter().enumerate() {
        let id = one_line(id).replace(' ', "_");
        bytes += id.len() + 1;
        if bytes > IDS_BYTES {
            if !line.is_empty() {
                out.push_str(&line);
                out.push('\n');
                line.clear();
            }
            out.push_str(&format!(
                "({} more ids not listed: the list stops at {} KiB.)\n",
                ids.len() - i,
                IDS_BYTES / 1024
            ));
            break;
        }
        if !line.is_empty() && line.len() + 1 + id.len() > IDS_COLUMNS {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&id);
    }
    if !line.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
}

/// The HTML body: inline CSS only, no external resources but the links to
/// Velociraptor; every value escaped.
/// `console` as for [`text_body`].
pub fn html_body(group: &GroupMessage, switches: &Sections, console: Option<&str>) -> String {
    let plan = plan(group, console);
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    out.push_str(&format!(
        "<title>{}</title></head>\n",
        escape(&subject(group))
    ));
    out.push_str(&format!(
        "<body style=\"{BODY_STYLE}\">\n<div style=\"{CARD_STYLE}\">\n"
    ));
    out.push_str(&format!(
        "<h1 style=\"{H1_STYLE}\">{}</h1>\n",
        escape(&heading(group))
    ));
    out.push_str(&format!(
        "<p style=\"{SUMMARY_STYLE}\">{}</p>\n",
        escape(&summary(group))
    ));
    let facts = facts(group);
    if !facts.is_empty() {
        out.push_str(&format!("<table style=\"{TABLE_STYLE}\">\n"));
        for (label, value) in &facts {
            out.push_str(&format!(
                "<tr><td style=\"{KEY_STYLE}\">{}</td><td style=\"{VALUE_STYLE}\">{}</td></tr>\n",
                escape(label),
                escape(value)
            ));
        }
        out.push_str("</table>\n");
    }

    out.push_str(&format!("<h2 style=\"{H2_STYLE}\">Counts</h2>\n"));
    html_severities(group, &mut out);
    out.push_str(&format!(
        "<p style=\"{COUNTS_STYLE}\"><b>By client:</b> {}</p>\n",
        escape(&counts_line(
            &group.by_client,
            group.other_clients,
            "server",
            "on other clients"
        ))
    ));

    if !plan.whole.is_empty() {
        out.push_str(&format!(
            "<h2 style=\"{H2_STYLE}\">{}</h2>\n",
            first_title(plan.whole.len())
        ));
        for alert in &plan.whole {
            html_alert(alert, switches, console, &mut out);
        }
    }

    if !plan.table.is_empty() {
        out.push_str(&format!(
            "<h2 style=\"{H2_STYLE}\">Further alerts ({})</h2>\n",
            plan.table.len()
        ));
        out.push_str(&format!(
            "<table style=\"{ROWS_STYLE}\">\n<tr><th style=\"{TH_STYLE}\">Time (UTC)</th>\
<th style=\"{TH_STYLE}\">Severity</th><th style=\"{TH_STYLE}\">Client</th>\
<th style=\"{TH_STYLE}\">Name</th></tr>\n"
        ));
        for row in &plan.table {
            out.push_str(&html_row(row, console));
        }
        out.push_str("</table>\n");
    }
    if plan.not_listed > 0 {
        out.push_str(&format!(
            "<p style=\"{MORE_STYLE}\">{}</p>\n",
            not_listed_line(&plan)
        ));
    }

    out.push_str(&format!(
        "<p style=\"{FOOTER_STYLE}\">{} The ids of the {} are in the plain-text part of this mail.</p>\n",
        escape(&footer(group)),
        alerts(group.alert_ids.len() as u64)
    ));
    out.push_str("</div>\n</body></html>\n");
    out
}

/// The counts by severity as coloured pills.
fn html_severities(group: &GroupMessage, out: &mut String) {
    out.push_str(&format!("<p style=\"{COUNTS_STYLE}\"><b>By severity:</b> "));
    for c in group.by_severity.iter().take(MAX_LISTED_COUNTS) {
        out.push_str(&format!(
            "<span style=\"{PILL_STYLE};background:{}\">{} {}</span>",
            severity_colour(&c.value),
            escape(&count_label(&c.value, "no severity")),
            c.count
        ));
    }
    let other = others(&group.by_severity, 0);
    if other > 0 {
        out.push_str(&format!("{other} other"));
    }
    out.push_str("</p>\n");
}

/// A whole alert in a box edged in its severity's colour.
fn html_alert(alert: &Alert, switches: &Sections, console: Option<&str>, out: &mut String) {
    let severity = alert.severity.as_deref().filter(|s| !s.is_empty());
    out.push_str(&format!(
        "<div style=\"{ALERT_STYLE};border-left-color:{}\">\n<h3 style=\"{H3_STYLE}\">",
        severity_colour(severity.unwrap_or(""))
    ));
    if let Some(severity) = severity {
        out.push_str(&badge(&one_line(&cut(severity, LABEL_CHARS))));
    }
    let name = escape(&one_line(&cut(&alert.name, TOPIC_CHARS)));
    match console_link(console, &alert.id) {
        Some(url) => out.push_str(&format!(
            "<a href=\"{}\" style=\"{ROW_LINK_STYLE}\">{name}</a>",
            escape(&url)
        )),
        None => out.push_str(&name),
    }
    out.push_str("</h3>\n");
    render::html_sections(alert, switches, WHOLE_ALERT_LIMITS, ALERT_HEADING, out);
    out.push_str("</div>\n");
}

/// The alert's page in the console at `console`, when one is set and the
/// id is made of URL-safe characters (as every id between stages is).
fn console_link(console: Option<&str>, id: &str) -> Option<String> {
    let base = console?;
    let safe = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    safe.then(|| format!("{base}/?alert={id}"))
}

/// One line of the table; the client links to its page in Velociraptor,
/// the name to the alert's page in the console (with `console`).
fn html_row(row: &GroupRow, console: Option<&str>) -> String {
    let severity = row_severity(row);
    let client = escape(&row_client(row));
    let client = match row_link(row) {
        Some(url) => format!(
            "<a href=\"{}\" style=\"{ROW_LINK_STYLE}\">{client}</a>",
            escape(url)
        ),
        None => client,
    };
    format!(
        "<tr valign=\"top\"><td style=\"{TIME_STYLE}\">{}</td>\
<td style=\"{TD_STYLE};color:{};font-weight:600\">{}</td>\
<td style=\"{CLIENT_STYLE}\">{client}</td><td style=\"{NAME_STYLE}\">{}</td></tr>\n",
        time(&row.timestamp),
        severity_colour(&severity),
        escape(&severity),
        match console_link(console, &row.id) {
            Some(url) => format!(
                "<a href=\"{}\" style=\"{ROW_LINK_STYLE}\">{}</a>",
                escape(&url),
                escape(&row_name(row))
            ),
            None => escape(&row_name(row)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;
    use std::path::PathBuf;
    use talon_proto::group::GroupValue;

    const ALL: Sections = Sections {
        client: true,
        flow: true,
        artifact: true,
    };

    /// The text and HTML bodies of [`fixtures::group`] and
    /// [`fixtures::oversized_group`], compared with
    /// `tests/golden/email-group[-oversized].{txt,html}`.
    /// `TALON_UPDATE_GOLDEN=1` rewrites the files instead.
    #[test]
    fn bodies_match_the_golden_files() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let update = std::env::var_os("TALON_UPDATE_GOLDEN").is_some_and(|v| v == "1");
        let mut failed = Vec::new();
        for (suffix, group) in [
            ("", fixtures::group()),
            ("-oversized", fixtures::oversized_group()),
        ] {
            for (ext, body) in [
                ("txt", text_body(&group, &ALL, None)),
                ("html", html_body(&group, &ALL, None)),
            ] {
                let path = dir.join(format!("email-group{suffix}.{ext}"));
                let body = format!("Subject: {}\n\n{body}", subject(&group));
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, &body).unwrap();
                    continue;
                }
                let expected = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if expected != body {
                    failed.push(path.display().to_string());
                }
            }
        }
        assert!(
            failed.is_empty(),
            "rendering differs from {failed:?} (TALON_UPDATE_GOLDEN=1 rewrites them; review the diff)"
        );
    }

    fn group_with(values: &[(&str, &str)], digest: Option<&str>) -> GroupMessage {
        let mut g = fixtures::group();
        g.group = values
            .iter()
            .map(|(field, value)| GroupValue {
                field: (*field).into(),
                value: (*value).into(),
            })
            .collect();
        g.digest = digest.map(str::to_owned);
        g
    }

    #[test]
    fn subjects() {
        fn check(group: GroupMessage, expected: &str) {
            assert_eq!(subject(&group), expected, "{group:?}");
        }
        check(
            fixtures::group(),
            "[talon] 500 alerts: Sigma: Mimikatz Use <!channel> & @everyone",
        );
        check(
            group_with(&[("client_id", "C.1"), ("severity", "high")], None),
            "[talon] 500 alerts: client_id=C.1, severity=high",
        );
        check(
            group_with(&[], Some("daily 08:00 Europe/Berlin")),
            "[talon] 500 alerts: digest daily 08:00 Europe/Berlin",
        );
        // Every listed alert with the same name, none left out: that name.
        let mut g = group_with(&[], None);
        g.not_listed = 0;
        check(
            g.clone(),
            "[talon] 500 alerts: Sigma: Mimikatz Use <!channel> & @everyone",
        );
        g.rows[1].name = "Other".into();
        check(g.clone(), "[talon] 500 alerts");
        g.count = 1;
        check(g, "[talon] 1 alert");
        // Cut at a word near the limit, else mid-word; `…` says so.
        check(
            group_with(&[("name", &"word ".repeat(30))], None),
            &format!("[talon] 500 alerts: {}…", ["word"; 12].join(" ")),
        );
        check(
            group_with(&[("name", &"x".repeat(100))], None),
            &format!("[talon] 500 alerts: {}…", "x".repeat(SUBJECT_CHARS)),
        );
        check(
            fixtures::oversized_group(),
            &format!(
                "[talon] 10000 alerts: Group {}…",
                "G<&>".repeat(14).get(..(SUBJECT_CHARS - 6)).unwrap()
            ),
        );
    }

    #[test]
    fn no_control_character_reaches_the_subject() {
        let hostile = "x\r\nBcc: evil@example.org\n\u{0}\u{7f}\u{85}\u{2028}\u{2029}\t";
        for group in [
            group_with(&[("name", hostile)], None),
            group_with(&[("client_id", hostile), (hostile, "v")], None),
            group_with(&[], Some(hostile)),
            {
                let mut g = group_with(&[], None);
                g.not_listed = 0;
                for r in &mut g.rows {
                    r.name = hostile.into();
                }
                g
            },
        ] {
            let s = subject(&group);
            assert!(!s.chars().any(char::is_control), "{s:?}");
            assert!(!s.contains(['\u{2028}', '\u{2029}']), "{s:?}");
            assert!(s.contains("x  Bcc: evil@example.org"), "{s:?}");
        }
    }

    #[test]
    fn every_value_in_the_html_is_escaped() {
        let html = html_body(&fixtures::group(), &ALL, None);
        assert!(!html.contains("<!channel>"), "{html}");
        assert!(!html.contains("& @everyone"), "{html}");
        let escaped = "Sigma: Mimikatz Use &lt;!channel&gt; &amp; @everyone";
        // Title, heading, group value, three whole alerts (heading and
        // summary) and 97 table rows.
        assert!(
            html.matches(escaped).count() >= 1 + 1 + 1 + 6 + 97,
            "{html}"
        );
        assert!(html.contains("cat &lt;secrets&gt; &amp;&amp; echo @everyone"));

        let script = "<script>alert(1)</script>";
        let mut g = group_with(&[(script, script)], Some(script));
        g.channel = script.into();
        g.group_key = script.into();
        g.by_severity[0].value = script.into();
        g.by_client[0].value = script.into();
        for r in &mut g.rows {
            r.name = script.into();
            r.client = Some(script.into());
            r.severity = Some(script.into());
        }
        g.alerts[0].name = script.into();
        let html = html_body(&g, &ALL, None);
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn the_table_links_clients_with_safe_urls_only() {
        let mut g = fixtures::group();
        let good = "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.0003";
        assert_eq!(g.rows[3].link.as_deref(), Some(good));
        g.rows[4].link = Some("javascript:alert(1)".into());
        g.rows[5].link = Some("https://x.example.org/\"><script>".into());
        g.rows[6].link = None;
        let html = html_body(&g, &ALL, None);
        let text = text_body(&g, &ALL, None);
        assert!(
            html.contains(&format!(
                "<a href=\"{}\" style=\"{ROW_LINK_STYLE}\">web-003</a>",
                escape(good)
            )),
            "{html}"
        );
        assert!(
            text.contains(&format!(
                "web-003  Sigma: Mimikatz Use <!channel> & @everyone\n    {good}\n"
            )),
            "{text}"
        );
        // Three whole alerts with a host and a flow link each, 94 of 97 rows.
        assert_eq!(html.matches("<a ").count(), 3 * 2 + 94, "{html}");
        for bad in ["javascript:", "<script>", "x.example.org"] {
            assert!(!html.contains(bad) && !text.contains(bad), "{bad}");
        }
    }

    #[test]
    fn the_usual_group_is_laid_out_whole() {
        let g = fixtures::group();
        let text = text_body(&g, &ALL, None);
        for line in [
            "500 alerts from 2020-10-07 20:43:08 to 20:51:27 UTC (message 2 of this group).\n",
            "name: Sigma: Mimikatz Use <!channel> & @everyone\n",
            "By severity: high (450), medium (40), critical (10)\n",
            "By client: web-000 (1), ",
            ", web-019 (1), 480 on other clients\n",
            "The first 3 alerts\n------------------\n",
            "[1] Sigma: Mimikatz Use <!channel> & @everyone\n",
            "Further alerts (97)\n",
            "400 more alerts not listed.\n",
            "Alert ids (500)\n",
            "Sent by talon, channel chat: group 6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f, message 2.\n",
        ] {
            assert!(text.contains(line), "{line:?} missing: {text}");
        }
        for id in &g.alert_ids {
            assert_eq!(
                text.matches(id.as_str()).count(),
                1 + usize::from(g.alerts.iter().any(|a| &a.id == id)),
                "{id}"
            );
        }
        let html = html_body(&g, &ALL, None);
        assert!(html.contains("400 more alerts not listed."));
        assert!(html.contains("The ids of the 500 alerts are in the plain-text part"));
        assert!(
            html.len() < 100_000,
            "{} bytes: Gmail clips the mail",
            html.len()
        );
    }

    #[test]
    fn the_oversized_group_is_bounded() {
        let g = fixtures::oversized_group();
        let text = text_body(&g, &ALL, None);
        let html = html_body(&g, &ALL, None);
        let fixed = 256 * 1024;
        assert!(
            html.len() < TABLE_BYTES + fixed,
            "{} bytes of HTML",
            html.len()
        );
        assert!(
            text.len() < TABLE_BYTES + IDS_BYTES + fixed,
            "{} bytes of text",
            text.len()
        );
        // The table stopped at its budget and says how many it left out.
        let plan = plan(&g, None);
        let shown = plan.table.len();
        assert!(shown > 100 && shown < 9_997, "{shown} rows");
        let line = format!(
            "{} more alerts not listed (a mail's table stops at 512 KiB).",
            9_997 - shown
        );
        assert!(html.contains(&line) && text.contains(&line), "{line}");
        // Every id is still there.
        for id in &g.alert_ids {
            assert!(text.contains(id.as_str()), "{id}");
        }
        // Whole alerts are cut to their limits.
        assert!(text.contains("(475 more fields not shown)"), "{text}");
    }

    #[test]
    fn ids_are_wrapped_and_bounded() {
        fn check(ids: &[&str], expected: &str) {
            let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
            let mut out = String::new();
            text_ids(&ids, &mut out);
            assert_eq!(out, expected);
        }
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        check(&[], "");
        check(&[&a], &format!("{a}\n"));
        check(&[&a, &b, &a], &format!("{a} {b}\n{a}\n"));
        check(&["x y\nz"], "x_y_z\n");
        let many: Vec<String> = (0..20_000).map(|i| format!("{i:032}")).collect();
        let mut out = String::new();
        text_ids(&many, &mut out);
        assert!(out.len() <= IDS_BYTES + 200, "{}", out.len());
        assert!(
            out.ends_with(" more ids not listed: the list stops at 512 KiB.)\n"),
            "{}",
            &out[out.len() - 200..]
        );
    }

    #[test]
    fn spans() {
        fn check(first: &str, last: &str, expected: &str) {
            let first: DateTime<Utc> = first.parse().unwrap();
            let last: DateTime<Utc> = last.parse().unwrap();
            assert_eq!(span(&first, &last), expected);
        }
        check(
            "2020-10-07T20:43:08Z",
            "2020-10-07T20:43:08Z",
            "at 2020-10-07 20:43:08 UTC",
        );
        check(
            "2020-10-07T20:43:08Z",
            "2020-10-07T21:00:00Z",
            "from 2020-10-07 20:43:08 to 21:00:00 UTC",
        );
        check(
            "2020-10-07T20:43:08Z",
            "2020-10-08T01:00:00Z",
            "from 2020-10-07 20:43:08 to 2020-10-08 01:00:00 UTC",
        );
    }

    #[test]
    fn with_the_console_s_address_every_alert_links_to_its_page() {
        let g = fixtures::group();
        let console = Some("https://talon.example.org");
        let html = html_body(&g, &ALL, console);
        let text = text_body(&g, &ALL, console);
        for row in g.rows.iter().take(10) {
            let url = format!("https://talon.example.org/?alert={}", row.id);
            assert!(
                html.contains(&format!("href=\"{url}\"")),
                "{url} in the HTML"
            );
            assert!(text.contains(&url), "{url} in the text");
        }
        assert!(!html_body(&g, &ALL, None).contains("talon.example.org"));
        // An id that is not URL-safe gets no link.
        assert_eq!(console_link(console, "a b"), None);
        assert_eq!(console_link(console, "\"><x"), None);
        assert_eq!(console_link(console, ""), None);
        assert_eq!(
            console_link(console, "abc-_1").as_deref(),
            Some("https://talon.example.org/?alert=abc-_1")
        );
    }
}
