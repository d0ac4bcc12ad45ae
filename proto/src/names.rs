//! Every subject, stream, consumer, KV bucket, header and metric prefix of
//! the suite. Services use these constants, never string literals.

use std::time::Duration;

/// Where producers publish Velociraptor queue rows (`alert()` output).
pub const SUBJECT_ALERTS: &str = "Server.Internal.Alerts";
/// Prefix of monitoring rows: `Monitoring.<ArtifactName>`.
pub const SUBJECT_MONITORING_PREFIX: &str = "Monitoring";
/// Prefix of accepted alerts: `talon.alerts.accepted.<partition>`.
pub const SUBJECT_ACCEPTED_PREFIX: &str = "talon.alerts.accepted";
/// Alerts that opened a dedup window.
pub const SUBJECT_UNIQUE: &str = "talon.alerts.unique";
/// Prefix of routed alerts: `Server.Monitor.Alerts.<channel-id>`.
pub const SUBJECT_NOTIFY_PREFIX: &str = "Server.Monitor.Alerts";
/// Prefix of in-app messages: `talon.inbox.<user>`.
pub const SUBJECT_INBOX_PREFIX: &str = "talon.inbox";
/// Every unique alert after enrichment, silenced ones too (`HISTORY`).
pub const SUBJECT_HISTORY: &str = "talon.alerts.history";
/// Prefix of delivery outcomes: `talon.deliveries.<alert-id>` (`DELIVERIES`).
pub const SUBJECT_DELIVERIES_PREFIX: &str = "talon.deliveries";
/// Prefix of triage events: `talon.triage.<alert-id>` (`TRIAGE`).
pub const SUBJECT_TRIAGE_PREFIX: &str = "talon.triage";
/// Prefix of dead letters: `talon.dlq.<stage>`.
pub const SUBJECT_DLQ_PREFIX: &str = "talon.dlq";
/// Prefix of the alerts a grouped channel collects until the group's next
/// message: `talon.groups.<channel-id>.<group-key>` (`GROUPS`).
pub const SUBJECT_GROUPS_PREFIX: &str = "talon.groups";

pub const STREAM_ALERTS: &str = "ALERTS";
pub const STREAM_MONITORING: &str = "MONITORING";
pub const STREAM_ACCEPTED: &str = "ACCEPTED";
pub const STREAM_UNIQUE: &str = "UNIQUE";
pub const STREAM_NOTIFY: &str = "NOTIFY";
pub const STREAM_INBOX: &str = "INBOX";
pub const STREAM_DLQ: &str = "DLQ";
pub const STREAM_HISTORY: &str = "HISTORY";
pub const STREAM_TRIAGE: &str = "TRIAGE";
pub const STREAM_DELIVERIES: &str = "DELIVERIES";
pub const STREAM_GROUPS: &str = "GROUPS";

/// Durable consumer of ingest on `ALERTS`.
pub const CONSUMER_INGEST: &str = "ingest";
/// Durable consumer of ingest's rules on `MONITORING`.
pub const CONSUMER_RULES: &str = "rules";
/// Durable consumer of enrich on `UNIQUE`.
pub const CONSUMER_ENRICH: &str = "enrich";

/// KV bucket of the client inventory.
pub const BUCKET_CLIENTS: &str = "talon_clients";
/// KV bucket of notify's delivery ledger.
pub const BUCKET_DELIVERIES: &str = "talon_deliveries";
/// KV bucket of the rules with state: one key's count, last sighting or
/// silence per entry (`<rule>.<key>`, both hashed), with an alert decided
/// and not yet known stored.
pub const BUCKET_RULES: &str = "talon_rules";
/// KV bucket of console sessions.
pub const BUCKET_SESSIONS: &str = "talon_sessions";
/// KV bucket of each user's inbox state (read up to, cleared up to).
pub const BUCKET_INBOX_STATE: &str = "talon_inbox_state";
/// Silences (`silence.<id>`, every revision kept) and enrich replicas' sync
/// reports (`sync.<replica>`).
pub const BUCKET_SILENCES: &str = "talon_silences";
/// Each group's progress: messages sent, the `GROUPS` sequence sent
/// through, the message in progress (`<channel-id>.<group-key>`).
pub const BUCKET_GROUPS: &str = "talon_groups";
/// Header of a `GROUPS` message: when notify took the alert into its group
/// (RFC 3339), what `group_wait` and a digest count from.
pub const HEADER_GROUPED_AT: &str = "Talon-Grouped-At";
/// Keep collected alerts this long at most (a weekly digest and its retries).
pub const MAX_AGE_GROUPS: Duration = Duration::from_secs(30 * 24 * 3600);

