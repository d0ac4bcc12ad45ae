//! The delivery ledger: the KV bucket `talon_deliveries`, one key per
//! (alert, channel) or group message. A pair already marked sent is never
//! sent again.
//!
//! A single alert's delivery is not claimed here: JetStream hands a
//! notify message to one replica at a time, and that replica tells
//! JetStream it is still working on it (every 10 s) until it acks, so no
//! other replica gets it while its holder is alive; the notify consumers'
//! ack wait ([`talon_kit::streams::ACK_WAIT_NOTIFY`]) is as long as a stale
//! claim, so a holder cut off from NATS for less than that records the
//! delivery and acks it before anyone else may try. The worker reads the
//! pair's entry before sending (`look`: a copy of the alert published
//! twice, or a redelivery after a replica died between marking and
//! acking, is found sent) and writes it once after (`record_sent`): one
//! write a delivery instead of two. Group messages, which any replica may
//! try, are claimed (`claim`) before they are sent and marked after.
//!
//! The one window for a duplicate: a replica that crashes after the remote
//! side accepted the delivery and before `record_sent` reached the bucket.
//! A replica that is alive but cut off from NATS keeps trying to record the
//! delivery for as long as a claim would stay fresh: a cut shorter than
//! that costs time, never a second delivery.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use talon_proto::names::BUCKET_DELIVERIES;

/// A claim older than this belongs to a replica that is gone: notify's ack
/// wait, twice the other stages', so that a replica cut off from NATS for
/// up to half a minute (and its reconnect) records its deliveries before
/// anyone takes them over.
pub const STALE_CLAIM: Duration = talon_kit::streams::ACK_WAIT_NOTIFY;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Claimed,
    Sent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: State,
    /// The replica that wrote it.
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Record {
    /// A claim this old belongs to a replica that is gone.
    fn stale(&self) -> bool {
        let age = Utc::now().signed_duration_since(self.at);
        age.to_std().is_ok_and(|a| a >= STALE_CLAIM)
    }
}

/// What `look` found for a pair about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Never sent (no entry, a released claim or a stale one): send it.
    Free,
    /// Delivered before: ack without sending.
    Sent,
    /// Claimed by a replica that may be sending it now (a group message's
    /// key, or a replica of an earlier release): try again later.
    Busy,
}

/// What `claim` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send; the revision to mark it sent with.
    Mine(u64),
    /// Delivered before: ack without sending.
    AlreadySent,
    /// Another replica is sending it right now: try again later.
    Busy,
}

#[derive(Debug, thiserror::Error)]
#[error("delivery ledger: {0}")]
pub struct LedgerError(String);

fn err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError(e.to_string())
}

impl LedgerError {
    /// An error of something the ledger needs (a stream it starts with).
    pub fn from_display(e: &impl std::fmt::Display) -> LedgerError {
        err(e)
    }
}

#[derive(Clone)]
pub struct Ledger {
    store: kv::Store,
    replica: String,
}

/// The ledger key of (alert, channel): readable when the alert id is made
/// of key-safe characters (as ingest's ids are), else hashed.
pub fn key(alert_id: &str, channel: &str) -> String {
    let safe = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let id = if safe(alert_id) {
        alert_id.to_owned()
    } else {
        talon_proto::key::derived_msg_id(talon_proto::names::MsgIdDomain::Ledger, alert_id)
    };
    format!("{channel}.{id}")
}

impl Ledger {
    /// Opens (creating when missing) the bucket, keeping records for `keep`
    /// (longer than the longest retry deadline).
    pub async fn open(
        js: &jetstream::Context,
        replicas: usize,
        keep: Duration,
        replica: String,
    ) -> Result<Ledger, LedgerError> {
        let store = talon_kit::streams::ensure_bucket(
            js,
            BUCKET_DELIVERIES,
            "talon notify: (alert, channel) claimed or sent",
            keep,
            replicas,
        )
        .await
        .map_err(err)?;
        Ok(Ledger { store, replica })
    }

