//! What an alert e-mail says: the subject as Velociraptor's
//! `Server.Monitor.Alerts` builds it, a plain-text body and an HTML body with
//! the same sections. Pure functions over the enriched [`Alert`]; no I/O.
//! What the chat kinds show too (the title, the context rows, ...) is in
//! [`present`](crate::channels::present).
//!
//! Two invariants: no control character (CR, LF, ...) ever reaches the
//! subject, and every value in the HTML body is escaped.
//!
//! A group's mail ([`super::group`]) shows its first alerts with the same
//! sections, through [`text_sections`] and [`html_sections`] under
//! [`Limits`].

use std::borrow::Cow;

use chrono::SecondsFormat;
use talon_proto::Alert;

use crate::channels::present::{
    self, client_id, context_rows, one_line, severity_rgb, suppressed_line, title, Sections,
};

/// How many characters of the alert name the subject keeps.
pub const SUBJECT_NAME_CHARS: usize = 30;

/// `Server alert` or `Alert from client <hostname>`, then ` (<severity>)`,
/// then `: ` and the name cut to 30 characters; every control character in
/// any part becomes a space, so nothing in an alert can end the header.
pub fn subject(alert: &Alert) -> String {
    title(alert, SUBJECT_NAME_CHARS)
}

/// `text` safe inside HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How much of each section a body shows: an alert's own mail shows it
/// all ([`Limits::WHOLE`]); a group's mail cuts its whole alerts short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rows of a section, at most; the rest are counted in a last line.
    pub rows: usize,
    /// Characters of a row's label, at most; a longer one is cut and ends
    /// in `…`.
    pub label_chars: usize,
    /// Characters of a row's value, at most, likewise.
    pub value_chars: usize,
}

impl Limits {
    /// Everything, uncut.
    pub const WHOLE: Limits = Limits {
        rows: usize::MAX,
        label_chars: usize::MAX,
        value_chars: usize::MAX,
    };
}

/// `text` cut to `chars` characters, ending in `…` when it was longer.
pub fn cut(text: &str, chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(chars) {
        None => Cow::Borrowed(text),
        Some((end, _)) => {
            let kept = text.get(..end).unwrap_or(text);
            Cow::Owned(format!("{}…", kept.trim_end()))
        }
    }
}

/// One titled block of `label | value` rows.
struct Section {
    title: &'static str,
    rows: Vec<(String, String)>,
}

fn push(rows: &mut Vec<(String, String)>, label: &str, value: Option<&str>) {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        rows.push((label.to_owned(), value.to_owned()));
    }
}

/// The sections of the body, in order; empty optional sections are left out.
fn sections(alert: &Alert, switches: &Sections) -> Vec<Section> {
    let mut out = Vec::new();

    let mut summary = Vec::new();
    push(&mut summary, "Name", Some(&alert.name));
    let time = alert.timestamp.to_rfc3339_opts(SecondsFormat::Secs, true);
    push(&mut summary, "Time", Some(&time));
    push(&mut summary, "Severity", alert.severity.as_deref());
    push(&mut summary, "Alert id", Some(&alert.id));
    push(&mut summary, "Source", Some(&alert.source));
    push(&mut summary, "Organization", alert.org_id.as_deref());
    out.push(Section {
        title: "Alert summary",
        rows: summary,
    });

    out.push(Section {
        title: "Alert details",
        rows: context_rows(alert),
    });

    if switches.client {
        let info = alert.client.clone().unwrap_or_default();
        let mut rows = Vec::new();
        push(&mut rows, "Hostname", info.hostname.as_deref());
        push(&mut rows, "FQDN", info.fqdn.as_deref());
        push(&mut rows, "OS", info.os.as_deref());
        let labels = info.labels.join(", ");
        push(&mut rows, "Labels", Some(&labels));
        push(&mut rows, "Client id", client_id(alert));
        if !rows.is_empty() {
            out.push(Section {
                title: "Client details",
                rows,
            });
        }
    }

    if switches.flow {
        let mut rows = Vec::new();
        push(&mut rows, "Flow id", alert.effective_flow_id());
        if !rows.is_empty() {
            out.push(Section {
                title: "Flow details",
                rows,
            });
        }
    }

    if switches.artifact {
        let mut rows = Vec::new();
        push(&mut rows, "Artifact", alert.effective_artifact());
        push(&mut rows, "Type", alert.effective_artifact_type());
        if !rows.is_empty() {
            out.push(Section {
                title: "Artifact details",
                rows,
            });
        }
    }
    out
}

