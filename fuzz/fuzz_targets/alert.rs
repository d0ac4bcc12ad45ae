//! `decode_alert` — how dedup, enrich and notify read an Alert off an
//! internal subject — on arbitrary bytes never panics; what it accepts has
//! a header-safe id (and channel) and survives JSON unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use talon_proto::{check_id, decode_alert, Alert};

fuzz_target!(|data: &[u8]| {
    let Ok(alert) = decode_alert(data) else {
        return;
    };
    assert!(check_id(&alert.id).is_ok(), "an accepted id is header-safe");
    if let Some(channel) = &alert.channel {
        assert!(check_id(channel).is_ok(), "an accepted channel is a token");
    }
    assert!(!alert.name.is_empty());
    let bytes = serde_json::to_vec(&alert).expect("an accepted alert serializes");
    let back: Alert = serde_json::from_slice(&bytes).expect("a serialized alert parses back");
    assert_eq!(back, alert, "the alert changed through JSON");
});