/// The subject dead letters of HTTP monitoring rows record:
/// `http:/v1/events/<ArtifactName>` (replayed to `Monitoring.<ArtifactName>`).
pub const HTTP_EVENTS_ORIGIN_PREFIX: &str = "http:/v1/events/";

/// JetStream's de-duplication header.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Set by ingest's HTTP edge on what it publishes to `Server.Internal.Alerts`,
/// so the alert's `source` says `http`.
pub const HEADER_SOURCE: &str = "Talon-Source";

/// The alert id of a message on `talon.inbox.<user>`.
pub const HEADER_ALERT_ID: &str = "Talon-Alert-Id";
/// Names a message on `talon.inbox.<user>` a group message (a
/// `GroupMessage`, not an Alert): `<group key>-<sequence>`
/// ([`inbox_group_ref`]).
pub const HEADER_GROUP: &str = "Talon-Group";

/// How long JetStream remembers a `Nats-Msg-Id` (at least 2 min).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Retention of `ALERTS`.
pub const MAX_AGE_ALERTS: Duration = Duration::from_secs(7 * 24 * 3600);
/// Retention of `MONITORING`.
pub const MAX_AGE_MONITORING: Duration = Duration::from_secs(24 * 3600);
/// Retention of `INBOX` and `DLQ`.
pub const MAX_AGE_INBOX: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MAX_AGE_DLQ: Duration = Duration::from_secs(30 * 24 * 3600);

/// A stage of the pipeline: what dead-letters an input, on
/// `talon.dlq.<stage>`, naming itself in the letter's `stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Ingest,
    /// ingest's rules, on monitoring rows.
    Rules,
    Dedup,
    Enrich,
    Notify,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Ingest,
        Stage::Rules,
        Stage::Dedup,
        Stage::Enrich,
        Stage::Notify,
    ];

    /// Its name in subjects and dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Rules => "rules",
            Stage::Dedup => "dedup",
            Stage::Enrich => "enrich",
            Stage::Notify => "notify",
        }
    }

    /// `talon.dlq.<stage>`
    pub fn dlq_subject(self) -> String {
        dlq_subject(self.as_str())
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a derived `Nats-Msg-Id` (or key) is for: ids derived from one input
/// for different purposes must differ, so each purpose hashes its input
/// under its own domain. The strings are part of every id already stored:
/// never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgIdDomain {
    /// A stage's dead letter of an input (`dlq-<stage>`), over the input's
    /// stream and sequence (the rules: over rule and row).
    DeadLetter(Stage),
    /// A dead letter that takes the place of an outbox entry dedup cannot
    /// publish.
    DedupOutbox,
    /// A rule's alert, over rule and row.
    Rule,
    /// An alert of `POST /v1/alerts`, over request key and index.
    Http,
    /// A dead letter of `POST /v1/alerts`.
    HttpDeadLetter,
    /// A row of `POST /v1/events/<Artifact>`.
    HttpEvents,
    /// A dead letter of `POST /v1/events/<Artifact>`.
    HttpEventsDeadLetter,
    /// A delivery's key in notify's ledger.
    Ledger,
    /// A chat service's thread or incident key cut to its limit.
    ChatKey,
    /// A dead letter published again by `talonctl dlq replay`.
    Replay,
    /// An alert taken into its group (`GROUPS`), over channel and alert id.
    Group,
    /// A dead letter of an alert whose group message could not be sent,
    /// over the `GROUPS` sequence.
    GroupDeadLetter,
}

impl MsgIdDomain {
    /// The domain's string, hashed with the input.
    pub fn as_str(self) -> &'static str {
        match self {
            MsgIdDomain::DeadLetter(Stage::Ingest) => "dlq-ingest",
            MsgIdDomain::DeadLetter(Stage::Rules) => "dlq-rules",
            MsgIdDomain::DeadLetter(Stage::Dedup) => "dlq-dedup",
            MsgIdDomain::DeadLetter(Stage::Enrich) => "dlq-enrich",
            MsgIdDomain::DeadLetter(Stage::Notify) => "dlq-notify",
            MsgIdDomain::DedupOutbox => "dlq-dedup-outbox",
            MsgIdDomain::Rule => "rule",
            MsgIdDomain::Http => "http",
            MsgIdDomain::HttpDeadLetter => "dlq-http",
            MsgIdDomain::HttpEvents => "http-events",
            MsgIdDomain::HttpEventsDeadLetter => "dlq-http-events",
            MsgIdDomain::Ledger => "ledger",
            MsgIdDomain::Group => "group",
            MsgIdDomain::GroupDeadLetter => "dlq-group",
            MsgIdDomain::ChatKey => "chat-key",
            MsgIdDomain::Replay => "replay",
        }
    }
}