/// The mail's last line, naming the channel (the chat kinds have their own,
/// [`present::footer`](crate::channels::present::footer)).
fn footer(alert: &Alert) -> String {
    match alert.channel.as_deref() {
        Some(channel) => format!("Sent by talon, channel {channel}."),
        None => "Sent by talon.".to_owned(),
    }
}

/// The plain-text alternative: the same sections as the HTML body.
pub fn text_body(alert: &Alert, switches: &Sections) -> String {
    let mut out = String::new();
    out.push_str(&one_line(&alert.name));
    out.push_str("\n\n");
    text_sections(alert, switches, Limits::WHOLE, &mut out);
    out.push_str("-- \n");
    out.push_str(&footer(alert));
    out.push('\n');
    out
}

/// What the plain text says under an alert's name: the suppressed line,
/// the links into Velociraptor and the sections, each followed by an empty
/// line.
pub fn text_sections(alert: &Alert, switches: &Sections, limits: Limits, out: &mut String) {
    if let Some(line) = suppressed_line(alert) {
        out.push_str(&line);
        out.push_str(".\n\n");
    }
    let links = present::links(alert);
    if !links.is_empty() {
        for (label, url) in &links {
            out.push_str(&format!("{label}: {url}\n"));
        }
        out.push('\n');
    }
    for section in sections(alert, switches) {
        out.push_str(section.title);
        out.push('\n');
        if section.rows.is_empty() {
            out.push_str("  (none)\n");
        }
        for (label, value) in section.rows.iter().take(limits.rows) {
            // Continuation lines of a multi-line value stay indented.
            let value = cut(value, limits.value_chars).replace('\n', "\n    ");
            out.push_str(&format!("  {}: {value}\n", cut(label, limits.label_chars)));
        }
        if let Some(more) = more_rows(section.rows.len(), limits) {
            out.push_str(&format!("  ({more})\n"));
        }
        out.push('\n');
    }
}

/// "N more fields not shown", when `limits` leaves rows out.
fn more_rows(rows: usize, limits: Limits) -> Option<String> {
    match rows.saturating_sub(limits.rows) {
        0 => None,
        1 => Some("1 more field not shown".to_owned()),
        n => Some(format!("{n} more fields not shown")),
    }
}

pub(super) const BODY_STYLE: &str = "margin:0;padding:16px;background:#f4f5f7;\
font-family:'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328";
pub(super) const CARD_STYLE: &str = "max-width:760px;margin:0 auto;background:#ffffff;\
border:1px solid #d0d7de;border-radius:6px;padding:16px 20px";
pub(super) const H1_STYLE: &str = "font-size:18px;margin:0 0 12px 0;word-break:break-word";
pub(super) const H2_STYLE: &str = "font-size:15px;margin:20px 0 6px 0;padding-bottom:4px;\
border-bottom:1px solid #d0d7de";
pub(super) const NOTE_STYLE: &str = "margin:0 0 12px 0;padding:8px 12px;background:#fff8c5;\
border:1px solid #d4a72c;border-radius:4px";
pub(super) const TABLE_STYLE: &str = "border-collapse:collapse;width:100%";
pub(super) const KEY_STYLE: &str = "padding:4px 12px 4px 0;vertical-align:top;color:#656d76;\
white-space:nowrap;font-weight:600";
pub(super) const VALUE_STYLE: &str = "padding:4px 0;vertical-align:top;white-space:pre-wrap;\
word-break:break-word;font-family:Consolas,'Courier New',monospace;font-size:13px";
pub(super) const EMPTY_STYLE: &str = "margin:0;color:#656d76;font-style:italic";
pub(super) const LINKS_STYLE: &str = "margin:0 0 12px 0";
pub(super) const LINK_STYLE: &str = "color:#0969da;font-weight:600";
pub(super) const FOOTER_STYLE: &str = "margin:20px 0 0 0;color:#656d76;font-size:12px";

/// The colour of a severity badge, as `#rrggbb`.
pub fn severity_colour(severity: &str) -> String {
    format!("#{:06x}", severity_rgb(Some(severity)))
}

/// A severity's badge: white text on its colour.
pub fn badge(severity: &str) -> String {
    format!(
        "<span style=\"display:inline-block;padding:1px 8px;margin-right:8px;\
border-radius:10px;font-size:12px;color:#ffffff;background:{}\">{}</span>",
        severity_colour(severity),
        escape(severity)
    )
}

