//! The raw alert: a Velociraptor `Server.Internal.Alerts` row, as producers
//! publish it. Lenient on `_ts`, `_Source` and unknown
//! top-level fields; strict on `name` and on the types of known fields.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// A validated raw alert.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAlert {
    pub name: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub client_id: Option<String>,
    pub flow_id: Option<String>,
    pub org_id: Option<String>,
    pub artifact: Option<String>,
    pub artifact_type: Option<String>,
    pub event_data: Map<String, Value>,
    /// `dedup` as sent: absent and 0 both mean "the default".
    pub dedup: Option<i64>,
    /// `condition` as sent: `Some(false)` means "do not send".
    pub condition: Option<bool>,
}

/// Why a raw alert was refused. The Display text is the dead-letter reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RawAlertError {
    #[error("alert is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("alert is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("alert is not JSON: {0}")]
    NotJson(String),
    #[error("alert must be a JSON object, got {0}")]
    NotObject(&'static str),
    #[error("`name` is missing")]
    MissingName,
    #[error("`name` is empty")]
    EmptyName,
    #[error("`name` is {len} bytes long, over the limit of {max} bytes")]
    NameTooLong { len: usize, max: usize },
    #[error("`{field}` must be {expected}, got {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("`timestamp` {0}")]
    BadTimestamp(String),
}

/// The JSON kind of `v`, for error messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number with a fraction",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl RawAlert {
    /// Parses one raw alert from bytes, refusing anything over `max_bytes`.
    pub fn parse(bytes: &[u8], max_bytes: usize) -> Result<RawAlert, RawAlertError> {
        if bytes.len() > max_bytes {
            return Err(RawAlertError::TooLarge {
                size: bytes.len(),
                max: max_bytes,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| RawAlertError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        // serde_json refuses nesting deeper than 128 levels, so a hostile
        // input cannot exhaust the stack.
        let value: Value =
            serde_json::from_str(text).map_err(|e| RawAlertError::NotJson(e.to_string()))?;
        RawAlert::from_value(value)
    }

    /// Validates an already parsed JSON value (an item of an HTTP array).
    pub fn from_value(value: Value) -> Result<RawAlert, RawAlertError> {
        let Value::Object(mut row) = value else {
            return Err(RawAlertError::NotObject(kind_of(&value)));
        };
        let name = match row.remove("name") {
            None | Some(Value::Null) => return Err(RawAlertError::MissingName),
            Some(Value::String(s)) if s.trim().is_empty() => return Err(RawAlertError::EmptyName),
            Some(Value::String(s)) if s.len() > crate::wire::MAX_NAME_BYTES => {
                return Err(RawAlertError::NameTooLong {
                    len: s.len(),
                    max: crate::wire::MAX_NAME_BYTES,
                })
            }
            Some(Value::String(s)) => s,
            Some(other) => return Err(wrong("name", "a non-empty string", &other)),
        };
        let timestamp = match row.remove("timestamp") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_timestamp(&v)?),
        };
        let event_data = match row.remove("event_data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(wrong("event_data", "an object", &other)),
        };
        let dedup = match row.remove("dedup") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(other) => return Err(wrong("dedup", "an integer number of seconds", &other)),
        };
        let condition = match row.remove("condition") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(b),
            Some(other) => return Err(wrong("condition", "a boolean", &other)),
        };
        Ok(RawAlert {
            name,
            timestamp,
            client_id: optional_string(&mut row, "client_id")?,
            flow_id: optional_string(&mut row, "flow_id")?,
            org_id: optional_string(&mut row, "org_id")?,
            artifact: optional_string(&mut row, "artifact")?,
            artifact_type: optional_string(&mut row, "artifact_type")?,
            event_data,
            dedup,
            condition,
        })
    }
}

impl RawAlert {
    /// The Alert envelope ingest makes of it: its id, when JetStream
    /// stored it (also the `timestamp` when the producer sent none), and
    /// its source; every later stage's field empty.
    pub fn into_alert(
        self,
        id: String,
        received_at: DateTime<Utc>,
        source: String,
    ) -> crate::Alert {
        crate::Alert {
            id,
            received_at,
            source,
            org_id: self.org_id,
            name: self.name,
            timestamp: self.timestamp.unwrap_or(received_at),
            client_id: self.client_id,
            flow_id: self.flow_id,
            artifact: self.artifact,
            artifact_type: self.artifact_type,
            event_data: self.event_data,
            dedup_seconds: self.dedup.unwrap_or(0),
            dedup: None,
            severity: None,
            context: None,
            client: None,
            links: None,
            silenced_by: Vec::new(),
            routed_to: None,
            channel: None,
        }
    }
}

fn wrong(field: &'static str, expected: &'static str, got: &Value) -> RawAlertError {
    RawAlertError::WrongType {
        field,
        expected,
        got: kind_of(got),
    }
}

/// An optional string field: absent, null and "" all mean "not set".
fn optional_string(
    row: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, RawAlertError> {
    match row.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(field, "a string", &other)),
    }
}

