//! Reading an [`Alert`] off an internal subject. Every stage after ingest
//! reads its input through [`decode_alert`]: a message on an internal subject
//! is as untrusted as one from a producer (anyone who can publish there, a
//! bug in an earlier release), and whatever of it later reaches a NATS header
//! or a subject must be checked before it gets there.

use crate::Alert;

/// Ids that reach NATS headers (`Nats-Msg-Id`, `Talon-Alert-Id`) or subjects
/// (channel ids) are at most this long.
pub const MAX_ID_LEN: usize = 128;

/// An alert between stages is at most this large (NATS's own limit in
/// `deploy/nats.conf` is 2 MB; ingest's HTTP body limit is lower).
pub const MAX_ALERT_BYTES: usize = 4 * 1024 * 1024;

/// An alert's name is at most this many bytes (ingest enforces the same).
pub const MAX_NAME_BYTES: usize = 4096;

/// Why an id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty")]
    Empty,
    #[error("{len} bytes long, more than {MAX_ID_LEN}")]
    TooLong { len: usize },
    #[error("holds {found:?} at byte {at}: only [0-9A-Za-z_-] is allowed")]
    BadChar { found: char, at: usize },
}

/// Checks that `id` can go into a NATS header or a subject token:
/// `[0-9A-Za-z_-]{1,128}`.
pub fn check_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: id.len() });
    }
    match id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        Some((at, found)) => Err(IdError::BadChar { found, at }),
        None => Ok(()),
    }
}

/// Why a message is not an Alert a stage can handle.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes, more than the {MAX_ALERT_BYTES} an alert may have")]
    TooLarge { len: usize },
    #[error("not an Alert: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the alert's id cannot be used: {0}")]
    Id(IdError),
    #[error("the alert's channel cannot be used: {0}")]
    Channel(IdError),
    #[error("the alert's name is empty")]
    EmptyName,
    #[error("the alert's name is {len} bytes long, more than {MAX_NAME_BYTES}")]
    NameTooLong { len: usize },
}

/// Parses an Alert from an internal subject and checks what later stages
/// rely on: its size, its id and channel (header-safe), its name. JSON
/// nesting is bounded by serde_json's recursion limit (128), which this
/// reports as a parse error rather than overflowing the stack.
pub fn decode_alert(bytes: &[u8]) -> Result<Alert, DecodeError> {
    if bytes.len() > MAX_ALERT_BYTES {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let alert: Alert = serde_json::from_slice(bytes)?;
    check_id(&alert.id).map_err(DecodeError::Id)?;
    if let Some(channel) = &alert.channel {
        check_id(channel).map_err(DecodeError::Channel)?;
    }
    if alert.name.is_empty() {
        return Err(DecodeError::EmptyName);
    }
    if alert.name.len() > MAX_NAME_BYTES {
        return Err(DecodeError::NameTooLong {
            len: alert.name.len(),
        });
    }
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, ok: bool) {
        assert_eq!(check_id(id).is_ok(), ok, "{id:?}");
    }

    #[test]
    fn ids_are_header_safe_tokens() {
        check("0f3a9c", true);
        check("alert_1-b", true);
        check(&"a".repeat(MAX_ID_LEN), true);
        check(&"a".repeat(MAX_ID_LEN + 1), false);
        check("", false);
        check("p\nq", false);
        check("p\rq", false);
        check("a\0b", false);
        check("a b", false);
        check("a.b", false);
        check("a:b", false);
        check("a*", false);
        check("é", false);
    }

    fn alert_json(id: &str, name: &str) -> String {
        serde_json::json!({
            "id": id, "received_at": "2026-01-01T00:00:00Z", "source": "nats",
            "name": name, "timestamp": "2026-01-01T00:00:00Z",
        })
        .to_string()
    }

    #[test]
    fn decoding_rejects_what_a_later_stage_could_not_publish() {
        assert!(decode_alert(alert_json("abc", "n").as_bytes()).is_ok());
        let bad_id = decode_alert(alert_json("p\nq", "n").as_bytes()).unwrap_err();
        assert!(bad_id.to_string().contains("id cannot be used"), "{bad_id}");
        assert!(matches!(
            decode_alert(alert_json("abc", "").as_bytes()),
            Err(DecodeError::EmptyName)
        ));
        assert!(matches!(
            decode_alert(alert_json("abc", &"n".repeat(MAX_NAME_BYTES + 1)).as_bytes()),
            Err(DecodeError::NameTooLong { .. })
        ));
        let mut with_channel: serde_json::Value =
            serde_json::from_str(&alert_json("abc", "n")).unwrap();
        with_channel["channel"] = "a\r\nb".into();
        assert!(matches!(
            decode_alert(with_channel.to_string().as_bytes()),
            Err(DecodeError::Channel(_))
        ));
        assert!(matches!(
            decode_alert(b"\xff\xfe"),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(decode_alert(b""), Err(DecodeError::Json(_))));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(
            r#"{{"id":"a","received_at":"2026-01-01T00:00:00Z","source":"nats","name":"n","timestamp":"2026-01-01T00:00:00Z","event_data":{{"x":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            decode_alert(deep.as_bytes()),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![b' '; MAX_ALERT_BYTES + 1];
        assert!(matches!(
            decode_alert(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
