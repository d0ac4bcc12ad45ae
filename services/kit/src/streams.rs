//! The suite's streams and consumers, created idempotently by the
//! service that reads them and by `talonctl init`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use talon_proto::names::*;

/// Where and how large the suite's streams are: `[nats].stream_replicas`
/// copies of each, `[nats].dlq_max_bytes` for `DLQ`, and
/// `[console].history_days` for `HISTORY` and `TRIAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    pub replicas: usize,
    pub dlq_max_bytes: i64,
    pub history: Duration,
}

impl From<&crate::Config> for Topology {
    fn from(config: &crate::Config) -> Topology {
        Topology {
            replicas: config.nats.stream_replicas,
            dlq_max_bytes: config.nats.dlq_max_bytes,
            history: Duration::from_secs(u64::from(config.console.history_days) * 86_400),
        }
    }
}

/// `replicas` copies, and the default sizes and ages (tests, tools).
impl From<usize> for Topology {
    fn from(replicas: usize) -> Topology {
        Topology {
            replicas,
            dlq_max_bytes: crate::config::DEFAULT_DLQ_MAX_BYTES,
            history: Duration::from_secs(
                u64::from(crate::config::ConsoleConfig::default().history_days) * 86_400,
            ),
        }
    }
}

/// One of the suite's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Alerts,
    Monitoring,
    Accepted,
    Unique,
    Notify,
    Inbox,
    Dlq,
    History,
    Triage,
    Deliveries,
    Groups,
}

