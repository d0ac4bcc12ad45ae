//! Silences, compiled and cached: the KV bucket `talon_silences` watched
//! and held in memory, so deciding whether an alert is silenced costs no
//! round trip. enrich applies them; the console lists, previews and
//! writes them.
//!
//! A matcher's field has one value or none (`name`, `hostname`, ...), or
//! several (`labels`; `context.<key>` when the key repeats; `channel`, one
//! per channel the alert is routed to, see [`Silences::apply`]). A missing
//! value is the empty string, as in Alertmanager: `hostname != "x"` holds
//! for an alert without a hostname, `hostname = ""` only for one without.
//! `=` and `=~` hold when some value matches; `!=` and `!~` when none
//! does. Regexes match the whole value (`^(?:…)$`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv::Operation};
use chrono::{DateTime, Utc};
use regex::Regex;
use talon_proto::silence::{CONTEXT_PREFIX, SILENCE_FIELDS, SILENCE_KEY_PREFIX, SYNC_KEY_PREFIX};
use talon_proto::{Alert, MatchOp, Matcher, Silence, SilenceState, SilenceSync};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Matchers in one silence, at most.
pub const MAX_MATCHERS: usize = 32;
/// Bytes of a matcher's value (or regex), at most.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Bytes of a `context.<key>` field, at most.
pub const MAX_FIELD_BYTES: usize = 256;
/// Bytes of a comment, at most.
pub const MAX_COMMENT_BYTES: usize = 4096;
/// A compiled regex's size, at most (the `regex` crate's own limit is
/// 10 MiB).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A field of an alert a silence matcher or a channel's `group_by` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    ClientId,
    Hostname,
    Fqdn,
    Labels,
    Artifact,
    ArtifactType,
    Severity,
    Source,
    OrgId,
    Channel,
    Context(String),
}

impl Field {
    pub fn parse(field: &str) -> Result<Field, String> {
        if let Some(key) = field.strip_prefix(CONTEXT_PREFIX) {
            if key.is_empty() || field.len() > MAX_FIELD_BYTES || key.contains(['\r', '\n']) {
                return Err(format!(
                    "field {:?}: a context key is 1 to {} bytes on one line",
                    cut(field),
                    MAX_FIELD_BYTES - CONTEXT_PREFIX.len()
                ));
            }
            return Ok(Field::Context(key.to_owned()));
        }
        Ok(match field {
            "name" => Field::Name,
            "client_id" => Field::ClientId,
            "hostname" => Field::Hostname,
            "fqdn" => Field::Fqdn,
            "labels" => Field::Labels,
            "artifact" => Field::Artifact,
            "artifact_type" => Field::ArtifactType,
            "severity" => Field::Severity,
            "source" => Field::Source,
            "org_id" => Field::OrgId,
            "channel" => Field::Channel,
            other => {
                return Err(format!(
                    "field {:?}: one of {} or context.<key>",
                    cut(other),
                    SILENCE_FIELDS.join(", ")
                ))
            }
        })
    }

    /// The field's values on `alert` routed to `channel`; none stands for
    /// the empty string.
    pub fn values<'a>(&self, alert: &'a Alert, channel: &'a str, out: &mut Vec<&'a str>) {
        let client = alert.client.as_ref();
        let one = match self {
            Field::Name => Some(alert.name.as_str()),
            Field::ClientId => alert.client_id.as_deref(),
            Field::Hostname => client.and_then(|c| c.hostname.as_deref()),
            Field::Fqdn => client.and_then(|c| c.fqdn.as_deref()),
            Field::Artifact => alert.effective_artifact(),
            Field::ArtifactType => alert.effective_artifact_type(),
            Field::Severity => alert.severity.as_deref(),
            Field::Source => Some(alert.source.as_str()),
            Field::OrgId => alert.org_id.as_deref(),
            Field::Channel => Some(channel),
            Field::Labels => {
                out.extend(
                    client
                        .iter()
                        .flat_map(|c| c.labels.iter().map(String::as_str)),
                );
                None
            }
            Field::Context(key) => {
                out.extend(
                    alert
                        .context
                        .iter()
                        .flatten()
                        .filter(|e| &e.key == key)
                        .map(|e| e.value.as_str()),
                );
                None
            }
        };
        out.extend(one);
        if out.is_empty() {
            out.push("");
        }
    }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

