//! The end-to-end test harness, by role: `nats` (a real nats-server per
//! test, its users and clients), `suite` (talon's services as processes or
//! in-process), `receiver` (web-hook receivers), `smtp` (a real SMTP
//! server), `cluster` (nats-server from the project's own files, the
//! three-node cluster), `deploy` (the compose files and the suite as
//! compose runs it), `console` (the console's HTTP client and browser),
//! `ports` (ports without races), `bench` (what the benchmarks share).

use async_nats::jetstream;

pub mod alertmanager;
pub mod bench;
pub mod cluster;
pub mod console;
pub mod deploy;
pub mod nats;
pub mod ports;
pub mod receiver;
pub mod smtp;
pub mod suite;

pub use nats::*;
pub use suite::*;

/// A deterministic pseudo-random sequence (xorshift64), so a test run
/// replays from its seed. The seed must not be 0.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n` (near enough for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An Alert as ingest makes it, received at `received_at_ms` (ms since the
/// epoch), for feeding dedup directly.
pub fn accepted_alert(
    id: &str,
    name: &str,
    received_at_ms: i64,
    dedup_seconds: i64,
) -> talon_proto::Alert {
    use chrono::TimeZone;
    let at = chrono::Utc
        .timestamp_millis_opt(received_at_ms)
        .single()
        .expect("a valid time");
    talon_proto::Alert {
        id: id.to_owned(),
        received_at: at,
        name: name.to_owned(),
        timestamp: at,
        client_id: Some("server".into()),
        dedup_seconds,
        ..talon_proto::Alert::sample()
    }
}

/// Publishes `alert` on `talon.alerts.accepted.<partition>` with its id as
/// `Nats-Msg-Id`, and waits for the ack.
pub async fn publish_accepted(
    js: &jetstream::Context,
    partition: u32,
    alert: &talon_proto::Alert,
) -> u64 {
    js.send_publish(
        talon_proto::names::accepted_subject(partition),
        jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(alert).expect("serializes").into())
            .message_id(&alert.id),
    )
    .await
    .expect("publish")
    .await
    .expect("ack")
    .sequence
}

/// Publishes `alert` on `talon.alerts.unique` as dedup would, with
/// `msg_id` as its `Nats-Msg-Id`, and waits for the ack.
pub async fn publish_unique(js: &jetstream::Context, alert: &talon_proto::Alert, msg_id: &str) {
    js.send_publish(
        talon_proto::names::SUBJECT_UNIQUE,
        jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(alert).expect("serializes").into())
            .message_id(msg_id),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
}

/// Publishes `alert` as enrich would for `channel`.
pub async fn publish_routed(js: &jetstream::Context, channel: &str, alert: &talon_proto::Alert) {
    let mut alert = alert.clone();
    alert.channel = Some(channel.to_owned());
    js.send_publish(
        talon_proto::names::notify_subject(channel),
        jetstream::message::PublishMessage::build()
            .payload(serde_json::to_vec(&alert).expect("serializes").into())
            .message_id(format!("{}:{channel}", alert.id)),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
}
