//! The dead-letter record published on `talon.dlq.<stage>`.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    /// `ingest`, `rules`, `dedup`, `enrich` or `notify`.
    pub stage: String,
    /// Why the input could not be processed, for a human.
    pub reason: String,
    /// The subject the input arrived on (`http:/v1/alerts` for the HTTP edge).
    pub subject: String,
    /// The input's sequence in its stream; absent for HTTP input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_seq: Option<u64>,
    /// When the stage dead-lettered it.
    pub received_at: DateTime<Utc>,
    /// The alert id, when the input got as far as having one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// The channel, for notify's dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Headers of the input worth keeping for a replay.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The input, when it is valid UTF-8 ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// ... else base64 of its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    /// The input's size in bytes when `raw`/`raw_base64` hold only its first
    /// [`MAX_RAW_BYTES`] (a dead letter must stay publishable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_cut_from: Option<u64>,
}

/// A dead letter keeps at most this much of its input: escaped as JSON (at
/// worst six bytes a byte) it still fits NATS's 2 MB `max_payload`.
pub const MAX_RAW_BYTES: usize = 256 * 1024;

/// The longest prefix of `text` of at most `max` bytes.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

impl DeadLetter {
    /// A record holding `raw` as text when it is UTF-8, else as base64; at
    /// most [`MAX_RAW_BYTES`] of it, with `raw_cut_from` set when cut.
    pub fn new(
        stage: crate::names::Stage,
        reason: impl Into<String>,
        subject: impl Into<String>,
        stream_seq: Option<u64>,
        raw: &[u8],
    ) -> Self {
        let raw_cut_from = (raw.len() > MAX_RAW_BYTES).then_some(raw.len() as u64);
        let (raw, raw_base64) = match std::str::from_utf8(raw) {
            Ok(text) => (Some(prefix(text, MAX_RAW_BYTES).to_owned()), None),
            Err(_) => (
                None,
                Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(raw.get(..MAX_RAW_BYTES).unwrap_or(raw)),
                ),
            ),
        };
        DeadLetter {
            stage: stage.as_str().to_owned(),
            reason: reason.into(),
            subject: subject.into(),
            stream_seq,
            received_at: Utc::now(),
            alert_id: None,
            channel: None,
            headers: BTreeMap::new(),
            raw,
            raw_base64,
            raw_cut_from,
        }
    }

    /// The input's bytes, whichever way they were stored.
    pub fn raw_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match (&self.raw, &self.raw_base64) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_cut_to_a_publishable_size() {
        let big = "é".repeat(MAX_RAW_BYTES); // 2 bytes each
        let letter = DeadLetter::new(crate::names::Stage::Ingest, "r", "s", None, big.as_bytes());
        let raw = letter.raw.as_deref().unwrap();
        assert_eq!(raw.len(), MAX_RAW_BYTES);
        assert_eq!(letter.raw_cut_from, Some(2 * MAX_RAW_BYTES as u64));
        let bytes = vec![0xffu8; MAX_RAW_BYTES + 1];
        let letter = DeadLetter::new(crate::names::Stage::Ingest, "r", "s", None, &bytes);
        assert_eq!(letter.raw_bytes().unwrap().len(), MAX_RAW_BYTES);
        assert_eq!(letter.raw_cut_from, Some(MAX_RAW_BYTES as u64 + 1));
        let small = DeadLetter::new(crate::names::Stage::Ingest, "r", "s", None, b"{}");
        assert_eq!(small.raw_cut_from, None);
        // Even all control characters escape to well under 2 MB.
        let worst = vec![1u8; MAX_RAW_BYTES * 4];
        let json = serde_json::to_vec(&DeadLetter::new(
            crate::names::Stage::Ingest,
            "r",
            "s",
            None,
            &worst,
        ))
        .unwrap();
        assert!(json.len() < 2 * 1024 * 1024, "{}", json.len());
    }

    #[test]
    fn raw_is_text_or_base64_and_round_trips() {
        let text = DeadLetter::new(crate::names::Stage::Ingest, "r", "s", Some(1), b"{\"a\":1}");
        assert_eq!(text.raw.as_deref(), Some("{\"a\":1}"));
        assert!(text.raw_base64.is_none());
        let bin = DeadLetter::new(
            crate::names::Stage::Ingest,
            "r",
            "s",
            None,
            &[0xff, 0xfe, b'a'],
        );
        assert!(bin.raw.is_none());
        assert_eq!(bin.raw_bytes().unwrap(), vec![0xff, 0xfe, b'a']);
    }
}