#[derive(Debug, Clone)]
struct Rule {
    field: Field,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

impl Rule {
    fn holds_for(&self, value: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(value),
            None => self.value == value,
        }
    }

    fn matches(&self, alert: &Alert, channel: &str) -> bool {
        let mut values = Vec::new();
        self.field.values(alert, channel, &mut values);
        let any = values.iter().any(|v| self.holds_for(v));
        match self.op {
            MatchOp::Equal | MatchOp::Regex => any,
            MatchOp::NotEqual | MatchOp::NotRegex => !any,
        }
    }
}

/// A silence's matchers, checked and compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    rules: Vec<Rule>,
}

impl Compiled {
    /// Checks `matchers` as a silence must have them: 1 to [`MAX_MATCHERS`],
    /// known fields, values within [`MAX_VALUE_BYTES`], regexes that
    /// compile, and at least one matcher that an empty value does not
    /// satisfy, so no silence hides every alert.
    pub fn new(matchers: &[Matcher]) -> Result<Compiled, String> {
        if matchers.is_empty() {
            return Err("matchers: at least one".into());
        }
        if matchers.len() > MAX_MATCHERS {
            return Err(format!("matchers: at most {MAX_MATCHERS}"));
        }
        let mut rules = Vec::with_capacity(matchers.len());
        for (i, m) in matchers.iter().enumerate() {
            let field = Field::parse(&m.field).map_err(|e| format!("matchers[{i}]: {e}"))?;
            if m.value.len() > MAX_VALUE_BYTES {
                return Err(format!(
                    "matchers[{i}]: the value is over {MAX_VALUE_BYTES} bytes"
                ));
            }
            let regex = match m.op {
                MatchOp::Regex | MatchOp::NotRegex => Some(
                    regex::RegexBuilder::new(&format!("^(?:{})$", m.value))
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| {
                            let first = e.to_string();
                            let first = first.lines().last().unwrap_or_default().trim().to_owned();
                            format!("matchers[{i}]: not a regular expression: {first}")
                        })?,
                ),
                MatchOp::Equal | MatchOp::NotEqual => None,
            };
            rules.push(Rule {
                field,
                op: m.op,
                value: m.value.clone(),
                regex,
            });
        }
        let compiled = Compiled { rules };
        if compiled.rules.iter().all(|r| {
            let holds = r.holds_for("");
            match r.op {
                MatchOp::Equal | MatchOp::Regex => holds,
                MatchOp::NotEqual | MatchOp::NotRegex => !holds,
            }
        }) {
            return Err(
                "matchers: each one also matches an empty value, so the silence would hide every alert; add one that names something (e.g. name = \"...\")"
                    .into(),
            );
        }
        Ok(compiled)
    }

    /// Whether every matcher holds for `alert` sent to `channel` (`""` for
    /// none).
    pub fn matches(&self, alert: &Alert, channel: &str) -> bool {
        self.rules.iter().all(|r| r.matches(alert, channel))
    }

    /// Whether a matcher names the channel: then the silence is decided
    /// per channel.
    pub fn per_channel(&self) -> bool {
        self.rules.iter().any(|r| r.field == Field::Channel)
    }
}

/// Checks a silence about to be written: its matchers ([`Compiled::new`]),
/// a comment, and a time range that ends after it starts, after `now`, and
/// at most `max` after the later of its start and `now`.
pub fn check(silence: &Silence, now: DateTime<Utc>, max: Duration) -> Result<Compiled, String> {
    let compiled = Compiled::new(&silence.matchers)?;
    let comment = silence.comment.trim();
    if comment.is_empty() {
        return Err("comment: say why (required)".into());
    }
    if silence.comment.len() > MAX_COMMENT_BYTES {
        return Err(format!("comment: at most {MAX_COMMENT_BYTES} bytes"));
    }
    if silence.ends_at <= now {
        return Err("ends_at: must be in the future".into());
    }
    if silence.ends_at <= silence.starts_at {
        return Err("ends_at: must be after starts_at".into());
    }
    let from = silence.starts_at.max(now);
    let longest = chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX);
    if silence.ends_at - from > longest {
        return Err(format!(
            "ends_at: a silence lasts at most {} days ([console].silence_max_days)",
            max.as_secs() / 86_400
        ));
    }
    Ok(compiled)
}

