//! enrich's transform (overrides, severity, context, routing) on arbitrary
//! alerts, as `decode_alert` lets them through: it never panics, and the
//! context it builds stays within its bounds whatever the `event_data`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use talon_enrich::context::MAX_KEY_BYTES;
use talon_enrich::transform::{enrich, Rules};
use talon_proto::{decode_alert, ClientInfo};

/// Severity rows, both flattening modes' limits and a channel per kind of
/// route, so every step has work to do.
const CONFIG: &str = r#"
[enrich]
context_field_limit = 20
context_value_limit = 50
[[enrich.severity_transforms]]
member = "Level"
regex = "(?i)warn"
replace = "medium"
[[enrich.severity_transforms]]
member = "Level"
regex = "(?i)crit"
replace = "critical"
[[channels]]
id = "all"
kind = "webhook"
url = "http://127.0.0.1:9/all"
[[channels]]
id = "high"
kind = "webhook"
url = "http://127.0.0.1:9/high"
severity_threshold = "high"
alert_exclude = "^x"
"#;

fn rules() -> &'static (Rules, usize) {
    static RULES: OnceLock<(Rules, usize)> = OnceLock::new();
    RULES.get_or_init(|| {
        let config = talon_kit::Config::parse(CONFIG, &Default::default()).expect("fuzz config");
        let limit = config.enrich.context_field_limit;
        (Rules::new(&config).expect("fuzz rules"), limit)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(alert) = decode_alert(data) else {
        return;
    };
    let (rules, limit) = rules();
    let known = |id: &str| {
        (id.len() % 2 == 0).then(|| ClientInfo {
            client_id: Some(id.to_owned()),
            hostname: Some("host".to_owned()),
            ..Default::default()
        })
    };
    let (enriched, channels) = enrich(alert, rules, known);
    let context = enriched.context.as_ref().expect("enrich sets a context");
    assert!(context.len() <= limit + 1, "{} entries", context.len());
    for entry in context {
        assert!(
            entry.key.len() <= MAX_KEY_BYTES + '…'.len_utf8() || entry.key == "…",
            "a key of {} bytes",
            entry.key.len()
        );
        assert!(entry.value.chars().count() <= 50 || entry.key == "…");
    }
    assert!(channels.len() <= 2);
    serde_json::to_vec(&enriched).expect("an enriched alert serializes");
});