/// The HTML body: inline CSS only, no external resources; every value escaped.
pub fn html_body(alert: &Alert, switches: &Sections) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">");
    out.push_str(&format!(
        "<title>{}</title></head>\n",
        escape(&subject(alert))
    ));
    out.push_str(&format!(
        "<body style=\"{BODY_STYLE}\">\n<div style=\"{CARD_STYLE}\">\n"
    ));
    out.push_str(&format!("<h1 style=\"{H1_STYLE}\">"));
    if let Some(severity) = alert.severity.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&badge(severity));
    }
    out.push_str(&escape(&one_line(&alert.name)));
    out.push_str("</h1>\n");
    html_sections(alert, switches, Limits::WHOLE, SECTION_HEADING, &mut out);
    out.push_str(&format!(
        "<p style=\"{FOOTER_STYLE}\">{}</p>\n",
        escape(&footer(alert))
    ));
    out.push_str("</div>\n</body></html>\n");
    out
}

/// The element and the style of the sections' titles in HTML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heading {
    pub tag: &'static str,
    pub style: &'static str,
}

/// An alert mail's section titles.
pub const SECTION_HEADING: Heading = Heading {
    tag: "h2",
    style: H2_STYLE,
};

/// What the HTML shows under an alert's heading: the suppressed note, the
/// links into Velociraptor and the sections, titled with `heading`.
pub fn html_sections(
    alert: &Alert,
    switches: &Sections,
    limits: Limits,
    heading: Heading,
    out: &mut String,
) {
    if let Some(line) = suppressed_line(alert) {
        out.push_str(&format!(
            "<p style=\"{NOTE_STYLE}\">{}.</p>\n",
            escape(&line)
        ));
    }
    let links = present::links(alert);
    if !links.is_empty() {
        out.push_str(&format!("<p style=\"{LINKS_STYLE}\">"));
        for (i, (label, url)) in links.iter().enumerate() {
            if i > 0 {
                out.push_str(" &middot; ");
            }
            out.push_str(&format!(
                "<a href=\"{}\" style=\"{LINK_STYLE}\">{}</a>",
                escape(url),
                escape(label)
            ));
        }
        out.push_str("</p>\n");
    }
    for section in sections(alert, switches) {
        out.push_str(&format!(
            "<{tag} style=\"{style}\">{}</{tag}>\n",
            escape(section.title),
            tag = heading.tag,
            style = heading.style,
        ));
        if section.rows.is_empty() {
            out.push_str(&format!("<p style=\"{EMPTY_STYLE}\">(none)</p>\n"));
            continue;
        }
        out.push_str(&format!("<table style=\"{TABLE_STYLE}\">\n"));
        for (label, value) in section.rows.iter().take(limits.rows) {
            out.push_str(&format!(
                "<tr><td style=\"{KEY_STYLE}\">{}</td><td style=\"{VALUE_STYLE}\">{}</td></tr>\n",
                escape(&cut(label, limits.label_chars)),
                escape(&cut(value, limits.value_chars))
            ));
        }
        out.push_str("</table>\n");
        if let Some(more) = more_rows(section.rows.len(), limits) {
            out.push_str(&format!("<p style=\"{EMPTY_STYLE}\">{more}.</p>\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use talon_proto::{ClientInfo, ContextEntry, DedupInfo};

    fn base() -> Alert {
        Alert {
            id: "0123abcd".into(),
            received_at: "2020-10-07T20:43:09Z".parse().unwrap(),
            name: "TestAlert".into(),
            timestamp: "2020-10-07T20:43:08Z".parse().unwrap(),
            client_id: Some("server".into()),
            artifact: Some("EventTest.Alert".into()),
            artifact_type: Some("SERVER_MONITORING".into()),
            channel: Some("email-soc".into()),
            ..Alert::sample()
        }
    }

    fn from_client(hostname: Option<&str>) -> Alert {
        let mut a = base();
        a.client_id = Some("C.1234".into());
        a.flow_id = Some("F.ABCD".into());
        a.artifact_type = Some("CLIENT_EVENT".into());
        a.client = hostname.map(|h| ClientInfo {
            client_id: Some("C.1234".into()),
            hostname: Some(h.into()),
            fqdn: Some(format!("{h}.corp.example.org")),
            os: Some("linux".into()),
            labels: vec!["prod".into(), "web".into()],
        });
        a
    }

    const ALL: Sections = Sections {
        client: true,
        flow: true,
        artifact: true,
    };
    const NONE: Sections = Sections {
        client: false,
        flow: false,
        artifact: false,
    };

    #[test]
    fn subjects() {
        fn check(alert: Alert, expected: &str) {
            assert_eq!(subject(&alert), expected, "{alert:?}");
        }
        let with = |mut a: Alert, f: &dyn Fn(&mut Alert)| {
            f(&mut a);
            a
        };
        check(base(), "Server alert: TestAlert");
        check(
            with(base(), &|a| a.severity = Some("high".into())),
            "Server alert (high): TestAlert",
        );
        check(
            with(base(), &|a| a.severity = Some(String::new())),
            "Server alert: TestAlert",
        );
        check(
            with(base(), &|a| a.client_id = None),
            "Server alert: TestAlert",
        );
        check(
            from_client(Some("web-01")),
            "Alert from client web-01: TestAlert",
        );
        check(
            with(from_client(Some("web-01")), &|a| {
                a.severity = Some("critical".into())
            }),
            "Alert from client web-01 (critical): TestAlert",
        );
        // Not in the inventory: the client id stands in for the hostname.
        check(from_client(None), "Alert from client C.1234: TestAlert");
        // An empty hostname is no hostname.
        check(
            with(from_client(Some("")), &|a| a.severity = Some("low".into())),
            "Alert from client C.1234 (low): TestAlert",
        );
        // event_data.ClientId overrides the row's client id.
        check(
            with(base(), &|a| {
                a.event_data
                    .insert("ClientId".into(), Value::String("C.99".into()));
            }),
            "Alert from client C.99: TestAlert",
        );
        // The name is cut to 30 characters (characters, not bytes).
        check(
            with(base(), &|a| {
                a.name = "A very long alert name that goes on and on".into()
            }),
            "Server alert: A very long alert name that go",
        );
        check(
            with(base(), &|a| a.name = "é".repeat(40)),
            &format!("Server alert: {}", "é".repeat(30)),
        );
        // CR, LF and other control characters become spaces, in every part.
        check(
            with(base(), &|a| a.name = "x\r\nBcc: evil@example.org".into()),
            "Server alert: x  Bcc: evil@example.org",
        );
        check(
            with(from_client(Some("host\r\nBcc: evil@x")), &|a| {
                a.severity = Some("hi\ngh\t".into())
            }),
            "Alert from client host  Bcc: evil@x (hi gh ): TestAlert",
        );
        check(
            with(from_client(None), &|a| {
                a.client_id = Some("C.1\u{0}\u{7f}\u{2028}".into())
            }),
            "Alert from client C.1   : TestAlert",
        );
    }

    #[test]
    fn escaping() {
        fn check(input: &str, expected: &str) {
            assert_eq!(escape(input), expected);
        }
        check("plain", "plain");
        check(
            "<script>alert(1)</script>",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        );
        check(r#"a & "b" 'c'"#, "a &amp; &quot;b&quot; &#39;c&#39;");
        check("&lt;", "&amp;lt;");
    }

    #[test]
    fn every_value_in_the_html_is_escaped() {
        let script = "<script>alert(1)</script>";
        let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
        let mut a = from_client(Some(script));
        a.name = format!("Name {script}");
        a.severity = Some(script.into());
        a.context = Some(vec![
            ContextEntry {
                key: script.into(),
                value: "key".into(),
            },
            ContextEntry {
                key: "value".into(),
                value: script.into(),
            },
        ]);
        a.flow_id = Some(script.into());
        a.artifact = Some(script.into());
        a.channel = Some(script.into());
        let html = html_body(&a, &ALL);
        assert!(!html.contains("<script"), "{html}");
        // Name (title and heading), severity (title, badge, summary),
        // context key and value, hostname, fqdn, flow, artifact, channel.
        assert!(html.matches(escaped).count() >= 9, "{html}");
        assert!(html.contains(&format!("Name {escaped}")));
    }

    #[test]
    fn html_has_no_external_resources() {
        let html = html_body(&from_client(Some("web-01")), &ALL);
        for needle in [
            "<link", "<img", "<script", "src=", "href=", "url(", "@import",
        ] {
            assert!(!html.contains(needle), "{needle} in {html}");
        }
        assert!(html.contains("style=\""), "inline CSS");
    }

    #[test]
    fn velociraptor_links_are_in_both_bodies_and_nothing_unsafe_is_linked() {
        let mut a = from_client(Some("web-01"));
        let host = "https://vr.example.org/app/index.html?org_id=root#/host/C.1234";
        a.links = Some(talon_proto::Links {
            host: Some(host.into()),
            flow: Some("javascript:alert(1)".into()),
            hunt: Some("https://vr.example.org/x\"><script>".into()),
        });
        let text = text_body(&a, &ALL);
        assert!(
            text.contains(&format!("Host in Velociraptor: {host}\n")),
            "{text}"
        );
        let html = html_body(&a, &ALL);
        assert!(
            html.contains(&format!("<a href=\"{}\"", escape(host))),
            "{html}"
        );
        assert_eq!(html.matches("<a ").count(), 1, "{html}");
        for bad in ["javascript:", "<script>", "Flow in", "Hunt in"] {
            assert!(!html.contains(bad) && !text.contains(bad), "{bad}");
        }
    }

    #[test]
    fn sections_follow_the_switches() {
        // (alert, switches, sections that must be present, absent)
        fn check(alert: &Alert, switches: Sections, present: &[&str], absent: &[&str]) {
            for body in [html_body(alert, &switches), text_body(alert, &switches)] {
                for title in present {
                    assert!(
                        body.contains(title),
                        "{title} missing with {switches:?}: {body}"
                    );
                }
                for title in absent {
                    assert!(
                        !body.contains(title),
                        "{title} present with {switches:?}: {body}"
                    );
                }
            }
        }
        let always = ["Alert summary", "Alert details"];
        let client = from_client(Some("web-01"));
        check(
            &client,
            ALL,
            &[
                &always[..],
                &["Client details", "Flow details", "Artifact details"],
            ]
            .concat(),
            &[],
        );
        check(
            &client,
            NONE,
            &always,
            &[
                "Client details",
                "Flow details",
                "Artifact details",
                "Hostname",
                "F.ABCD",
            ],
        );
        check(
            &client,
            Sections {
                client: true,
                flow: false,
                artifact: false,
            },
            &[
                "Client details",
                "web-01",
                "web-01.corp.example.org",
                "linux",
                "prod, web",
                "C.1234",
            ],
            &["Flow details", "Artifact details"],
        );
        check(
            &client,
            Sections {
                client: false,
                flow: true,
                artifact: true,
            },
            &[
                "Flow details",
                "F.ABCD",
                "Artifact details",
                "EventTest.Alert",
                "CLIENT_EVENT",
            ],
            &["Client details"],
        );
        // A server alert has no client and no flow to show, whatever the switches.
        check(
            &base(),
            ALL,
            &["Artifact details"],
            &["Client details", "Flow details"],
        );
    }

    #[test]
    fn summary_and_context_rows() {
        let mut a = from_client(Some("web-01"));
        a.severity = Some("high".into());
        a.context = Some(vec![ContextEntry {
            key: "Details.Connections.0.DestinationIp".into(),
            value: "10.0.0.1".into(),
        }]);
        let text = text_body(&a, &ALL);
        for line in [
            "  Name: TestAlert",
            "  Time: 2020-10-07T20:43:08Z",
            "  Severity: high",
            "  Alert id: 0123abcd",
            "  Source: nats",
            "  Details.Connections.0.DestinationIp: 10.0.0.1",
            "  Hostname: web-01",
            "  Flow id: F.ABCD",
            "Sent by talon, channel email-soc.",
        ] {
            assert!(text.contains(line), "{line:?} missing: {text}");
        }
        // Without enrich's context, event_data is shown.
        let mut raw = base();
        raw.event_data
            .insert("Field".into(), Value::String("One".into()));
        raw.event_data.insert("Count".into(), serde_json::json!(3));
        let text = text_body(&raw, &NONE);
        assert!(text.contains("  Field: One\n  Count: 3\n"), "{text}");
        // No context at all says so.
        assert!(text_body(&base(), &NONE).contains("Alert details\n  (none)\n"));
    }

    #[test]
    fn suppressed_line_only_when_some_were_suppressed() {
        fn check(suppressed: Option<u64>, expected: Option<&str>) {
            let mut a = base();
            a.dedup = suppressed.map(|n| DedupInfo {
                key: "TestAlert".into(),
                window_start: a.received_at,
                window_end: a.received_at,
                suppressed_before: n,
            });
            assert_eq!(suppressed_line(&a).as_deref(), expected);
            let html = html_body(&a, &ALL);
            let text = text_body(&a, &ALL);
            match expected {
                Some(line) => {
                    assert!(html.contains(line), "{html}");
                    assert!(text.contains(line), "{text}");
                }
                None => {
                    assert!(!html.contains("suppressed"), "{html}");
                    assert!(!text.contains("suppressed"), "{text}");
                }
            }
        }
        check(None, None);
        check(Some(0), None);
        check(
            Some(1),
            Some("1 similar alert was suppressed in the previous window"),
        );
        check(
            Some(3),
            Some("3 similar alerts were suppressed in the previous window"),
        );
    }
}
