//! What an alert says, as the e-mail and the chat kinds both show it: its
//! title, its text on one line, the client it is about, its severity's
//! colour, the channel's `include_*_details` switches, the short facts, the
//! context rows, the suppressed count and the footer. Pure functions over
//! the enriched [`Alert`]; no I/O.
//!
//! No control character (CR, LF, ...) ever reaches a title: a mail subject
//! is built from it, and so is every chat kind's notification text.

use chrono::SecondsFormat;
use serde_json::Value;
use talon_kit::config::ChannelConfig;
use talon_proto::Alert;

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

fn safe_url(url: &str) -> bool {
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
}
