//! talon's wire contract: the messages that cross NATS between services, the
//! names of subjects, streams, consumers and buckets, and the pure functions
//! that every stage must agree on (dedup keys, partitions, ids).
//!
//! JSON Schemas for the messages live in `proto/schemas/`; the tests in
//! `tests/schemas.rs` check the types against them.

pub mod alert;
pub mod delivery;
pub mod dlq;
pub mod group;
pub mod key;
pub mod names;
pub mod raw;
pub mod silence;
pub mod wire;

pub use alert::{Alert, ClientInfo, ContextEntry, DedupInfo, DedupWindow, Links, OVERRIDE_KEYS};
pub use delivery::{Delivery, Outcome as DeliveryOutcome};
pub use dlq::DeadLetter;
pub use group::GroupMessage;
pub use key::{dedup_key, partition_of, DedupKeyField};
pub use raw::{RawAlert, RawAlertError};
pub use silence::{MatchOp, Matcher, Silence, SilenceState, SilenceSync};
pub use wire::{check_id, decode_alert, DecodeError};