/// What the silences say about one alert.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// The active silences that hid it from at least one channel (or
    /// matched it when it was routed nowhere), by id.
    pub silenced_by: Vec<String>,
    /// The channels it still goes to.
    pub channels: Vec<String>,
}

/// One silence as the cache holds it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub silence: Silence,
    /// The bucket revision it was read at (for an edit's compare-and-set).
    pub revision: u64,
    /// None when its matchers do not compile (written by hand into the
    /// bucket, say): it then hides nothing.
    compiled: Option<Arc<Compiled>>,
}

#[derive(Default)]
struct State {
    silences: BTreeMap<String, Entry>,
    syncs: BTreeMap<String, SilenceSync>,
    /// The newest revision of a silence applied.
    revision: u64,
}

/// The silences of `talon_silences`, kept in step with the bucket by
/// [`Silences::follow`].
#[derive(Clone)]
pub struct Silences {
    state: Arc<RwLock<State>>,
    changed: watch::Sender<u64>,
}

impl Default for Silences {
    fn default() -> Self {
        Silences {
            state: Arc::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Silences {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Every silence, expired ones too, by id.
    pub fn list(&self) -> Vec<Entry> {
        self.read().silences.values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.read().silences.get(id).cloned()
    }

    /// The enrich replicas' sync reports, by replica.
    pub fn syncs(&self) -> Vec<SilenceSync> {
        self.read().syncs.values().cloned().collect()
    }

    /// The newest revision of a silence in the cache.
    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    /// Silences active at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> usize {
        self.read()
            .silences
            .values()
            .filter(|e| e.compiled.is_some() && e.silence.state(now) == SilenceState::Active)
            .count()
    }

    /// A receiver that sees the revision each time a silence changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies the silences active at `now` to `alert`, routed to
    /// `channels`: a silence whose matchers name the channel hides the
    /// alert from the channels it matches, any other hides it from all.
    pub fn apply(&self, alert: &Alert, channels: &[String], now: DateTime<Utc>) -> Verdict {
        let state = self.read();
        apply(
            state.silences.values().filter_map(|e| {
                let c = e.compiled.as_ref()?;
                (e.silence.state(now) == SilenceState::Active).then_some((&e.silence.id, &**c))
            }),
            alert,
            channels,
        )
    }

    /// Records a bucket entry (a silence or a sync report).
    pub fn record(&self, key: &str, revision: u64, operation: Operation, value: &[u8]) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(replica) = key.strip_prefix(SYNC_KEY_PREFIX) {
            match (operation, serde_json::from_slice::<SilenceSync>(value)) {
                (Operation::Put, Ok(sync)) => {
                    state.syncs.insert(replica.to_owned(), sync);
                }
                _ => {
                    state.syncs.remove(replica);
                }
            }
            return;
        }
        let Some(id) = key.strip_prefix(SILENCE_KEY_PREFIX) else {
            return;
        };
        match operation {
            Operation::Put => match serde_json::from_slice::<Silence>(value) {
                Ok(silence) if silence.id == id => {
                    let compiled = match Compiled::new(&silence.matchers) {
                        Ok(c) => Some(Arc::new(c)),
                        Err(e) => {
                            tracing::warn!(silence = id, error = %e, "a silence whose matchers do not compile; it hides nothing");
                            None
                        }
                    };
                    state.silences.insert(
                        id.to_owned(),
                        Entry {
                            silence,
                            revision,
                            compiled,
                        },
                    );
                }
                Ok(_) => {
                    tracing::warn!(silence = id, "a silence stored under another id; ignored")
                }
                Err(e) => {
                    tracing::warn!(silence = id, error = %e, "not a silence; ignored")
                }
            },
            // Silences are expired, not deleted; one removed by hand from
            // the bucket is gone.
            Operation::Delete | Operation::Purge => {
                state.silences.remove(id);
            }
        }
        state.revision = state.revision.max(revision);
        let revision = state.revision;
        drop(state);
        self.changed.send_replace(revision);
    }

    /// Keeps the cache in step with the bucket until `shutdown` fires;
    /// `loaded` turns true once the bucket's current contents are in.
    pub async fn follow(
        self,
        js: jetstream::Context,
        replicas: usize,
        loaded: watch::Sender<bool>,
        shutdown: CancellationToken,
    ) {
        crate::kv::follow(
            "silences",
            || crate::streams::ensure_silences_bucket(&js, replicas),
            |e| self.record(&e.key, e.revision, e.operation, &e.value),
            loaded,
            shutdown,
        )
        .await;
    }
}

/// A name for this replica of `service` in sync reports: the host name
/// (a container's id under Docker) and a random suffix, so replicas in one
/// host, or a restarted one, never share a report. Made of `[A-Za-z0-9_-]`.
pub fn replica_name(service: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let suffix: u32 = rand::random();
    if host.is_empty() {
        format!("{service}-{suffix:08x}")
    } else {
        format!("{service}-{host}-{suffix:08x}")
    }
}

/// [`Silences::apply`] over `active` silences (id, matchers), in order.
pub fn apply<'a>(
    active: impl Iterator<Item = (&'a String, &'a Compiled)>,
    alert: &Alert,
    channels: &[String],
) -> Verdict {
    let mut hidden = vec![false; channels.len()];
    let mut silenced_by = Vec::new();
    for (id, compiled) in active {
        let hit = if channels.is_empty() {
            compiled.matches(alert, "")
        } else if compiled.per_channel() {
            let mut hit = false;
            for (i, channel) in channels.iter().enumerate() {
                if compiled.matches(alert, channel) {
                    if let Some(h) = hidden.get_mut(i) {
                        *h = true;
                    }
                    hit = true;
                }
            }
            hit
        } else if compiled.matches(alert, "") {
            hidden.iter_mut().for_each(|h| *h = true);
            true
        } else {
            false
        };
        if hit {
            silenced_by.push(id.clone());
        }
    }
    let channels = channels
        .iter()
        .zip(hidden)
        .filter(|(_, h)| !h)
        .map(|(c, _)| c.clone())
        .collect();
    Verdict {
        silenced_by,
        channels,
    }
}