/// Metric names (`talon_<service>_<what>_<unit>`).
pub mod metrics {
    /// Counter of monitoring rows read by the rules, by `outcome`: raised
    /// (at least one alert), unmatched (none), dead (dead-lettered).
    pub const INGEST_RULE_ROWS_TOTAL: &str = "talon_ingest_rule_rows_total";
    /// Counter of rule evaluations by `rule` and `outcome`: raised,
    /// unmatched, dead.
    pub const INGEST_RULES_TOTAL: &str = "talon_ingest_rules_total";
    /// Histogram of the time from pulling a batch of rows to acking it.
    pub const INGEST_RULES_BATCH_SECONDS: &str = "talon_ingest_rules_batch_seconds";
    /// Histogram of the number of rows in a batch.
    pub const INGEST_RULES_BATCH_SIZE: &str = "talon_ingest_rules_batch_size";
    /// Gauge: when the absent clock last judged the silences (Unix
    /// seconds); it stands still while rows wait for the rules.
    pub const INGEST_ABSENT_LAST_LOOK: &str = "talon_ingest_absent_last_look_seconds";
    /// Gauge of the keys an absent `rule` follows (clients that sent rows).
    pub const INGEST_ABSENT_KEYS: &str = "talon_ingest_absent_keys";

    /// Counter of NATS input by `outcome`: accepted, rejected, condition_false.
    pub const INGEST_ALERTS_TOTAL: &str = "talon_ingest_alerts_total";
    /// Counter of HTTP requests to the edge by `status`.
    pub const INGEST_HTTP_REQUESTS_TOTAL: &str = "talon_ingest_http_requests_total";
    /// Gauge: bytes in the `DLQ` stream (every service reports it).
    pub const DLQ_BYTES: &str = "talon_dlq_bytes";
    /// Gauge: dead letters in the `DLQ` stream (every service reports it).
    pub const DLQ_MESSAGES: &str = "talon_dlq_messages";
    /// Counter of HTTP items rejected, by `kind`.
    pub const INGEST_HTTP_REJECTED_ITEMS_TOTAL: &str = "talon_ingest_http_rejected_items_total";
    /// Histogram of the time from pulling a batch to acking it.
    pub const INGEST_BATCH_SECONDS: &str = "talon_ingest_batch_seconds";
    /// Histogram of the number of inputs in a batch.
    pub const INGEST_BATCH_SIZE: &str = "talon_ingest_batch_size";

    /// Counter of alerts by `outcome`: fresh, suppressed, unsuppressed.
    pub const DEDUP_ALERTS_TOTAL: &str = "talon_dedup_alerts_total";
    /// Gauge of windows not yet ended (as of the last sweep).
    pub const DEDUP_LIVE_WINDOWS: &str = "talon_dedup_live_windows";
    /// Gauge of the sled stores' size on disk.
    pub const DEDUP_STORE_BYTES: &str = "talon_dedup_store_bytes";
    /// Histogram of sled flush (group commit) latency.
    pub const DEDUP_FLUSH_SECONDS: &str = "talon_dedup_flush_seconds";
    /// Histogram of inputs per batch.
    pub const DEDUP_BATCH_SIZE: &str = "talon_dedup_batch_size";

    /// Counter of alerts by `outcome`: routed, unrouted, silenced,
    /// rejected.
    pub const ENRICH_ALERTS_TOTAL: &str = "talon_enrich_alerts_total";
    /// Counter of messages published per `channel`.
    pub const ENRICH_ROUTED_TOTAL: &str = "talon_enrich_routed_total";
    /// Counter of alerts each `silence` hid (from every channel, or from
    /// the channels it names).
    pub const ENRICH_SILENCED_TOTAL: &str = "talon_enrich_silenced_total";
    /// Gauge of the silences active now, as this replica holds them.
    pub const ENRICH_SILENCES_ACTIVE: &str = "talon_enrich_silences_active";
    /// Histogram of the time from pulling a batch to acking it.
    pub const ENRICH_BATCH_SECONDS: &str = "talon_enrich_batch_seconds";
    /// Histogram of inputs per batch.
    pub const ENRICH_BATCH_SIZE: &str = "talon_enrich_batch_size";