    fn record(&self, state: State) -> Result<bytes::Bytes, LedgerError> {
        let record = Record {
            state,
            by: self.replica.clone(),
            at: Utc::now(),
        };
        // A Record holds a tag, a string and a time: it always serializes, and
        // this error is never returned.
        serde_json::to_vec(&record)
            .map(bytes::Bytes::from)
            .map_err(err)
    }

    pub async fn claim(&self, key: &str) -> Result<Claim, LedgerError> {
        match self.store.create(key, self.record(State::Claimed)?).await {
            Ok(revision) => return Ok(Claim::Mine(revision)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let Some(entry) = self.store.entry(key).await.map_err(err)? else {
            // Deleted between the two calls: try once more.
            return match self.store.create(key, self.record(State::Claimed)?).await {
                Ok(revision) => Ok(Claim::Mine(revision)),
                Err(_) => Ok(Claim::Busy),
            };
        };
        if entry.operation != kv::Operation::Put {
            // Released: claim it over the delete marker.
            return match self
                .store
                .update(key, self.record(State::Claimed)?, entry.revision)
                .await
            {
                Ok(revision) => Ok(Claim::Mine(revision)),
                Err(_) => Ok(Claim::Busy),
            };
        }
        let record: Record = serde_json::from_slice(&entry.value).map_err(err)?;
        match record.state {
            State::Sent => Ok(Claim::AlreadySent),
            State::Claimed => {
                if !record.stale() {
                    return Ok(Claim::Busy);
                }
                tracing::info!(key, previous = %record.by, "taking over a stale claim");
                match self
                    .store
                    .update(key, self.record(State::Claimed)?, entry.revision)
                    .await
                {
                    Ok(revision) => Ok(Claim::Mine(revision)),
                    Err(_) => Ok(Claim::Busy),
                }
            }
        }
    }

    /// Whether the pair may be sent: one read, no write.
    pub async fn look(&self, key: &str) -> Result<Look, LedgerError> {
        let Some(entry) = self.store.entry(key).await.map_err(err)? else {
            return Ok(Look::Free);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(Look::Free);
        }
        let record: Record = serde_json::from_slice(&entry.value).map_err(err)?;
        Ok(match record.state {
            State::Sent => Look::Sent,
            State::Claimed if record.stale() => Look::Free,
            State::Claimed => Look::Busy,
        })
    }

    /// Records that the pair was delivered: over our claim of `revision`,
    /// or unconditionally when there is none (`None`, a single alert).
    pub async fn mark_sent(&self, key: &str, revision: Option<u64>) -> Result<(), LedgerError> {
        let Some(revision) = revision else {
            return self
                .store
                .put(key, self.record(State::Sent)?)
                .await
                .map(|_| ())
                .map_err(err);
        };
        match self
            .store
            .update(key, self.record(State::Sent)?, revision)
            .await
        {
            Ok(_) => Ok(()),
            // Someone took the claim over meanwhile: the pair is delivered
            // all the same, say so unconditionally.
            Err(_) => self
                .store
                .put(key, self.record(State::Sent)?)
                .await
                .map(|_| ())
                .map_err(err),
        }
    }

    /// `mark_sent`, tried again (250 ms, doubling to 5 s) while NATS does
    /// not answer, for as long as the claim is not stale; the last error
    /// when it never went through.
    pub async fn record_sent(&self, key: &str, revision: Option<u64>) -> Result<(), LedgerError> {
        let deadline = tokio::time::Instant::now() + STALE_CLAIM;
        let mut pause = Duration::from_millis(250);
        loop {
            match self.mark_sent(key, revision).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + pause >= deadline => return Err(e),
                Err(e) => {
                    tracing::info!(key, error = %e, "delivered; recording it again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Gives the claim up after a failed attempt, so the next attempt (on any
    /// replica) can claim it at once.
    pub async fn release(&self, key: &str) -> Result<(), LedgerError> {
        self.store.delete(key).await.map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_when_safe_and_hashed_otherwise() {
        assert_eq!(key("0123abcd", "email-soc"), "email-soc.0123abcd");
        let hashed = key("a b/c", "hook");
        assert!(
            hashed.starts_with("hook.") && hashed.len() == 5 + 32,
            "{hashed}"
        );
        assert_eq!(hashed, key("a b/c", "hook"));
    }
}
