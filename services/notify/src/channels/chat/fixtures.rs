//! The alerts the chat kinds' tests and golden files render: a usual one,
//! and one far over every service's limits.

use serde_json::Value;
use talon_proto::group::{Builder, GroupValue};
use talon_proto::{Alert, ClientInfo, ContextEntry, DedupInfo, GroupMessage, Links};

use super::parts::ChannelOptions;
use crate::channels::present::Sections;

/// An enriched client alert with every field filled, and context values
/// that need escaping or could mention someone.
pub fn alert() -> Alert {
    let at = "2020-10-07T20:43:08Z".parse().expect("a valid time");
    let context = [
        ("FileName", "/home/alice/honey.docx"),
        ("Pid", "4242"),
        ("ProcessName", "cat"),
        (
            "CommandLine",
            "cat <secrets> && echo @everyone @here <!channel>",
        ),
        ("Details.User", "alice@example.org"),
        ("Empty", ""),
    ];
    Alert {
        id: "0123456789abcdef0123456789abcdef".into(),
        received_at: "2020-10-07T20:43:09Z".parse().expect("a valid time"),
        org_id: Some("root".into()),
        name: "Honey file".into(),
        timestamp: at,
        client_id: Some("C.1234".into()),
        flow_id: Some("F.ABCD".into()),
        artifact: Some("Linux.Detection.Honeyfiles".into()),
        artifact_type: Some("CLIENT_EVENT".into()),
        dedup: Some(DedupInfo {
            key: "Honey file | C.1234".into(),
            window_start: at,
            window_end: "2020-10-07T22:43:08Z".parse().expect("a valid time"),
            suppressed_before: 3,
        }),
        severity: Some("high".into()),
        context: Some(
            context
                .iter()
                .map(|(k, v)| ContextEntry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        ),
        client: Some(ClientInfo {
            client_id: Some("C.1234".into()),
            hostname: Some("web-01".into()),
            fqdn: Some("web-01.corp.example.org".into()),
            os: Some("linux".into()),
            labels: vec!["prod".into()],
        }),
        links: Some(Links {
            host: Some(
                "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.1234".into(),
            ),
            flow: Some(
                "https://vr.example.org:8889/app/index.html?org_id=root#/collected/C.1234/F.ABCD"
                    .into(),
            ),
            hunt: None,
        }),
        channel: Some("chat".into()),
        ..Alert::sample()
    }
}

/// [`alert`] with a 2,000-character name and hostname, a 400-character
/// dedup key, and 500 context fields of 300-character keys and
/// values of about 1,500 (about 900 KB in all).
pub fn oversized() -> Alert {
    let mut a = alert();
    a.name = format!("Oversized {}", "N".repeat(1990));
    a.severity = Some("critical".into());
    if let Some(client) = a.client.as_mut() {
        client.hostname = Some(format!("host-{}", "h".repeat(1995)));
    }
    if let Some(dedup) = a.dedup.as_mut() {
        dedup.key = format!("key-{}", "k".repeat(396));
    }
    if let Some(links) = a.links.as_mut() {
        links.hunt = Some(format!(
            "https://vr.example.org:8889/app/index.html?org_id=root#/hunts/H.{}",
            "7".repeat(1950)
        ));
    }
    a.event_data
        .insert("Ignored".into(), Value::String("context wins".into()));
    a.context = Some(
        (0..500)
            .map(|i| ContextEntry {
                key: format!("Field.{i:03}.{}", "k".repeat(290)),
                value: format!("<{i:03}> {}", "v&".repeat(746)),
            })
            .collect(),
    );
    a
}

/// Options with every key set, so each kind shows what it uses.
pub fn options() -> ChannelOptions {
    ChannelOptions {
        sections: Sections {
            client: true,
            flow: true,
            artifact: false,
        },
        channel: Some("#secops".into()),
        username: Some("talon".into()),
        icon_url: Some("https://example.org/talon.png".into()),
        routing_key: Some("R0UT1NGKEY0123456789abcdef012345".into()),
    }
}

/// The 500-host storm as one group message of a channel with
/// `group_by = ["name"]` and the default `group_max_alerts` (100): one rule
/// on 500 clients, mostly high, a few critical and medium, with the
/// escaping traps of [`alert`] in the first whole alerts.
pub fn group() -> GroupMessage {
    let name = "Sigma: Mimikatz Use <!channel> & @everyone";
    let mut b = Builder::new(
        "chat",
        "6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f",
        vec![GroupValue {
            field: "name".into(),
            value: name.into(),
        }],
        2,
        None,
        talon_proto::group::DEFAULT_LISTED,
    );
    for i in 0..500u32 {
        let mut a = alert();
        a.id = format!("{i:04}{}", "a".repeat(28));
        a.name = name.into();
        a.client_id = Some(format!("C.{i:04}"));
        a.severity = Some(
            match i % 50 {
                0 => "critical",
                1..=4 => "medium",
                _ => "high",
            }
            .into(),
        );
        a.timestamp += chrono::Duration::seconds(i64::from(i));
        if let Some(c) = a.client.as_mut() {
            c.hostname = Some(format!("web-{i:03}"));
            c.client_id = a.client_id.clone();
        }
        if let Some(l) = a.links.as_mut() {
            l.host = Some(format!(
                "https://vr.example.org:8889/app/index.html?org_id=root#/host/C.{i:04}"
            ));
        }
        b.push(a);
    }
    b.finish()
}

/// A group at every bound: 10,000 alerts (the most one message counts),
/// all listed (`group_max_alerts` at its maximum), the first three
/// [`oversized`], the rest with 2,000-character names and hostnames, and a
/// group value of 2,000 characters.
pub fn oversized_group() -> GroupMessage {
    let mut b = Builder::new(
        "chat",
        "ffffffffffffffffffffffffffffffff",
        vec![
            GroupValue {
                field: "name".into(),
                value: format!("Group {}", "G<&>".repeat(500)),
            },
            GroupValue {
                field: "context.User".into(),
                value: "alice@example.org".into(),
            },
        ],
        u64::MAX,
        Some("daily 08:00 Europe/Berlin".into()),
        talon_proto::group::MAX_MESSAGE_ALERTS,
    );
    let big = oversized();
    for i in 0..talon_proto::group::MAX_MESSAGE_ALERTS {
        let mut a = if i < 3 {
            big.clone()
        } else {
            let mut a = alert();
            a.name = big.name.clone();
            a.client = big.client.clone();
            a.context = None;
            a
        };
        a.id = format!("{i:05}{}", "b".repeat(27));
        a.client_id = Some(format!("C.{i:05}"));
        b.push(a);
    }
    b.finish()
}