    /// Counter of delivery attempts by `channel` and `outcome`: sent,
    /// skipped, retry, dead.
    pub const NOTIFY_DELIVERIES_TOTAL: &str = "talon_notify_deliveries_total";
    /// Histogram of successful delivery time by `channel`.
    pub const NOTIFY_DELIVERY_SECONDS: &str = "talon_notify_delivery_seconds";
    /// Counter of retries scheduled by `channel`.
    pub const NOTIFY_RETRIES_TOTAL: &str = "talon_notify_retries_total";
    /// Counter of dead letters by `channel`.
    pub const NOTIFY_DEAD_LETTERS_TOTAL: &str = "talon_notify_dead_letters_total";
    /// Gauge of deliveries in progress by `channel`.
    pub const NOTIFY_IN_FLIGHT: &str = "talon_notify_in_flight";
    pub const NOTIFY_GROUPS_OPEN: &str = "talon_notify_groups_open";
    pub const NOTIFY_GROUP_MESSAGES_TOTAL: &str = "talon_notify_group_messages_total";
    pub const NOTIFY_GROUP_ALERTS: &str = "talon_notify_group_alerts";
    /// Counter of console logins by `outcome`: ok, refused.
    pub const CONSOLE_LOGINS_TOTAL: &str = "talon_console_logins_total";
}

/// `talon.alerts.accepted.<partition>`
pub fn accepted_subject(partition: u32) -> String {
    format!("{SUBJECT_ACCEPTED_PREFIX}.{partition}")
}

/// Durable consumer of the dedup replica that owns `partition`.
pub fn dedup_consumer(partition: u32) -> String {
    format!("dedup-{partition}")
}

/// `Server.Monitor.Alerts.<channel-id>`
pub fn notify_subject(channel: &str) -> String {
    format!("{SUBJECT_NOTIFY_PREFIX}.{channel}")
}

/// Durable consumer shared by every notify replica serving `channel`.
pub fn notify_consumer(channel: &str) -> String {
    format!("notify-{channel}")
}

/// `Monitoring.<ArtifactName>`
pub fn monitoring_subject(artifact: &str) -> String {
    format!("{SUBJECT_MONITORING_PREFIX}.{artifact}")
}

/// `talon.inbox.<user>`
pub fn inbox_subject(user: &str) -> String {
    format!("{SUBJECT_INBOX_PREFIX}.{user}")
}

/// `Nats-Msg-Id` of one alert in one user's inbox: a redelivered alert
/// never reaches the same user twice.
pub fn inbox_msg_id(alert_id: &str, user: &str) -> String {
    format!("{alert_id}:{user}")
}

/// The `Talon-Group` value of a group message: `<group key>-<sequence>`.
pub fn inbox_group_ref(group_key: &str, sequence: u64) -> String {
    format!("{group_key}-{sequence}")
}

/// `Nats-Msg-Id` of one group message in one user's inbox: a message sent
/// again never reaches the same user twice. Never an alert's
/// ([`inbox_msg_id`]): an alert id holds no `:`.
pub fn inbox_group_msg_id(group_key: &str, sequence: u64, user: &str) -> String {
    format!("group:{}:{user}", inbox_group_ref(group_key, sequence))
}

/// `talon.dlq.<stage>` for a stage named in a dead letter (see
/// [`Stage::dlq_subject`]).
pub fn dlq_subject(stage: &str) -> String {
    format!("{SUBJECT_DLQ_PREFIX}.{stage}")
}

/// Is `token` usable as one NATS subject token (channel ids, user names)?
pub fn is_subject_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Is `subject` one of the pipeline's inputs, where a replayed
/// dead letter may go: `Server.Internal.Alerts`, `Monitoring.<ArtifactName>`,
/// `talon.alerts.accepted.<partition>`, `talon.alerts.unique` or
/// `Server.Monitor.Alerts.<channel-id>`. Never `$JS.*`, `$KV.*`, `$SYS.*`,
/// an inbox, the DLQ itself, or anything else.
pub fn is_pipeline_input(subject: &str) -> bool {
    if subject == SUBJECT_ALERTS || subject == SUBJECT_UNIQUE {
        return true;
    }
    let under = |prefix: &str| {
        subject
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
    };
    if let Some(artifact) = under(SUBJECT_MONITORING_PREFIX) {
        return is_artifact_name(artifact);
    }
    if let Some(partition) = under(SUBJECT_ACCEPTED_PREFIX) {
        return partition
            .parse::<u32>()
            .is_ok_and(|p| p.to_string() == partition);
    }
    if let Some(channel) = under(SUBJECT_NOTIFY_PREFIX) {
        return is_subject_token(channel);
    }
    false
}