/// RFC 3339 text, or epoch seconds as a number (a fraction is kept to the
/// nanosecond). Only what serializes back as RFC 3339 is accepted: years
/// 0000 to 9999, no leap second, `T` between date and time.
pub fn parse_timestamp(v: &Value) -> Result<DateTime<Utc>, RawAlertError> {
    let t = match v {
        Value::String(s) => {
            if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
                return Err(RawAlertError::BadTimestamp(format!(
                    "{s:?} is not RFC 3339: expected `T` between date and time"
                )));
            }
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| RawAlertError::BadTimestamp(format!("{s:?} is not RFC 3339: {e}")))?
        }
        Value::Number(n) => {
            let out_of_range = || RawAlertError::BadTimestamp(format!("{n} is out of range"));
            if let Some(secs) = n.as_i64() {
                Utc.timestamp_opt(secs, 0)
                    .single()
                    .ok_or_else(out_of_range)?
            } else {
                let f = n.as_f64().ok_or_else(out_of_range)?;
                if !f.is_finite() || f.abs() > 1e13 {
                    return Err(out_of_range());
                }
                let secs = f.floor();
                let nanos = ((f - secs) * 1e9).round().min(999_999_999.0);
                // Both are finite and in range: checked above.
                Utc.timestamp_opt(secs as i64, nanos as u32)
                    .single()
                    .ok_or_else(out_of_range)?
            }
        }
        other => {
            return Err(RawAlertError::BadTimestamp(format!(
                "must be RFC 3339 text or epoch seconds, got {}",
                kind_of(other)
            )))
        }
    };
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&t.year()) {
        return Err(RawAlertError::BadTimestamp(format!(
            "{t} is outside the years 0000 to 9999"
        )));
    }
    if t.nanosecond() >= 1_000_000_000 && (t.hour(), t.minute()) != (23, 59) {
        return Err(RawAlertError::BadTimestamp(
            "a leap second is only valid at 23:59:60 UTC".to_owned(),
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"client_id":"server","name":"TestAlert","timestamp":"2020-10-07T20:43:08Z","event_data":{"field":"Field1"},"artifact":"EventTest.Alert","artifact_type":"SERVER_MONITORING","_ts":1602103388,"_Source":"VelociraptorServer"}"#;

    /// Found by fuzzing: without serde_json's `float_roundtrip`, a float in
    /// `event_data` came back one ulp off after a serialize-and-parse, so
    /// each stage could change it a little.
    #[test]
    fn floats_in_event_data_survive_every_hop_exactly() {
        let raw = br#"{"name":"n","event_data":{"x":1.111000000000128,"y":1.1111111111111112}}"#;
        let at = Utc.timestamp_millis_opt(1_790_000_000_000).unwrap();
        let alert =
            RawAlert::parse(raw, 1 << 20)
                .unwrap()
                .into_alert("id".into(), at, "nats".into());
        assert_eq!(alert.event_data["x"].as_f64(), Some(1.111000000000128));
        let mut hop = alert.clone();
        for _ in 0..4 {
            hop = serde_json::from_slice(&serde_json::to_vec(&hop).unwrap()).unwrap();
        }
        assert_eq!(hop, alert);
    }

    #[test]
    fn velociraptor_row_parses_with_every_field() {
        let a = RawAlert::parse(ROW.as_bytes(), 1 << 20).unwrap();
        assert_eq!(a.name, "TestAlert");
        assert_eq!(a.client_id.as_deref(), Some("server"));
        assert_eq!(a.artifact.as_deref(), Some("EventTest.Alert"));
        assert_eq!(a.artifact_type.as_deref(), Some("SERVER_MONITORING"));
        assert_eq!(a.event_data["field"], "Field1");
        assert_eq!(a.timestamp.unwrap().timestamp(), 1602103388);
        assert_eq!(a.dedup, None);
    }

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = RawAlert::parse(input.as_bytes(), 256);
        match (got, expected) {
            (Ok(a), Ok(name)) => assert_eq!(a.name, name, "{input}"),
            (Err(e), Err(reason)) => {
                assert!(
                    e.to_string().contains(reason),
                    "{input}: {e} lacks {reason:?}"
                )
            }
            (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn table() {
        check(r#"{"name":"a","dedup":-1}"#, Ok("a"));
        check(r#"{"name":"a","timestamp":1602103388.5}"#, Ok("a"));
        check(r#"{"name":"a","flow_id":null,"unknown":[1]}"#, Ok("a"));
        check(
            r#"{"name":"a","dedup":1.5}"#,
            Err("`dedup` must be an integer"),
        );
        check(r#"{"name":"a","dedup":"300"}"#, Err("got a string"));
        check(r#"{"name":""}"#, Err("`name` is empty"));
        check(r#"{"name":7}"#, Err("`name` must be a non-empty string"));
        check(r#"{}"#, Err("`name` is missing"));
        check(r#"[]"#, Err("must be a JSON object, got an array"));
        check(
            r#"{"name":"a","timestamp":"yesterday"}"#,
            Err("is not RFC 3339"),
        );
        check(r#"{"name":"a","timestamp":1e300}"#, Err("out of range"));
        check(
            r#"{"name":"a","timestamp":8210266876799}"#,
            Err("outside the years"),
        );
        check(
            r#"{"name":"a","timestamp":"0000-01-01T00:00:00+01:00"}"#,
            Err("outside the years"),
        );
        check(
            r#"{"name":"a","timestamp":"2020-10-07T20:43:60Z"}"#,
            Err("leap second is only valid"),
        );
        check(
            r#"{"name":"a","timestamp":"2020-10-07 20:43:08Z"}"#,
            Err("expected `T`"),
        );
        check(
            r#"{"name":"a","event_data":[]}"#,
            Err("`event_data` must be an object"),
        );
        check(
            r#"{"name":"a","condition":"no"}"#,
            Err("`condition` must be a boolean"),
        );
        check(
            r#"{"name":"a","client_id":{}}"#,
            Err("`client_id` must be a string"),
        );
        check(
            &format!(r#"{{"name":"{}"}}"#, "x".repeat(300)),
            Err("over the limit"),
        );
        check("{", Err("not JSON"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = RawAlert::parse(deep.as_bytes(), usize::MAX).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_its_offset() {
        let e = RawAlert::parse(b"{\"name\":\"\xff\"}", 100).unwrap_err();
        assert_eq!(e, RawAlertError::NotUtf8 { offset: 9 });
    }
}
