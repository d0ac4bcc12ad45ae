//! One file per channel kind (the chat and incident kinds under `chat/`),
//! and `present.rs`, what the e-mail and the chat kinds show alike. Every
//! kind delivers one enriched alert and says whether a failure is worth
//! retrying.

use std::time::Duration;

pub mod chat;
pub mod email;
pub mod inbox;
pub mod present;
pub mod webhook;

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying (timeouts, 5xx, 408, 429, SMTP 4xx, connection
    /// refused); `retry_after` when the remote side said when.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (HTTP 4xx but 408 and 429, SMTP 5xx, a rejected
    /// recipient): dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn transient(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}
