//! Every channel's renderer — the six chat and incident kinds, and the
//! e-mail subject and bodies — on arbitrary enriched alerts: none panics,
//! and each chat body is a JSON object.

#![no_main]

use libfuzzer_sys::fuzz_target;
use talon_kit::config::ChannelKind;
use talon_notify::channels::chat::{self, ChannelOptions};
use talon_notify::channels::email::{html_body, subject, text_body};
use talon_notify::channels::present::Sections;
use talon_proto::decode_alert;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the options; the rest is the alert, context,
    // severity and client included as an enriched one may have them.
    let Some((&switches, rest)) = data.split_first() else {
        return;
    };
    let Ok(alert) = decode_alert(rest) else {
        return;
    };
    let sections = Sections {
        client: switches & 1 != 0,
        flow: switches & 2 != 0,
        artifact: switches & 4 != 0,
    };
    let named = |bit: u8, value: &str| (switches & bit != 0).then(|| value.to_owned());
    let options = ChannelOptions {
        sections,
        channel: named(8, "#soc"),
        username: named(16, "talon"),
        icon_url: named(32, "https://example.org/icon.png"),
        routing_key: named(64, "R0UT1NGKEY"),
    };
    for kind in ChannelKind::CHAT {
        let body = chat::render(kind, &alert, &options).expect("a chat kind renders");
        assert!(body.is_object(), "{kind} renders an object");
        serde_json::to_vec(&body).expect("a body serializes");
    }
    let _ = subject(&alert);
    let _ = text_body(&alert, &sections);
    let _ = html_body(&alert, &sections);
});
