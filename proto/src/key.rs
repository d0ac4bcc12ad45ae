//! Dedup keys, partitions and ids: pure functions that ingest and dedup must
//! compute identically, so they live in the contract.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::Alert;

/// A component of the dedup key (`[dedup].key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupKeyField {
    Name,
    Artifact,
    ClientId,
    OrgId,
}

/// Separates the components of a multi-field key.
pub const KEY_SEPARATOR: &str = " | ";

/// The dedup key of `alert`: its name by default; with more fields, their
/// values joined by `KEY_SEPARATOR` in the configured order (an absent value
/// is empty). Client id and artifact are taken after the `event_data`
/// overrides, so an alert raised by a server artifact on behalf of a client
/// is keyed on that client.
pub fn dedup_key(alert: &Alert, fields: &[DedupKeyField]) -> String {
    if fields.is_empty() {
        return alert.name.clone();
    }
    let parts: Vec<&str> = fields
        .iter()
        .map(|f| match f {
            DedupKeyField::Name => alert.name.as_str(),
            DedupKeyField::Artifact => alert.effective_artifact().unwrap_or(""),
            DedupKeyField::ClientId => alert.effective_client_id().unwrap_or(""),
            DedupKeyField::OrgId => alert.org_id.as_deref().unwrap_or(""),
        })
        .collect();
    parts.join(KEY_SEPARATOR)
}

/// The dedup partition that owns `key`: a stable hash (XXH3-64, the same on
/// every machine and release) modulo `partitions`.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    // The remainder of a division by a u32 fits in a u32.
    (xxh3_64(key.as_bytes()) % n) as u32
}

fn hex_id(domain: &str, value: &str) -> String {
    let mut input = Vec::with_capacity(domain.len() + 1 + value.len());
    input.extend_from_slice(domain.as_bytes());
    input.push(0);
    input.extend_from_slice(value.as_bytes());
    format!("{:032x}", xxh3_128(&input))
}

/// The alert id when the producer sent a `Nats-Msg-Id`.
pub fn alert_id_from_msg_id(msg_id: &str) -> String {
    hex_id("msg-id", msg_id)
}

/// The alert id when the producer sent no `Nats-Msg-Id`: the input's stream
/// identity.
pub fn alert_id_from_stream(stream: &str, seq: u64) -> String {
    hex_id("stream", &format!("{stream}:{seq}"))
}

/// A `Nats-Msg-Id` derived from any string (rules' rows, HTTP items).
pub fn derived_msg_id(domain: crate::names::MsgIdDomain, value: &str) -> String {
    hex_id(domain.as_str(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Fixed values: a change here re-homes every live window.
        assert_eq!(partition_of("TestAlert", 1), 0);
        let p = partition_of("TestAlert", 8);
        assert!(p < 8);
        assert_eq!(p, partition_of("TestAlert", 8));
        assert_eq!(partition_of("x", 0), 0, "0 partitions behaves as 1");
        let spread: std::collections::BTreeSet<u32> = (0..200)
            .map(|i| partition_of(&format!("n{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4, "keys spread over every partition");
    }

    #[test]
    fn ids_are_deterministic_and_domain_separated() {
        assert_eq!(alert_id_from_msg_id("a"), alert_id_from_msg_id("a"));
        assert_ne!(alert_id_from_msg_id("a"), alert_id_from_msg_id("b"));
        assert_ne!(
            alert_id_from_stream("ALERTS", 1),
            alert_id_from_stream("ALERTS", 2)
        );
        assert_ne!(
            alert_id_from_msg_id("ALERTS:1"),
            alert_id_from_stream("ALERTS", 1)
        );
        assert_eq!(alert_id_from_msg_id("a").len(), 32);
    }
}