impl Stream {
    pub const ALL: [Stream; 11] = [
        Stream::Alerts,
        Stream::Monitoring,
        Stream::Accepted,
        Stream::Unique,
        Stream::Notify,
        Stream::Inbox,
        Stream::Dlq,
        Stream::History,
        Stream::Triage,
        Stream::Deliveries,
        Stream::Groups,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Alerts => STREAM_ALERTS,
            Stream::Monitoring => STREAM_MONITORING,
            Stream::Accepted => STREAM_ACCEPTED,
            Stream::Unique => STREAM_UNIQUE,
            Stream::Notify => STREAM_NOTIFY,
            Stream::Inbox => STREAM_INBOX,
            Stream::Dlq => STREAM_DLQ,
            Stream::History => STREAM_HISTORY,
            Stream::Triage => STREAM_TRIAGE,
            Stream::Deliveries => STREAM_DELIVERIES,
            Stream::Groups => STREAM_GROUPS,
        }
    }

    /// The stream's configuration: file storage, `replicas` copies, a
    /// `Nats-Msg-Id` window of `DUPLICATE_WINDOW`, and the retention of the
    /// table in docs/pipeline.md; `DLQ` also keeps at most `dlq_max_bytes`,
    /// dropping its oldest letters first.
    pub fn config(self, topology: impl Into<Topology>) -> stream::Config {
        let topology = topology.into();
        let (subject, retention, max_age) = match self {
            Stream::Alerts => (
                SUBJECT_ALERTS.to_owned(),
                stream::RetentionPolicy::Limits,
                MAX_AGE_ALERTS,
            ),
            Stream::Monitoring => (
                format!("{SUBJECT_MONITORING_PREFIX}.>"),
                stream::RetentionPolicy::Limits,
                MAX_AGE_MONITORING,
            ),
            Stream::Accepted => (
                format!("{SUBJECT_ACCEPTED_PREFIX}.*"),
                stream::RetentionPolicy::WorkQueue,
                Duration::ZERO,
            ),
            Stream::Unique => (
                SUBJECT_UNIQUE.to_owned(),
                stream::RetentionPolicy::WorkQueue,
                Duration::ZERO,
            ),
            Stream::Notify => (
                format!("{SUBJECT_NOTIFY_PREFIX}.*"),
                stream::RetentionPolicy::WorkQueue,
                Duration::ZERO,
            ),
            Stream::Inbox => (
                format!("{SUBJECT_INBOX_PREFIX}.*"),
                stream::RetentionPolicy::Limits,
                MAX_AGE_INBOX,
            ),
            Stream::Dlq => (
                format!("{SUBJECT_DLQ_PREFIX}.*"),
                stream::RetentionPolicy::Limits,
                MAX_AGE_DLQ,
            ),
            Stream::History => (
                SUBJECT_HISTORY.to_owned(),
                stream::RetentionPolicy::Limits,
                topology.history,
            ),
            // As long as HISTORY: an alert's triage lives as long as it.
            Stream::Triage => (
                format!("{SUBJECT_TRIAGE_PREFIX}.*"),
                stream::RetentionPolicy::Limits,
                topology.history,
            ),
            Stream::Deliveries => (
                format!("{SUBJECT_DELIVERIES_PREFIX}.*"),
                stream::RetentionPolicy::Limits,
                topology.history,
            ),
            // Kept until the group's message is sent (then purged), at most
            // a month.
            Stream::Groups => (
                format!("{SUBJECT_GROUPS_PREFIX}.*.*"),
                stream::RetentionPolicy::Limits,
                MAX_AGE_GROUPS,
            ),
        };
        let max_bytes = match self {
            Stream::Dlq => topology.dlq_max_bytes,
            _ => -1,
        };
        stream::Config {
            name: self.name().to_owned(),
            subjects: vec![subject],
            retention,
            max_age,
            max_bytes,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: topology.replicas.max(1),
            duplicate_window: DUPLICATE_WINDOW,
            // notify reads a group's alerts by subject and sequence.
            allow_direct: self == Stream::Groups,
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot create or update stream {stream}: {source}")]
    Stream {
        stream: &'static str,
        source: jetstream::context::CreateStreamError,
    },
    #[error("cannot create consumer {consumer} on {stream}: {source}")]
    Consumer {
        stream: &'static str,
        consumer: String,
        source: jetstream::stream::ConsumerError,
    },
    #[error("cannot update consumer {consumer} on {stream}: {source}")]
    ConsumerUpdate {
        stream: &'static str,
        consumer: String,
        source: jetstream::stream::ConsumerUpdateError,
    },
    #[error("cannot read consumer {consumer} on {stream}: {reason}")]
    ConsumerGet {
        stream: &'static str,
        consumer: String,
        reason: String,
    },
    #[error("cannot create key-value bucket {bucket}: {reason}")]
    Bucket {
        bucket: &'static str,
        reason: String,
    },
    #[error("cannot read stream {stream}: {source}")]
    Get {
        stream: &'static str,
        source: jetstream::context::GetStreamError,
    },
}

/// Creates `stream` or brings its configuration up to date.
pub async fn ensure_stream(
    js: &jetstream::Context,
    which: Stream,
    topology: impl Into<Topology>,
) -> Result<jetstream::stream::Stream, StreamError> {
    js.create_or_update_stream(which.config(topology))
        .await
        .map_err(|source| StreamError::Stream {
            stream: which.name(),
            source,
        })?;
    js.get_stream(which.name())
        .await
        .map_err(|source| StreamError::Get {
            stream: which.name(),
            source,
        })
}

/// The client inventory bucket `talon_clients` (key: client id; value: a
/// `ClientInfo` as JSON), created when missing.
pub async fn ensure_clients_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<jetstream::kv::Store, StreamError> {
    ensure_bucket(
        js,
        BUCKET_CLIENTS,
        "talon client inventory: client id -> {client_id, hostname, fqdn, os, labels}",
        Duration::ZERO,
        replicas,
    )
    .await
}

/// The silences bucket `talon_silences` (`silence.<id>`: a `Silence`, its
/// last 64 revisions kept; `sync.<replica>`: an enrich replica's
/// `SilenceSync`), created when missing.
pub async fn ensure_silences_bucket(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<jetstream::kv::Store, StreamError> {
    ensure_bucket_with_history(
        js,
        BUCKET_SILENCES,
        "talon silences: silence.<id> -> Silence (every revision kept), sync.<enrich replica> -> what it applied",
        64,
        replicas,
    )
    .await
}

/// Opens the key-value bucket `bucket`, creating it when missing (one value
/// a key, file storage, `replicas` copies, entries kept for `max_age`; zero
/// keeps them for ever).
pub async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: &'static str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<jetstream::kv::Store, StreamError> {
    create_bucket(js, bucket, description, max_age, 1, replicas).await
}

/// [`ensure_bucket`] keeping the last `history` values of each key, for
/// ever.
pub async fn ensure_bucket_with_history(
    js: &jetstream::Context,
    bucket: &'static str,
    description: &str,
    history: i64,
    replicas: usize,
) -> Result<jetstream::kv::Store, StreamError> {
    create_bucket(js, bucket, description, Duration::ZERO, history, replicas).await
}

async fn create_bucket(
    js: &jetstream::Context,
    bucket: &'static str,
    description: &str,
    max_age: Duration,
    history: i64,
    replicas: usize,
) -> Result<jetstream::kv::Store, StreamError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.create_key_value(jetstream::kv::Config {
        bucket: bucket.to_owned(),
        description: description.to_owned(),
        history,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| StreamError::Bucket {
        bucket,
        reason: e.to_string(),
    })
}

/// Creates every stream of the suite.
pub async fn ensure_all(
    js: &jetstream::Context,
    topology: impl Into<Topology>,
) -> Result<(), StreamError> {
    let topology = topology.into();
    for which in Stream::ALL {
        ensure_stream(js, which, topology).await?;
    }
    Ok(())
}

/// How long a consumer waits for an ack before it redelivers.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// The ack wait of notify's consumers: a replica holding a delivery tells
/// JetStream it is in progress every 10 s, so this passes only when the
/// replica died or was cut off from NATS; a cut shorter than this ends in
/// the delivery recorded and acked by its holder, never in a second send
/// by another replica (notify's `ledger.rs`).
pub const ACK_WAIT_NOTIFY: Duration = Duration::from_secs(2 * ACK_WAIT.as_secs());

/// A durable pull consumer of the suite: which stream, its name, its filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: Stream,
    pub durable: String,
    pub filter: String,
    /// Inputs the consumer may hand out unacked.
    pub max_ack_pending: i64,
    /// How long an input handed out waits for its ack before it is
    /// redelivered.
    pub ack_wait: Duration,
    /// Deliveries after which JetStream gives up on an input. The stages
    /// dead-letter an input well before (ingest and enrich at
    /// `pipeline::DEAD_AFTER`, notify at its retry deadline), so this is
    /// the backstop of the backstop.
    pub max_deliver: i64,
}

