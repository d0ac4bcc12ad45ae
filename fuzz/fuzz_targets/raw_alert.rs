//! `RawAlert::parse` on arbitrary bytes never panics; what it accepts
//! becomes an Alert that serializes and parses back to the same Alert.

#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use talon_proto::{Alert, RawAlert};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = RawAlert::parse(data, 64 * 1024) else {
        return;
    };
    // As ingest builds it.
    let received_at = Utc
        .timestamp_millis_opt(1_790_000_000_000)
        .single()
        .expect("a fixed, valid time");
    let alert = raw.into_alert("fuzz".to_owned(), received_at, "nats".to_owned());
    let bytes = serde_json::to_vec(&alert).expect("an accepted alert serializes");
    let back: Alert = serde_json::from_slice(&bytes).expect("a serialized alert parses back");
    assert_eq!(back, alert, "the alert changed through JSON");
});