#[cfg(test)]
mod tests {
    use talon_proto::{ClientInfo, ContextEntry};

    use super::*;

    fn m(field: &str, op: &str, value: &str) -> Matcher {
        Matcher {
            field: field.into(),
            op: MatchOp::parse(op).unwrap_or(MatchOp::Equal),
            value: value.into(),
        }
    }

    fn alert() -> Alert {
        Alert {
            name: "Sigma: Mimikatz use".into(),
            client_id: Some("C.1234".into()),
            org_id: Some("root".into()),
            artifact: Some("Windows.Hayabusa.Rules".into()),
            artifact_type: Some("CLIENT_EVENT".into()),
            severity: Some("high".into()),
            source: "nats".into(),
            client: Some(ClientInfo {
                client_id: Some("C.1234".into()),
                hostname: Some("scanner-01".into()),
                fqdn: Some("scanner-01.corp.example".into()),
                os: None,
                labels: vec!["scanners".into(), "dmz".into()],
            }),
            context: Some(vec![
                ContextEntry {
                    key: "User".into(),
                    value: "CORP\\svc-scan".into(),
                },
                ContextEntry {
                    key: "CommandLine".into(),
                    value: "mimikatz.exe sekurlsa::logonpasswords".into(),
                },
            ]),
            ..Alert::sample()
        }
    }