/// `max_deliver` of the stateless stages' consumers.
pub const MAX_DELIVER_PIPELINE: i64 = 2 * crate::pipeline::DEAD_AFTER as i64;
/// `max_deliver` of dedup's consumers: dedup recreates its consumer at each
/// start and after a failed batch, so counts start again; an input is only
/// given up on in a stretch of failures far past any outage.
pub const MAX_DELIVER_DEDUP: i64 = 1_000;
/// `max_deliver` of notify's consumers: a failing delivery is retried with
/// backoff (at most every 5 minutes) until its channel's retry deadline,
/// then dead-lettered; this is far past a day of that.
pub const MAX_DELIVER_NOTIFY: i64 = 10_000;

impl ConsumerSpec {
    /// ingest on `Server.Internal.Alerts`.
    pub fn ingest() -> ConsumerSpec {
        ConsumerSpec {
            stream: Stream::Alerts,
            durable: CONSUMER_INGEST.to_owned(),
            filter: SUBJECT_ALERTS.to_owned(),
            max_ack_pending: 10_000,
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER_PIPELINE,
        }
    }

    /// ingest's rules on `Monitoring.>`.
    pub fn rules() -> ConsumerSpec {
        ConsumerSpec {
            stream: Stream::Monitoring,
            durable: CONSUMER_RULES.to_owned(),
            filter: format!("{SUBJECT_MONITORING_PREFIX}.>"),
            max_ack_pending: 10_000,
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER_PIPELINE,
        }
    }

    /// The dedup replica owning `partition`.
    pub fn dedup(partition: u32) -> ConsumerSpec {
        ConsumerSpec {
            stream: Stream::Accepted,
            durable: dedup_consumer(partition),
            filter: accepted_subject(partition),
            max_ack_pending: 10_000,
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER_DEDUP,
        }
    }

    /// enrich on `talon.alerts.unique`.
    pub fn enrich() -> ConsumerSpec {
        ConsumerSpec {
            stream: Stream::Unique,
            durable: CONSUMER_ENRICH.to_owned(),
            filter: SUBJECT_UNIQUE.to_owned(),
            max_ack_pending: 10_000,
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER_PIPELINE,
        }
    }

    /// The notify replicas serving `channel`.
    pub fn notify(channel: &str) -> ConsumerSpec {
        ConsumerSpec {
            stream: Stream::Notify,
            durable: notify_consumer(channel),
            filter: notify_subject(channel),
            max_ack_pending: 1_000,
            ack_wait: ACK_WAIT_NOTIFY,
            max_deliver: MAX_DELIVER_NOTIFY,
        }
    }
}

impl ConsumerSpec {
    /// The consumer's configuration, delivering from `start` (a stream
    /// sequence) or from the beginning.
    pub fn config(&self, start: Option<u64>) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.filter.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: self.max_ack_pending,
            max_deliver: self.max_deliver,
            deliver_policy: match start {
                Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
                None => consumer::DeliverPolicy::All,
            },
            ..Default::default()
        }
    }
}

