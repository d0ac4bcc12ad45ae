//! Rule templates: parsing arbitrary text and rendering what parses never
//! panics. The input is split at the first NUL: the template text, then a
//! JSON row to render it against (an empty row when that is not an object).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use talon_kit::template::{Client, Segment, Template};

fuzz_target!(|data: &[u8]| {
    let (text, row) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let row: Map<String, Value> = match serde_json::from_slice(row) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for client in [
        Client::default(),
        Client {
            id: Some("C.1".to_owned()),
            hostname: Some("host".to_owned()),
            fqdn: None,
        },
    ] {
        let text = template.render(&row, &client);
        let value = template.render_value(&row, &client);
        // A template that is not one lone column renders to the same text
        // both ways.
        if !matches!(template.segments(), [Segment::Column(_)]) {
            match (text, value) {
                (Ok(t), Ok(Value::String(v))) => assert_eq!(t, v),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (t, v) => panic!("render gave {t:?}, render_value {v:?}"),
            }
        }
    }
});