    /// Whether `matchers` hold for [`alert`]; each negative one alone
    /// would match an empty value, so a matcher every alert passes is
    /// added to them.
    fn holds(matchers: &[Matcher]) -> bool {
        let mut matchers = matchers.to_vec();
        matchers.push(m("name", "=~", ".+"));
        match Compiled::new(&matchers) {
            Ok(c) => c.matches(&alert(), ""),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn each_operator_on_each_kind_of_field() {
        // =
        assert!(holds(&[m("hostname", "=", "scanner-01")]));
        assert!(!holds(&[m("hostname", "=", "scanner")]));
        // != (a missing value is "")
        assert!(holds(&[m("hostname", "!=", "ws-1")]));
        assert!(!holds(&[m("hostname", "!=", "scanner-01")]));
        // =~ matches the whole value
        assert!(holds(&[m("name", "=~", "^Sigma.*")]));
        assert!(holds(&[m("name", "=~", "Sigma: .*")]));
        assert!(!holds(&[m("name", "=~", "Sigma")]));
        // !~
        assert!(holds(&[m("name", "!~", "Honey.*")]));
        assert!(!holds(&[m("name", "!~", "Sigma.*")]));
        // every plain field
        for (field, value) in [
            ("name", "Sigma: Mimikatz use"),
            ("client_id", "C.1234"),
            ("fqdn", "scanner-01.corp.example"),
            ("artifact", "Windows.Hayabusa.Rules"),
            ("artifact_type", "CLIENT_EVENT"),
            ("severity", "high"),
            ("source", "nats"),
            ("org_id", "root"),
        ] {
            assert!(holds(&[m(field, "=", value)]), "{field}");
            assert!(!holds(&[m(field, "=", "x")]), "{field}");
            assert!(!holds(&[m(field, "!=", value)]));
        }
        // several values: = is "one of them", != "none of them"
        assert!(holds(&[m("labels", "=", "dmz")]));
        assert!(holds(&[m("labels", "=~", "scan.*")]));
        assert!(!holds(&[m("labels", "!=", "dmz")]));
        assert!(holds(&[m("labels", "!~", "prod.*")]));
        // context keys
        assert!(holds(&[m("context.User", "=", "CORP\\svc-scan")]));
        assert!(holds(&[m("context.CommandLine", "=~", "(?i).*MIMIKATZ.*")]));
        assert!(!holds(&[m("context.CommandLine", "=~", "mimikatz")]));
        assert!(holds(&[m("context.Missing", "!=", "x")]));
        assert!(!holds(&[m("context.Missing", "=", "x")]));
        assert!(holds(&[m("context.Missing", "=", "")]));
        // all must hold
        assert!(!holds(&[
            m("hostname", "=", "scanner-01"),
            m("severity", "=", "low")
        ]));
    }

    #[test]
    fn bad_matchers_are_refused_with_the_reason() {
        let err = |ms: &[Matcher]| Compiled::new(ms).err().unwrap_or_default();
        assert!(err(&[]).contains("at least one"));
        assert!(err(&[m("host", "=", "x")]).contains("one of name"));
        assert!(err(&[m("context.", "=", "x")]).contains("context key"));
        assert!(err(&[m("name", "=~", "(")]).contains("matchers[0]: not a regular expression"));
        assert!(err(&[m("name", "=", &"x".repeat(MAX_VALUE_BYTES + 1))]).contains("bytes"));
        assert!(err(&vec![m("name", "=", "x"); MAX_MATCHERS + 1]).contains("at most"));
        // matchers that every alert satisfies
        assert!(err(&[m("name", "=~", ".*")]).contains("every alert"));
        assert!(err(&[m("hostname", "!=", "x"), m("name", "!~", "y")]).contains("every alert"));
        // a huge regex is refused, not compiled for ever
        assert!(err(&[m("name", "=~", "(a{1000}){1000}")]).contains("regular expression"));
    }

    fn silence(matchers: Vec<Matcher>, starts: i64, ends: i64) -> Silence {
        let t = |s| DateTime::from_timestamp(s, 0).unwrap_or_default();
        Silence {
            id: format!(
                "{:032x}",
                starts.unsigned_abs() * 1000 + ends.unsigned_abs()
            ),
            matchers,
            starts_at: t(starts),
            ends_at: t(ends),
            created_by: "alice".into(),
            created_at: t(0),
            comment: "nightly scan".into(),
            updated_by: None,
            updated_at: None,
        }
    }

    fn put(s: &Silences, silence: &Silence, revision: u64) {
        let value = serde_json::to_vec(silence).unwrap_or_default();
        s.record(&silence.key(), revision, Operation::Put, &value);
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn only_active_silences_apply_and_overlapping_ones_are_all_named() {
        let s = Silences::default();
        let scanner = silence(vec![m("hostname", "=", "scanner-01")], 100, 200);
        let sigma = silence(vec![m("name", "=~", "Sigma:.*")], 150, 300);
        put(&s, &scanner, 1);
        put(&s, &sigma, 2);
        let routes = vec!["email-soc".to_owned(), "slack".to_owned()];
        // before either starts: delivered
        let v = s.apply(&alert(), &routes, at(99));
        assert_eq!(v.silenced_by, Vec::<String>::new());
        assert_eq!(v.channels, routes);
        // one
        let v = s.apply(&alert(), &routes, at(120));
        assert_eq!(v.silenced_by, vec![scanner.id.clone()]);
        assert!(v.channels.is_empty());
        // both, in id order
        let v = s.apply(&alert(), &routes, at(160));
        let mut both = vec![scanner.id.clone(), sigma.id.clone()];
        both.sort();
        assert_eq!(v.silenced_by, both);
        // the first ended
        assert_eq!(
            s.apply(&alert(), &routes, at(200)).silenced_by,
            vec![sigma.id.clone()]
        );
        // both ended
        assert_eq!(
            s.apply(&alert(), &routes, at(300)),
            Verdict {
                silenced_by: vec![],
                channels: routes.clone()
            }
        );
        assert_eq!(s.active(at(160)), 2);
        assert_eq!(s.revision(), 2);
    }

    #[test]
    fn expiring_is_a_new_revision_that_ends_it() {
        let s = Silences::default();
        let mut one = silence(vec![m("hostname", "=", "scanner-01")], 100, 10_000);
        put(&s, &one, 5);
        let routes = vec!["pd".to_owned()];
        assert_eq!(s.apply(&alert(), &routes, at(500)).silenced_by.len(), 1);
        one.ends_at = at(400);
        one.updated_by = Some("bob".into());
        put(&s, &one, 9);
        assert!(s.apply(&alert(), &routes, at(500)).silenced_by.is_empty());
        let entry = s.get(&one.id).map(|e| (e.revision, e.silence.updated_by));
        assert_eq!(entry, Some((9, Some("bob".into()))));
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn a_channel_matcher_hides_the_alert_from_that_channel_only() {
        let s = Silences::default();
        let slack = silence(
            vec![m("channel", "=", "slack"), m("severity", "=", "high")],
            0,
            100,
        );
        put(&s, &slack, 1);
        let routes = vec!["email-soc".to_owned(), "slack".to_owned()];
        let v = s.apply(&alert(), &routes, at(10));
        assert_eq!(v.silenced_by, vec![slack.id.clone()]);
        assert_eq!(v.channels, vec!["email-soc".to_owned()]);
        // routed nowhere: a channel matcher has nothing to match
        assert!(s.apply(&alert(), &[], at(10)).silenced_by.is_empty());
    }

    #[test]
    fn hostile_entries_hide_nothing_and_sync_reports_are_kept_apart() {
        let s = Silences::default();
        s.record("silence.x", 1, Operation::Put, b"not json");
        let mut bad = silence(vec![m("name", "=~", ".*")], 0, 100);
        bad.id = "x".into();
        s.record(
            "silence.x",
            2,
            Operation::Put,
            &serde_json::to_vec(&bad).unwrap_or_default(),
        );
        s.record(
            "silence.y",
            3,
            Operation::Put,
            &serde_json::to_vec(&bad).unwrap_or_default(),
        );
        assert!(s
            .apply(&alert(), &["pd".to_owned()], at(10))
            .silenced_by
            .is_empty());
        assert_eq!(s.active(at(10)), 0);
        let sync = SilenceSync {
            replica: "enrich-a".into(),
            revision: 3,
            active: 0,
            at: at(10),
        };
        s.record(
            "sync.enrich-a",
            4,
            Operation::Put,
            &serde_json::to_vec(&sync).unwrap_or_default(),
        );
        assert_eq!(s.syncs(), vec![sync]);
        assert_eq!(s.revision(), 3);
    }

    #[test]
    fn check_wants_a_reason_and_a_bounded_future_range() {
        let max = Duration::from_secs(30 * 86_400);
        let ok = silence(vec![m("name", "=", "x")], 1000, 2000);
        assert!(check(&ok, at(0), max).is_ok());
        let err = |s: &Silence| check(s, at(1500), max).err().unwrap_or_default();
        let mut s = ok.clone();
        s.comment = " \n".into();
        assert!(err(&s).contains("comment"));
        let s = silence(vec![m("name", "=", "x")], 2000, 1900);
        assert!(err(&s).contains("after starts_at"));
        let s = silence(vec![m("name", "=", "x")], 0, 1400);
        assert!(err(&s).contains("future"));
        let s = silence(vec![m("name", "=", "x")], 0, 1500 + 31 * 86_400);
        assert!(err(&s).contains("at most 30 days"));
        let s = silence(vec![m("name", "=", "x")], 0, 1500 + 29 * 86_400);
        assert!(check(&s, at(1500), max).is_ok());
    }
}