/// The consumer of `spec`, created with its stream when missing; an existing
/// consumer is used as it is (where it starts, what it has acked), but for
/// its `max_deliver` and `ack_wait`, which are brought to the spec's
/// (consumers made by earlier releases had other ones). Calling it again is
/// harmless.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    topology: impl Into<Topology>,
) -> Result<consumer::PullConsumer, StreamError> {
    let stream = ensure_stream(js, spec.stream, topology).await?;
    if let Ok(mut existing) = stream
        .get_consumer::<consumer::pull::Config>(&spec.durable)
        .await
    {
        let current = &existing.cached_info().config;
        if current.max_deliver == spec.max_deliver && current.ack_wait == spec.ack_wait {
            return Ok(existing);
        }
        let mut config = current.clone();
        config.max_deliver = spec.max_deliver;
        config.ack_wait = spec.ack_wait;
        let _ = existing.info().await;
        stream
            .update_consumer(config)
            .await
            .map_err(|source| StreamError::ConsumerUpdate {
                stream: spec.stream.name(),
                consumer: spec.durable.clone(),
                source,
            })?;
        return stream
            .get_consumer::<consumer::pull::Config>(&spec.durable)
            .await
            .map_err(|e| StreamError::ConsumerGet {
                stream: spec.stream.name(),
                consumer: spec.durable.clone(),
                reason: e.to_string(),
            });
    }
    stream
        .create_consumer(spec.config(None))
        .await
        .map_err(|source| StreamError::Consumer {
            stream: spec.stream.name(),
            consumer: spec.durable.clone(),
            source,
        })
}

/// Every consumer the suite described by `config` uses: ingest's, the rules'
/// (when there are rules), one dedup consumer per partition, enrich's, and
/// one notify consumer per channel.
pub fn suite_consumers(config: &crate::Config) -> Vec<ConsumerSpec> {
    let mut specs = vec![ConsumerSpec::ingest()];
    if !config.rules.is_empty() {
        specs.push(ConsumerSpec::rules());
    }
    specs.extend((0..config.ingest.partitions).map(ConsumerSpec::dedup));
    specs.push(ConsumerSpec::enrich());
    specs.extend(config.channels.iter().map(|c| ConsumerSpec::notify(&c.id)));
    specs
}

/// `talonctl init`: every stream and consumer of the suite.
pub async fn ensure_suite(
    js: &jetstream::Context,
    config: &crate::Config,
) -> Result<(), StreamError> {
    let topology = Topology::from(config);
    ensure_all(js, topology).await?;
    ensure_clients_bucket(js, topology.replicas).await?;
    for spec in suite_consumers(config) {
        ensure_consumer(js, &spec, topology).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dlq_is_capped_and_it_drops_its_oldest() {
        let topology = Topology {
            dlq_max_bytes: 64 << 20,
            ..Topology::from(1)
        };
        for which in Stream::ALL {
            let cfg = which.config(topology);
            let expected = if which == Stream::Dlq { 64 << 20 } else { -1 };
            assert_eq!(cfg.max_bytes, expected, "{which:?}");
            assert_eq!(cfg.discard, stream::DiscardPolicy::Old);
        }
        assert_eq!(Stream::Dlq.config(1).max_bytes, 1 << 30, "1 GiB by default");
    }

    #[test]
    fn work_queue_streams_are_the_ones_the_table_says() {
        for which in Stream::ALL {
            let cfg = which.config(3);
            assert_eq!(cfg.num_replicas, 3);
            assert_eq!(cfg.storage, stream::StorageType::File);
            assert!(cfg.duplicate_window >= Duration::from_secs(120));
            let work_queue = matches!(which, Stream::Accepted | Stream::Unique | Stream::Notify);
            assert_eq!(
                cfg.retention == stream::RetentionPolicy::WorkQueue,
                work_queue,
                "{which:?}"
            );
        }
        assert_eq!(
            Stream::Alerts.config(1).max_age,
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(
            Stream::Monitoring.config(1).subjects,
            vec!["Monitoring.>".to_owned()]
        );
    }

    #[test]
    fn each_consumer_filter_lies_inside_its_stream() {
        let specs = [
            ConsumerSpec::ingest(),
            ConsumerSpec::rules(),
            ConsumerSpec::dedup(2),
            ConsumerSpec::enrich(),
            ConsumerSpec::notify("email-soc"),
        ];
        for spec in specs {
            let subject = &spec.stream.config(1).subjects[0];
            let prefix = subject.trim_end_matches(['*', '>']);
            assert!(
                spec.filter.starts_with(prefix),
                "{spec:?} outside {subject}"
            );
        }
    }
}