/// Is `name` a Velociraptor artifact name usable in `Monitoring.<name>`:
/// dot-separated subject tokens (`Linux.Detection.Honeyfiles`)?
pub fn is_artifact_name(name: &str) -> bool {
    name.split('.').all(is_subject_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_msg_id_domain_is_its_own_and_stays_what_it_was() {
        let domains = [
            MsgIdDomain::DeadLetter(Stage::Ingest),
            MsgIdDomain::DeadLetter(Stage::Rules),
            MsgIdDomain::DeadLetter(Stage::Dedup),
            MsgIdDomain::DeadLetter(Stage::Enrich),
            MsgIdDomain::DeadLetter(Stage::Notify),
            MsgIdDomain::DedupOutbox,
            MsgIdDomain::Rule,
            MsgIdDomain::Http,
            MsgIdDomain::HttpDeadLetter,
            MsgIdDomain::HttpEvents,
            MsgIdDomain::HttpEventsDeadLetter,
            MsgIdDomain::Ledger,
            MsgIdDomain::ChatKey,
            MsgIdDomain::Replay,
            MsgIdDomain::Group,
            MsgIdDomain::GroupDeadLetter,
        ];
        let names: std::collections::BTreeSet<&str> = domains.iter().map(|d| d.as_str()).collect();
        assert_eq!(names.len(), domains.len(), "no two domains share a string");
        // Stored ids depend on these strings.
        assert_eq!(
            MsgIdDomain::DeadLetter(Stage::Enrich).as_str(),
            "dlq-enrich"
        );
        assert_eq!(MsgIdDomain::Http.as_str(), "http");
        assert_eq!(MsgIdDomain::Replay.as_str(), "replay");
    }

    #[test]
    fn only_the_pipelines_inputs_take_replays() {
        for ok in [
            "Server.Internal.Alerts",
            "Monitoring.Linux.Detection.Honeyfiles",
            "talon.alerts.accepted.0",
            "talon.alerts.accepted.15",
            "talon.alerts.unique",
            "Server.Monitor.Alerts.email-soc",
        ] {
            assert!(is_pipeline_input(ok), "{ok}");
        }
        for refused in [
            "$JS.API.STREAM.PURGE.ALERTS",
            "$KV.talon_sessions.x",
            "$SYS.REQ.SERVER.PING",
            "talon.inbox.alice",
            "talon.dlq.ingest",
            "talon.alerts.accepted.x",
            "talon.alerts.accepted.01",
            "talon.alerts.accepted.*",
            "Server.Monitor.Alerts.a.b",
            "Server.Monitor.Alerts.>",
            "Monitoring.",
            "Monitoring.A..B",
            "Server.Internal.Alerts.x",
            "",
            "http:/v1/alerts",
        ] {
            assert!(!is_pipeline_input(refused), "{refused}");
        }
    }

    #[test]
    fn subjects_are_built_from_their_prefixes() {
        assert_eq!(accepted_subject(3), "talon.alerts.accepted.3");
        assert_eq!(
            notify_subject("email-soc"),
            "Server.Monitor.Alerts.email-soc"
        );
        assert_eq!(
            monitoring_subject("Linux.Detection.Honeyfiles"),
            "Monitoring.Linux.Detection.Honeyfiles"
        );
        assert_eq!(Stage::Ingest.dlq_subject(), "talon.dlq.ingest");
        let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(stages, ["ingest", "rules", "dedup", "enrich", "notify"]);
        assert_eq!(inbox_subject("alice"), "talon.inbox.alice");
        let key = "0123456789abcdef0123456789abcdef";
        assert_eq!(inbox_group_ref(key, 2), format!("{key}-2"));
        assert_eq!(
            inbox_group_msg_id(key, 2, "alice"),
            format!("group:{key}-2:alice")
        );
        assert_ne!(
            inbox_group_msg_id(key, 2, "alice"),
            inbox_msg_id(&inbox_group_ref(key, 2), "alice")
        );
    }

    #[test]
    fn subject_tokens_exclude_wildcards_and_dots() {
        for ok in ["email-soc", "inbox", "pd_1"] {
            assert!(is_subject_token(ok), "{ok}");
        }
        for bad in ["", "a.b", "*", ">", "a b"] {
            assert!(!is_subject_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn artifact_names_are_dotted_tokens() {
        for ok in ["Linux.Detection.Honeyfiles", "Generic.Client.Stats", "A"] {
            assert!(is_artifact_name(ok), "{ok}");
        }
        for bad in ["", "Linux..Foo", ".A", "A.", "A.*", "A.>", "A B"] {
            assert!(!is_artifact_name(bad), "{bad:?}");
        }
    }
}
