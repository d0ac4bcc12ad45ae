//! The alert catalog: every alert of `HISTORY` and its triage from
//! `TRIAGE`, in SQLite (with FTS5 for free text over the name and the
//! context). It is a cache: each replica builds its own at start from the
//! two streams, in a temporary file, and follows them live; nothing in it
//! is not also in NATS. No I/O but SQLite's.
//!
//! Why SQLite: filters, counts and ordering are what SQL does; FTS5 gives
//! word search over name and context in the same query; one file, no
//! server, and the bundled library needs nothing from the system.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};
use talon_proto::Alert;

use crate::triage::Triage;

/// At most this many alerts in one page.
pub const PAGE_MAX: usize = 500;
/// This many when the request does not say.
pub const PAGE_DEFAULT: usize = 50;
/// Free text of at most this many characters, words of it at most this many.
pub const QUERY_CHARS: usize = 500;
pub const QUERY_WORDS: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("alert catalog: {0}")]
pub struct CatalogError(String);

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> CatalogError {
        CatalogError(e.to_string())
    }
}

/// What `GET /v1/alerts` filters on; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `received_at` at or after / before (milliseconds since the epoch).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Any of these severities (`none`: no severity).
    pub severity: Vec<String>,
    /// Any of these states (`open`, `acknowledged`, `resolved`).
    pub state: Vec<String>,
    /// A user name, or `none` for unassigned.
    pub assignee: Option<String>,
    /// A client id or hostname (hostname without regard to case).
    pub client: Option<String>,
    /// `nats`, `http`, `rule:<name>`.
    pub source: Option<String>,
    pub artifact: Option<String>,
    /// Routed to this channel.
    pub channel: Option<String>,
    pub silenced: Option<bool>,
    /// Hidden by this silence (its id).
    pub silence: Option<String>,
    /// Only these alert ids (a group message's, at most 10,000).
    pub ids: Option<Vec<String>>,
    /// Words, each of which must appear in the name or the context.
    pub text: Vec<String>,
}

/// One page: rows newest first, the cursor of the next, and counts over
/// every alert the filter matches (not just this page).
#[derive(Debug, Serialize)]
pub struct Page {
    pub alerts: Vec<Value>,
    pub next_cursor: Option<String>,
    pub counts: Counts,
}

#[derive(Debug, Serialize, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub severity: serde_json::Map<String, Value>,
    pub state: serde_json::Map<String, Value>,
}

pub struct Catalog {
    conn: Connection,
    /// The indexes, tallies and their triggers are there.
    built: bool,
    /// Severity and state of every alert, by sequence.
    facets: Facets,
}

/// The states an alert can be in, as [`Facets`] numbers them.
const STATES: [&str; 3] = ["open", "acknowledged", "resolved"];
/// Cells [`Facets`] holds at most (bytes): past that it stands aside and
/// counts come from SQLite.
const FACETS_MAX: u64 = 64 << 20;

/// Severity and state of every alert by `HISTORY` sequence, one byte each
/// (`1 + severity * 3 + state`; 0: no alert there), kept beside SQLite so
/// that counting many matches (a common word, an hour) is a look-up per
/// match rather than a B-tree search: 116,000 matches of a word among a
/// million alerts count in milliseconds instead of 150 ms.
#[derive(Debug, Default)]
struct Facets {
    /// The sequence of `cells[0]`.
    base: u64,
    cells: Vec<u8>,
    /// Severity names, numbered in the order first seen.
    severities: Vec<String>,
    /// More than 84 severities or a span over [`FACETS_MAX`]: not used.
    off: bool,
}

impl Facets {
    fn set(&mut self, seq: u64, severity: &str, state: &str) {
        if self.off {
            return;
        }
        let sev = match self.severities.iter().position(|s| s == severity) {
            Some(i) => i,
            None if self.severities.len() < 84 => {
                self.severities.push(severity.to_owned());
                self.severities.len() - 1
            }
            None => {
                self.stand_aside();
                return;
            }
        };
        let st = STATES.iter().position(|s| *s == state).unwrap_or(0);
        if self.cells.is_empty() {
            self.base = seq;
        }
        if seq < self.base {
            let grow = self.base - seq;
            if grow + self.cells.len() as u64 > FACETS_MAX {
                self.stand_aside();
                return;
            }
            self.cells
                .splice(0..0, std::iter::repeat_n(0, grow as usize));
            self.base = seq;
        }
        let at = seq - self.base;
        if at >= FACETS_MAX {
            self.stand_aside();
            return;
        }
        let at = at as usize;
        if at >= self.cells.len() {
            self.cells.resize(at + 1, 0);
        }
        if let Some(cell) = self.cells.get_mut(at) {
            *cell = (1 + sev * 3 + st) as u8;
        }
    }

    fn stand_aside(&mut self) {
        self.off = true;
        self.cells = Vec::new();
    }

    /// (severity number, state number) of the alert at `seq`.
    fn get(&self, seq: u64) -> Option<(usize, usize)> {
        let at = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        match self.cells.get(at) {
            Some(&c) if c > 0 => Some((usize::from(c - 1) / 3, usize::from(c - 1) % 3)),
            _ => None,
        }
    }
}

/// An earlier alert of the same dedup key, as [`Catalog::previous`] finds it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Previous {
    pub id: String,
    pub name: String,
    pub state: String,
    pub verdict: Option<String>,
    pub assignee: Option<String>,
    pub received_at: DateTime<Utc>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl Catalog {
    /// A catalog in the file `path` (created; replaced if there), or in
    /// memory.
    pub fn open(path: Option<&Path>) -> Result<Catalog, CatalogError> {
        let conn = match path {
            Some(p) => {
                let _ = std::fs::remove_file(p);
                Connection::open(p)?
            }
            None => Connection::open_in_memory()?,
        };
        // A cache rebuilt at every start: durability buys nothing here.
        // The indexes and the tallies come after the first read of the
        // history ([`Catalog::finish_rebuild`]): building them once over a
        // million rows is much faster than keeping them row by row.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -131072;
             PRAGMA threads = 2;
             CREATE TABLE alerts (
                 seq INTEGER PRIMARY KEY,
                 id TEXT NOT NULL UNIQUE,
                 name TEXT NOT NULL,
                 severity TEXT NOT NULL,
                 client_id TEXT,
                 hostname TEXT COLLATE NOCASE,
                 source TEXT NOT NULL,
                 artifact TEXT,
                 silenced INTEGER NOT NULL,
                 received_ms INTEGER NOT NULL,
                 state TEXT NOT NULL DEFAULT 'open',
                 assignee TEXT,
                 verdict TEXT,
                 version INTEGER NOT NULL DEFAULT 0,
                 dedup_key TEXT,
                 row TEXT NOT NULL
             );
             -- Where each alert was routed: one row per channel.
             CREATE TABLE routes (
                 channel TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 PRIMARY KEY (channel, seq)
             ) WITHOUT ROWID;
             -- Which silences hid each alert: one row per silence.
             CREATE TABLE hidden (
                 silence TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 PRIMARY KEY (silence, seq)
             ) WITHOUT ROWID;
             -- Counts by severity and state, overall and per channel: the
             -- unfiltered list, and one filtered on channel, severity and
             -- state only, count without reading the alerts.
             CREATE TABLE tally (
                 severity TEXT NOT NULL,
                 state TEXT NOT NULL,
                 n INTEGER NOT NULL,
                 PRIMARY KEY (severity, state)
             ) WITHOUT ROWID;
             CREATE TABLE tally_channel (
                 channel TEXT NOT NULL,
                 severity TEXT NOT NULL,
                 state TEXT NOT NULL,
                 n INTEGER NOT NULL,
                 PRIMARY KEY (channel, severity, state)
             ) WITHOUT ROWID;
             -- Triage of an alert not in the catalog yet (its record comes
             -- later): applied when it arrives.
             CREATE TABLE early_triage (
                 id TEXT PRIMARY KEY,
                 state TEXT NOT NULL,
                 assignee TEXT,
                 verdict TEXT,
                 version INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE VIRTUAL TABLE alerts_text USING fts5(
                 name, context, content='', detail='none', tokenize=\"unicode61 tokenchars '_'\"
             );",
        )?;
        Ok(Catalog {
            conn,
            built: false,
            facets: Facets::default(),
        })
    }

    /// Adds the alerts of `HISTORY` (its sequence with each), in one
    /// transaction; one already there (a record published twice) is left
    /// as it is.
    pub fn add(&mut self, alerts: &[(u64, Alert)]) -> Result<(), CatalogError> {
        let mut facets: Vec<(i64, &str, String)> = Vec::new();
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO alerts
                 (seq, id, name, severity, client_id, hostname, source, artifact,
                  silenced, received_ms, dedup_key, row)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut route =
                tx.prepare_cached("INSERT OR IGNORE INTO routes (channel, seq) VALUES (?1, ?2)")?;
            let mut hidden =
                tx.prepare_cached("INSERT OR IGNORE INTO hidden (silence, seq) VALUES (?1, ?2)")?;
            let mut text = tx.prepare_cached(
                "INSERT INTO alerts_text (rowid, name, context) VALUES (?1, ?2, ?3)",
            )?;
            // Triage that came before its alert: looked up by the new
            // alert's id, so a batch costs what it holds, not what waits.
            let waiting: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM early_triage)", [], |r| {
                    r.get(0)
                })?;
            let mut early = tx.prepare_cached(
                "UPDATE alerts SET state = t.state, assignee = t.assignee, verdict = t.verdict,
                        version = t.version
                 FROM early_triage t WHERE t.id = ?1 AND alerts.seq = ?2 AND alerts.version < t.version",
            )?;
            let mut applied = tx.prepare_cached("DELETE FROM early_triage WHERE id = ?1")?;
            // The words go in last, after every other write of the batch:
            // FTS5 writes what it holds to disk at each statement that
            // opens a savepoint (an INSERT into a table with a UNIQUE
            // column does), so words added between such statements made a
            // segment per alert and merging them took half a rebuild.
            let mut words: Vec<(i64, &str, String)> = Vec::with_capacity(alerts.len());
            let mut state_of = tx.prepare_cached("SELECT state FROM alerts WHERE seq = ?1")?;
            for (seq, a) in alerts {
                let seq = i64::try_from(*seq).map_err(|e| CatalogError(e.to_string()))?;
                let hostname = a.client.as_ref().and_then(|c| c.hostname.clone());
                let routed = a.routed_to.clone().unwrap_or_default();
                let row = json!({
                    "id": a.id,
                    "name": a.name,
                    "severity": a.severity,
                    "client_id": a.client_id,
                    "hostname": hostname,
                    "source": a.source,
                    "artifact": a.effective_artifact(),
                    "timestamp": a.timestamp,
                    "received_at": a.received_at,
                    "links": a.links,
                    "silenced_by": a.silenced_by,
                    "routed_to": routed,
                    "suppressed_before": a.dedup.as_ref().map_or(0, |d| d.suppressed_before),
                });
                let severity = a.severity.as_deref().unwrap_or("none");
                let added = insert.execute(params![
                    seq,
                    a.id,
                    a.name,
                    severity,
                    a.client_id,
                    hostname,
                    a.source,
                    a.effective_artifact(),
                    !a.silenced_by.is_empty(),
                    ms(a.received_at),
                    a.dedup.as_ref().map(|d| d.key.as_str()),
                    row.to_string(),
                ])?;
                if added == 1 {
                    let context: String = a
                        .context
                        .iter()
                        .flatten()
                        .map(|e| format!("{} {}\n", e.key, e.value))
                        .collect();
                    words.push((seq, &a.name, context));
                    for channel in &routed {
                        route.execute(params![channel, seq])?;
                    }
                    for silence in &a.silenced_by {
                        hidden.execute(params![silence, seq])?;
                    }
                    let mut state = String::from("open");
                    if waiting && early.execute(params![a.id, seq])? > 0 {
                        applied.execute([&a.id])?;
                        state = state_of.query_row([seq], |r| r.get(0))?;
                    }
                    facets.push((seq, severity, state));
                }
            }
            for (seq, name, context) in &words {
                text.execute(params![seq, name, context])?;
            }
        }
        tx.commit()?;
        for (seq, severity, state) in facets {
            self.facets.set(seq.unsigned_abs(), severity, &state);
        }
        Ok(())
    }

    /// Records triage states (alert id, state, version), in one
    /// transaction; an older version never replaces a newer one.
    pub fn set_triage(&mut self, rows: &[(String, Triage, u64)]) -> Result<(), CatalogError> {
        let mut facets: Vec<(i64, String, &str)> = Vec::new();
        let tx = self.conn.transaction()?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE alerts SET state = ?2, assignee = ?3, verdict = ?4, version = ?5
                 WHERE id = ?1 AND version < ?5 RETURNING seq, severity",
            )?;
            let mut known = tx.prepare_cached("SELECT 1 FROM alerts WHERE id = ?1")?;
            let mut early = tx.prepare_cached(
                "INSERT INTO early_triage (id, state, assignee, verdict, version)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET state = ?2, assignee = ?3, verdict = ?4, version = ?5
                 WHERE version < ?5",
            )?;
            for (id, t, version) in rows {
                let version = i64::try_from(*version).map_err(|e| CatalogError(e.to_string()))?;
                let values = params![
                    id,
                    t.state.as_str(),
                    t.assignee,
                    t.verdict.map(|v| v.as_str()),
                    version
                ];
                let changed: Option<(i64, String)> = update
                    .query_row(values, |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match changed {
                    Some((seq, severity)) => facets.push((seq, severity, t.state.as_str())),
                    None if !known.exists([id])? => {
                        early.execute(values)?;
                    }
                    None => {}
                }
            }
        }
        tx.commit()?;
        for (seq, severity, state) in facets {
            self.facets.set(seq.unsigned_abs(), &severity, state);
        }
        Ok(())
    }

    /// Builds the indexes and tallies over what the history held, and the
    /// triggers that keep the tallies from then on; called once the first
    /// read of `HISTORY` is done (later calls do nothing). Queries before
    /// it are right, only slow.
    pub fn finish_rebuild(&mut self) -> Result<(), CatalogError> {
        if self.built {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "-- Each index carries severity and state after the filtered
             -- column and the sequence: a page walks it newest first, and
             -- the counts of a filter read the index alone.
             CREATE INDEX alerts_severity ON alerts (severity, seq);
             CREATE INDEX alerts_state ON alerts (state, seq);
             CREATE INDEX alerts_assignee ON alerts (assignee, seq, severity, state);
             CREATE INDEX alerts_client ON alerts (client_id, seq, severity, state);
             CREATE INDEX alerts_hostname ON alerts (hostname, seq, severity, state);
             CREATE INDEX alerts_source ON alerts (source, seq, severity, state);
             CREATE INDEX alerts_artifact ON alerts (artifact, seq, severity, state);
             CREATE INDEX alerts_received ON alerts (received_ms, severity, state);
             CREATE INDEX alerts_dedup_key ON alerts (dedup_key, seq);
             CREATE INDEX alerts_facets ON alerts (seq, severity, state);
             DELETE FROM tally;
             INSERT INTO tally (severity, state, n)
                 SELECT severity, state, count(*) FROM alerts GROUP BY 1, 2;
             DELETE FROM tally_channel;
             INSERT INTO tally_channel (channel, severity, state, n)
                 SELECT r.channel, a.severity, a.state, count(*)
                 FROM routes r JOIN alerts a ON a.seq = r.seq GROUP BY 1, 2, 3;
             CREATE TRIGGER tally_insert AFTER INSERT ON alerts BEGIN
                 INSERT INTO tally (severity, state, n) VALUES (new.severity, new.state, 1)
                 ON CONFLICT (severity, state) DO UPDATE SET n = n + 1;
             END;
             CREATE TRIGGER tally_state AFTER UPDATE OF state ON alerts
             WHEN old.state <> new.state BEGIN
                 UPDATE tally SET n = n - 1 WHERE severity = old.severity AND state = old.state;
                 INSERT INTO tally (severity, state, n) VALUES (new.severity, new.state, 1)
                 ON CONFLICT (severity, state) DO UPDATE SET n = n + 1;
                 UPDATE tally_channel SET n = n - 1
                 WHERE severity = old.severity AND state = old.state
                   AND channel IN (SELECT channel FROM routes WHERE seq = new.seq);
                 INSERT INTO tally_channel (channel, severity, state, n)
                     SELECT channel, new.severity, new.state, 1 FROM routes WHERE seq = new.seq
                     ON CONFLICT (channel, severity, state) DO UPDATE SET n = n + 1;
             END;
             CREATE TRIGGER tally_route AFTER INSERT ON routes BEGIN
                 INSERT INTO tally_channel (channel, severity, state, n)
                     SELECT new.channel, a.severity, a.state, 1 FROM alerts a WHERE a.seq = new.seq
                     ON CONFLICT (channel, severity, state) DO UPDATE SET n = n + 1;
             END;
             CREATE INDEX routes_seq ON routes (seq);",
        )?;
        tx.commit()?;
        // Statistics for the planner (sampled: a second on a million rows),
        // so a time range walks its index rather than every alert.
        self.conn
            .execute_batch("PRAGMA analysis_limit = 1000; ANALYZE;")?;
        self.built = true;
        Ok(())
    }

    /// The `HISTORY` sequence of alert `id`.
    pub fn seq_of(&self, id: &str) -> Result<Option<u64>, CatalogError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT seq FROM alerts WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()))
    }

    /// The alert before `id` with the same dedup key (the window that
    /// raised it ended and the key fired again), with its triage: so a
    /// repeat of a resolved alert links back to it and its verdict.
    pub fn previous(&self, id: &str) -> Result<Option<Previous>, CatalogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT p.id, p.name, p.state, p.verdict, p.assignee, p.received_ms
                 FROM alerts a JOIN alerts p ON p.dedup_key = a.dedup_key AND p.seq < a.seq
                 WHERE a.id = ?1
                 ORDER BY p.seq DESC LIMIT 1",
                [id],
                |r| {
                    Ok(Previous {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        state: r.get(2)?,
                        verdict: r.get(3)?,
                        assignee: r.get(4)?,
                        received_at: DateTime::<Utc>::from_timestamp_millis(r.get(5)?)
                            .unwrap_or_default(),
                    })
                },
            )
            .optional()?)
    }

    /// The query plan of `sql` (for the benchmarks' diagnostics).
    pub fn explain(&self, sql: &str) -> Vec<String> {
        let Ok(mut stmt) = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")) else {
            return vec!["(no plan)".into()];
        };
        stmt.query_map([], |r| r.get::<_, String>(3))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    /// How many alerts each of `silences` hid.
    pub fn hidden_counts(&self, silences: &[String]) -> Result<Vec<u64>, CatalogError> {
        let mut count = self
            .conn
            .prepare_cached("SELECT count(*) FROM hidden WHERE silence = ?1")?;
        silences
            .iter()
            .map(|id| {
                let n: i64 = count.query_row([id], |r| r.get(0))?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .collect()
    }

    /// The `HISTORY` sequence of the first alert received at or after
    /// `since_ms`: where a look back over the history starts.
    pub fn first_since(&self, since_ms: i64) -> Result<Option<u64>, CatalogError> {
        let seq: Option<i64> = self.conn.query_row(
            "SELECT min(seq) FROM alerts WHERE received_ms >= ?1",
            [since_ms],
            |r| r.get(0),
        )?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()))
    }

    /// How many alerts it holds.
    pub fn len(&self) -> Result<u64, CatalogError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub fn is_empty(&self) -> Result<bool, CatalogError> {
        Ok(self.len()? == 0)
    }

    /// One page of the alerts `filter` matches, newest first, after
    /// `cursor` (a `next_cursor` of an earlier page).
    pub fn query(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page, CatalogError> {
        let limit = limit.clamp(1, PAGE_MAX);
        let (where_sql, args) = where_clause(filter);
        let (counts, seq_range) = self.counts(filter, &where_sql, &args)?;
        let (page_where, page_args) = if filter.channel.is_some() {
            let all: i64 =
                self.conn
                    .query_row("SELECT coalesce(sum(n), 0) FROM tally", [], |r| r.get(0))?;
            let common =
                self.built && counts.total.saturating_mul(10) > u64::try_from(all).unwrap_or(0);
            where_clause_with(filter, common)
        } else {
            (where_sql, args)
        };
        let mut page_sql = format!(
            "SELECT a.seq, a.row, a.state, a.assignee, a.verdict, a.version
             FROM alerts a WHERE {page_where}"
        );
        let mut page_args = page_args;
        // A time range: the first and last sequence in it, from its index,
        // so a page walks the alerts of the range newest first rather than
        // every alert after it (or sorts the range).
        if self.built && (filter.from_ms.is_some() || filter.to_ms.is_some()) {
            let bounds: (Option<i64>, Option<i64>) = match seq_range {
                Some(range) => range,
                None => self.conn.query_row(
                    "SELECT min(seq), max(seq) FROM alerts INDEXED BY alerts_received
                 WHERE received_ms >= ?1 AND received_ms < ?2",
                    params![
                        filter.from_ms.unwrap_or(i64::MIN),
                        filter.to_ms.unwrap_or(i64::MAX)
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?,
            };
            let (lo, hi) = match bounds {
                (Some(lo), Some(hi)) => (lo, hi),
                _ => (1, 0),
            };
            page_sql.push_str(" AND a.seq BETWEEN ? AND ?");
            page_args.push(rusqlite::types::Value::Integer(lo));
            page_args.push(rusqlite::types::Value::Integer(hi));
        }
        if let Some(c) = cursor.and_then(|c| i64::try_from(c).ok()) {
            page_sql.push_str(" AND a.seq < ?");
            page_args.push(rusqlite::types::Value::Integer(c));
        }
        page_sql.push_str(&format!(" ORDER BY a.seq DESC LIMIT {}", limit + 1));
        let mut stmt = self.conn.prepare(&page_sql)?;
        let mut rows = stmt.query(params_from_iter(page_args.iter()))?;
        let mut alerts = Vec::new();
        let mut last_seq = None;
        let mut more = false;
        while let Some(r) = rows.next()? {
            if alerts.len() == limit {
                more = true;
                break;
            }
            let seq: i64 = r.get(0)?;
            let row: String = r.get(1)?;
            let state: String = r.get(2)?;
            let assignee: Option<String> = r.get(3)?;
            let verdict: Option<String> = r.get(4)?;
            let version: i64 = r.get(5)?;
            let mut v: Value =
                serde_json::from_str(&row).map_err(|e| CatalogError(e.to_string()))?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("state".into(), json!(state));
                obj.insert("assignee".into(), json!(assignee));
                obj.insert("verdict".into(), json!(verdict));
                obj.insert("version".into(), json!(version));
            }
            alerts.push(v);
            last_seq = Some(seq);
        }
        let next_cursor = if more {
            last_seq.map(|s| s.to_string())
        } else {
            None
        };
        Ok(Page {
            alerts,
            next_cursor,
            counts,
        })
    }

    /// Counts by severity and state of what `filter` matches: from the
    /// tally when it filters on those two at most, else by reading the
    /// matching alerts.
    fn counts(
        &self,
        filter: &Filter,
        where_sql: &str,
        args: &[rusqlite::types::Value],
    ) -> Result<(Counts, Option<SeqRange>), CatalogError> {
        // A filter on severity and state only (and a channel) counts from
        // the tallies, with the same conditions on their columns.
        let rest = Filter {
            severity: Vec::new(),
            state: Vec::new(),
            channel: None,
            ..filter.clone()
        };
        let tallied = self.built && rest == Filter::default();
        if !tallied {
            if let Some((by, range)) = self.counted_by_facets(filter)? {
                return Ok((counts_of(by), range));
            }
        }
        let mut tally_args;
        let sql = match (&filter.channel, tallied) {
            (None, true) => {
                tally_args = args.to_vec();
                format!(
                    "SELECT a.severity, a.state, a.n FROM tally a WHERE a.n > 0 AND {where_sql}"
                )
            }
            (Some(channel), true) => {
                let (tally_where, more) = where_clause(&Filter {
                    channel: None,
                    ..filter.clone()
                });
                tally_args = vec![rusqlite::types::Value::Text(channel.clone())];
                tally_args.extend(more);
                format!(
                    "SELECT a.severity, a.state, a.n FROM tally_channel a
                     WHERE a.channel = ? AND a.n > 0 AND {tally_where}"
                )
            }
            (_, false) => {
                tally_args = args.to_vec();
                // Many matches of a word: severity and state from the
                // narrow facets index, not from each alert's whole row.
                let facets = if self.built && !filter.text.is_empty() {
                    "INDEXED BY alerts_facets"
                } else {
                    ""
                };
                // Each match read once and counted here: SQLite's GROUP BY
                // would sort them all first.
                format!("SELECT a.severity, a.state, 1 FROM alerts a {facets} WHERE {where_sql}")
            }
        };
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(tally_args.iter()))?;
        // (severity, state, n): a handful of pairs, found by comparing
        // borrowed text, so counting a match allocates nothing.
        let mut by: Vec<(String, String, u64)> = Vec::new();
        while let Some(r) = rows.next()? {
            let n = u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0);
            let severity = r.get_ref(0)?.as_str().unwrap_or_default();
            let state = r.get_ref(1)?.as_str().unwrap_or_default();
            match by.iter_mut().find(|(s, t, _)| s == severity && t == state) {
                Some((_, _, count)) => *count += n,
                None => by.push((severity.to_owned(), state.to_owned(), n)),
            }
        }
        Ok((counts_of(by), None))
    }

    /// Counts (severity, state, n) of a filter on words or on a time range
    /// (with severity and state) from [`Facets`]: the matches' sequences
    /// from FTS5 or the time index, each looked up in the array; for a
    /// time range, also its first and last sequence. None when the filter
    /// has more, or the array cannot say.
    #[allow(clippy::type_complexity)]
    fn counted_by_facets(
        &self,
        filter: &Filter,
    ) -> Result<Option<(Vec<(String, String, u64)>, Option<SeqRange>)>, CatalogError> {
        use rusqlite::types::Value as V;
        let rest = Filter {
            severity: Vec::new(),
            state: Vec::new(),
            text: Vec::new(),
            from_ms: None,
            to_ms: None,
            ..filter.clone()
        };
        let text = !filter.text.is_empty();
        let time = filter.from_ms.is_some() || filter.to_ms.is_some();
        if !self.built || self.facets.off || rest != Filter::default() || text == time {
            return Ok(None);
        }
        let (sql, args) = if text {
            (
                "SELECT rowid FROM alerts_text WHERE alerts_text MATCH ?1",
                vec![V::Text(fts_query(&filter.text))],
            )
        } else {
            (
                "SELECT seq FROM alerts INDEXED BY alerts_received
                 WHERE received_ms >= ?1 AND received_ms < ?2",
                vec![
                    V::Integer(filter.from_ms.unwrap_or(i64::MIN)),
                    V::Integer(filter.to_ms.unwrap_or(i64::MAX)),
                ],
            )
        };
        let severities = &self.facets.severities;
        let severity_ok: Vec<bool> = severities
            .iter()
            .map(|s| filter.severity.is_empty() || filter.severity.contains(s))
            .collect();
        let state_ok: Vec<bool> = STATES
            .iter()
            .map(|s| filter.state.is_empty() || filter.state.iter().any(|f| f == s))
            .collect();
        let mut n = vec![[0u64; 3]; severities.len()];
        let (mut lo, mut hi) = (None::<i64>, None::<i64>);
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params_from_iter(args.iter()))?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            lo = Some(lo.map_or(seq, |l| l.min(seq)));
            hi = Some(hi.map_or(seq, |h| h.max(seq)));
            let Some((sev, st)) = self.facets.get(seq.unsigned_abs()) else {
                return Ok(None);
            };
            let ok = severity_ok.get(sev).copied().unwrap_or(false)
                && state_ok.get(st).copied().unwrap_or(false);
            if let (true, Some(cell)) = (ok, n.get_mut(sev).and_then(|c| c.get_mut(st))) {
                *cell += 1;
            }
        }
        let mut by = Vec::new();
        for (sev, row) in n.iter().enumerate() {
            for (st, &count) in row.iter().enumerate() {
                if let (true, Some(name), Some(state)) =
                    (count > 0, severities.get(sev), STATES.get(st))
                {
                    by.push((name.clone(), (*state).to_owned(), count));
                }
            }
        }
        Ok(Some((by, time.then_some((lo, hi)))))
    }
}

/// The first and last `HISTORY` sequence of a time range, if any alert is
/// in it.
type SeqRange = (Option<i64>, Option<i64>);

/// Counts of (severity, state, n) triples.
fn counts_of(by: Vec<(String, String, u64)>) -> Counts {
    let mut counts = Counts::default();
    let bump = |map: &mut serde_json::Map<String, Value>, key: &str, n: u64| {
        let before = map.get(key).and_then(Value::as_u64).unwrap_or(0);
        map.insert(key.to_owned(), json!(before + n));
    };
    for (severity, state, n) in by {
        counts.total += n;
        bump(&mut counts.severity, &severity, n);
        bump(&mut counts.state, &state, n);
    }
    counts
}

/// The SQL condition of `filter` and its arguments, in order.
fn where_clause(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    where_clause_with(filter, false)
}

/// [`where_clause`], the channel tested row by row (`EXISTS`) when
/// `channel_by_row`: better when most alerts went to the channel (a page
/// then finds its rows at once), worse for a rare one.
fn where_clause_with(
    filter: &Filter,
    channel_by_row: bool,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut conds = vec!["1".to_owned()];
    let mut args = Vec::new();
    if let Some(from) = filter.from_ms {
        conds.push("a.received_ms >= ?".into());
        args.push(V::Integer(from));
    }
    if let Some(to) = filter.to_ms {
        conds.push("a.received_ms < ?".into());
        args.push(V::Integer(to));
    }
    if !filter.severity.is_empty() {
        let marks = vec!["?"; filter.severity.len()].join(", ");
        conds.push(format!("a.severity IN ({marks})"));
        args.extend(filter.severity.iter().map(|s| V::Text(s.clone())));
    }
    if !filter.state.is_empty() {
        let marks = vec!["?"; filter.state.len()].join(", ");
        conds.push(format!("a.state IN ({marks})"));
        args.extend(filter.state.iter().map(|s| V::Text(s.clone())));
    }
    match filter.assignee.as_deref() {
        Some("none") => conds.push("a.assignee IS NULL".into()),
        Some(user) => {
            conds.push("a.assignee = ?".into());
            args.push(V::Text(user.to_owned()));
        }
        None => {}
    }
    if let Some(client) = &filter.client {
        conds.push("(a.client_id = ? OR a.hostname = ?)".into());
        args.push(V::Text(client.clone()));
        args.push(V::Text(client.clone()));
    }
    if let Some(source) = &filter.source {
        conds.push("a.source = ?".into());
        args.push(V::Text(source.clone()));
    }
    if let Some(artifact) = &filter.artifact {
        conds.push("a.artifact = ?".into());
        args.push(V::Text(artifact.clone()));
    }
    if let Some(channel) = &filter.channel {
        conds.push(if channel_by_row {
            "EXISTS (SELECT 1 FROM routes r WHERE r.channel = ? AND r.seq = a.seq)".into()
        } else {
            "a.seq IN (SELECT seq FROM routes WHERE channel = ?)".into()
        });
        args.push(V::Text(channel.clone()));
    }
    if let Some(silenced) = filter.silenced {
        conds.push("a.silenced = ?".into());
        args.push(V::Integer(i64::from(silenced)));
    }
    if let Some(silence) = &filter.silence {
        conds.push("a.seq IN (SELECT seq FROM hidden WHERE silence = ?)".into());
        args.push(V::Text(silence.clone()));
    }
    if let Some(ids) = &filter.ids {
        // One argument however many ids: a JSON array, read by json_each.
        conds.push("a.id IN (SELECT value FROM json_each(?))".into());
        args.push(V::Text(json!(ids).to_string()));
    }
    if !filter.text.is_empty() {
        conds.push("a.seq IN (SELECT rowid FROM alerts_text WHERE alerts_text MATCH ?)".into());
        args.push(V::Text(fts_query(&filter.text)));
    }
    (conds.join(" AND "), args)
}

/// Words as an FTS5 query that means "all of these words": each quoted as
/// a string (quotes doubled), so no word is read as FTS5 syntax.
fn fts_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words of a free-text query: split on anything but letters, digits,
/// `.`, `_` and `-` (as FTS5's tokenizer mostly does), at most
/// [`QUERY_WORDS`] of them, from at most [`QUERY_CHARS`] characters.
pub fn words(q: &str) -> Vec<String> {
    let q: String = q.chars().take(QUERY_CHARS).collect();
    q.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .take(QUERY_WORDS)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::{State, Verdict};
    use talon_proto::{ClientInfo, ContextEntry};

    fn minute(m: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + m * 60, 0).unwrap()
    }

    fn alert(id: &str, name: &str, severity: Option<&str>, client: &str, minute: i64) -> Alert {
        let at = DateTime::<Utc>::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap();
        Alert {
            id: id.into(),
            name: name.into(),
            severity: severity.map(str::to_owned),
            client_id: Some(client.into()),
            client: Some(ClientInfo {
                client_id: Some(client.into()),
                hostname: Some(format!("host-{client}")),
                ..Default::default()
            }),
            received_at: at,
            timestamp: at,
            routed_to: Some(vec!["email-soc".into(), "inbox".into()]),
            context: Some(vec![ContextEntry {
                key: "FileName".into(),
                value: format!("/home/{id}/report.txt"),
            }]),
            ..Alert::sample()
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::open(None).unwrap();
        let mut quiet = alert("a4", "Sigma: Mimikatz", Some("critical"), "C.2", 4);
        quiet.silenced_by = vec!["s1".into()];
        quiet.routed_to = Some(vec![]);
        quiet.source = "rule:sigma".into();
        c.add(&[
            (1, alert("a1", "Honey file opened", Some("high"), "C.1", 1)),
            (2, alert("a2", "Honey file opened", Some("high"), "C.2", 2)),
            (3, alert("a3", "Known bad host", None, "C.1", 3)),
            (4, quiet),
        ])
        .unwrap();
        c.finish_rebuild().unwrap();
        c
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.alerts
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect()
    }

    fn q(c: &Catalog, f: Filter) -> Vec<String> {
        ids(&c.query(&f, 50, None).unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn newest_first_with_counts_and_cursor_pages() {
        let c = catalog();
        let first = c.query(&Filter::default(), 3, None).unwrap();
        assert_eq!(ids(&first), ["a4", "a3", "a2"]);
        assert_eq!(first.counts.total, 4);
        assert_eq!(first.counts.severity["high"], 2);
        assert_eq!(first.counts.severity["none"], 1);
        assert_eq!(first.counts.state["open"], 4);
        let cursor: u64 = first.next_cursor.as_deref().unwrap().parse().unwrap();
        let second = c.query(&Filter::default(), 3, Some(cursor)).unwrap();
        assert_eq!(ids(&second), ["a1"]);
        assert_eq!(second.next_cursor, None);
        assert_eq!(first.alerts[0]["state"], "open");
        assert_eq!(first.alerts[0]["version"], 0);
    }

    #[test]
    fn each_filter_narrows() {
        let c = catalog();
        let f = |f: Filter| q(&c, f);
        assert_eq!(
            f(Filter {
                severity: vec!["high".into()],
                ..Default::default()
            }),
            ["a2", "a1"]
        );
        assert_eq!(
            f(Filter {
                severity: vec!["none".into(), "critical".into()],
                ..Default::default()
            }),
            ["a4", "a3"]
        );
        assert_eq!(
            f(Filter {
                client: Some("C.1".into()),
                ..Default::default()
            }),
            ["a3", "a1"]
        );
        assert_eq!(
            f(Filter {
                client: Some("HOST-C.2".into()),
                ..Default::default()
            }),
            ["a4", "a2"]
        );
        assert_eq!(
            f(Filter {
                source: Some("rule:sigma".into()),
                ..Default::default()
            }),
            ["a4"]
        );
        assert_eq!(
            f(Filter {
                channel: Some("inbox".into()),
                ..Default::default()
            }),
            ["a3", "a2", "a1"]
        );
        assert_eq!(
            f(Filter {
                channel: Some("inb".into()),
                ..Default::default()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            f(Filter {
                silenced: Some(true),
                ..Default::default()
            }),
            ["a4"]
        );
        // A group message's ids (unknown ones and quotes match nothing).
        let group = |ids: &[&str]| Filter {
            ids: Some(ids.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(f(group(&["a1", "a3", "zz", "a\"]"])), ["a3", "a1"]);
        assert_eq!(f(group(&[])), Vec::<String>::new());
        assert_eq!(
            f(Filter {
                severity: vec!["high".into()],
                ..group(&["a1", "a3"])
            }),
            ["a1"]
        );
        let many: Vec<String> = (0..10_000)
            .map(|i| format!("x{i}"))
            .chain(["a2".into()])
            .collect();
        let page = c
            .query(
                &Filter {
                    ids: Some(many),
                    ..Default::default()
                },
                50,
                None,
            )
            .unwrap();
        assert_eq!((ids(&page), page.counts.total), (vec!["a2"], 1));
        assert_eq!(
            f(Filter {
                silenced: Some(false),
                ..Default::default()
            })
            .len(),
            3
        );
        let minute = |m: i64| (1_790_000_000 + m * 60) * 1000;
        assert_eq!(
            f(Filter {
                from_ms: Some(minute(2)),
                to_ms: Some(minute(4)),
                ..Default::default()
            }),
            ["a3", "a2"]
        );
        assert_eq!(
            f(Filter {
                text: words("honey"),
                ..Default::default()
            }),
            ["a2", "a1"]
        );
        assert_eq!(
            f(Filter {
                text: words("a3 honey"),
                ..Default::default()
            }),
            Vec::<String>::new(),
            "all words"
        );
        assert_eq!(
            f(Filter {
                text: words("a3 report.txt"),
                ..Default::default()
            }),
            ["a3"]
        );
        assert_eq!(
            f(Filter {
                text: words("mimikatz"),
                ..Default::default()
            }),
            ["a4"]
        );
        assert_eq!(
            f(Filter {
                text: words("/home/a2/"),
                ..Default::default()
            }),
            ["a2"]
        );
    }

    #[test]
    fn triage_joins_in_and_an_older_version_never_wins() {
        let mut c = catalog();
        let acked = Triage {
            state: State::Acknowledged,
            assignee: Some("bob".into()),
            verdict: None,
        };
        let resolved = Triage {
            state: State::Resolved,
            assignee: Some("bob".into()),
            verdict: Some(Verdict::Benign),
        };
        c.set_triage(&[("a1".into(), acked.clone(), 5), ("a2".into(), resolved, 9)])
            .unwrap();
        c.set_triage(&[("a1".into(), Triage::default(), 3)])
            .unwrap();
        let f = |f: Filter| q(&c, f);
        assert_eq!(
            f(Filter {
                state: vec!["acknowledged".into()],
                ..Default::default()
            }),
            ["a1"]
        );
        assert_eq!(
            f(Filter {
                state: vec!["open".into()],
                ..Default::default()
            }),
            ["a4", "a3"]
        );
        assert_eq!(
            f(Filter {
                assignee: Some("bob".into()),
                ..Default::default()
            }),
            ["a2", "a1"]
        );
        assert_eq!(
            f(Filter {
                assignee: Some("none".into()),
                ..Default::default()
            }),
            ["a4", "a3"]
        );
        let page = c.query(&Filter::default(), 10, None).unwrap();
        let a2 = page.alerts.iter().find(|a| a["id"] == "a2").unwrap();
        assert_eq!(
            (
                a2["state"].as_str(),
                a2["verdict"].as_str(),
                a2["version"].as_u64()
            ),
            (Some("resolved"), Some("benign"), Some(9))
        );
        assert_eq!(page.counts.state["resolved"], 1);
        assert_eq!(page.counts.state["open"], 2);
    }

    /// The tallies (built after a first load, then kept by triggers) count
    /// what reading every alert counts, through inserts before and after
    /// the build, triage that changes states, and channel filters.
    #[test]
    fn tallies_count_what_a_full_read_counts() {
        let channels = ["email-soc", "inbox", "pd"];
        let severities = [Some("high"), Some("low"), None];
        let make = |i: usize| {
            let mut a = alert(&format!("t{i}"), "Name", severities[i % 3], "C.1", i as i64);
            a.routed_to = Some(
                channels
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| (i >> c) & 1 == 1)
                    .map(|(_, c)| (*c).to_owned())
                    .collect(),
            );
            (i as u64 + 1, a)
        };
        let mut built = Catalog::open(None).unwrap();
        let mut plain = Catalog::open(None).unwrap();
        let first: Vec<_> = (0..40).map(make).collect();
        built.add(&first).unwrap();
        plain.add(&first).unwrap();
        built.finish_rebuild().unwrap();
        built.finish_rebuild().unwrap();
        let later: Vec<_> = (40..80).map(make).collect();
        built.add(&later).unwrap();
        plain.add(&later).unwrap();
        let states = [State::Acknowledged, State::Resolved, State::Open];
        for step in 0..120usize {
            let id = format!("t{}", (step * 37) % 80);
            let t = Triage {
                state: states[step % 3],
                assignee: None,
                verdict: (states[step % 3] == State::Resolved).then_some(Verdict::Benign),
            };
            let row = [(id, t, step as u64 + 1)];
            built.set_triage(&row).unwrap();
            plain.set_triage(&row).unwrap();
        }
        let mut filters = vec![Filter::default()];
        for c in channels.iter().chain(&["nowhere"]) {
            filters.push(Filter {
                channel: Some((*c).into()),
                ..Default::default()
            });
            filters.push(Filter {
                channel: Some((*c).into()),
                state: vec!["resolved".into(), "open".into()],
                severity: vec!["high".into()],
                ..Default::default()
            });
        }
        filters.push(Filter {
            state: vec!["acknowledged".into()],
            ..Default::default()
        });
        // Words and time ranges count from the facet array: the same
        // counts and pages as SQLite's.
        for (text, from, to) in [
            (vec!["name".to_owned()], None, None),
            (vec!["nothing".to_owned()], None, None),
            (vec![], Some(ms(minute(10))), Some(ms(minute(30)))),
            (vec![], None, Some(ms(minute(50)))),
            (vec![], Some(ms(minute(70))), None),
            (vec![], Some(ms(minute(200))), None),
        ] {
            filters.push(Filter {
                text: text.clone(),
                from_ms: from,
                to_ms: to,
                ..Default::default()
            });
            filters.push(Filter {
                text,
                from_ms: from,
                to_ms: to,
                state: vec!["resolved".into(), "acknowledged".into()],
                severity: vec!["low".into(), "none".into()],
                ..Default::default()
            });
        }
        // Triage before its alert: the array learns the state it arrives in.
        let early = [(
            "t85".to_owned(),
            Triage {
                state: State::Resolved,
                assignee: None,
                verdict: Some(Verdict::Benign),
            },
            500,
        )];
        built.set_triage(&early).unwrap();
        plain.set_triage(&early).unwrap();
        built.add(&[make(85)]).unwrap();
        plain.add(&[make(85)]).unwrap();
        plain.facets.off = true;
        for f in filters {
            let a = built.query(&f, 500, None).unwrap();
            let b = plain.query(&f, 500, None).unwrap();
            assert_eq!(a.counts, b.counts, "{f:?}");
            assert_eq!(a.counts.total, a.alerts.len() as u64, "{f:?}");
            assert_eq!(a.alerts, b.alerts, "{f:?}");
        }
    }

    #[test]
    fn a_repeat_of_a_key_links_back_to_the_alert_before_it() {
        let mut c = Catalog::open(None).unwrap();
        let keyed = |id: &str, key: Option<&str>, minute: i64| {
            let mut a = alert(id, "Honey file opened", Some("high"), "C.1", minute);
            a.dedup = key.map(|k| talon_proto::DedupInfo {
                key: k.into(),
                window_start: a.received_at,
                window_end: a.received_at,
                suppressed_before: 0,
            });
            a
        };
        c.add(&[
            (1, keyed("k1", Some("Honey|C.1"), 1)),
            (2, keyed("other", Some("Honey|C.2"), 2)),
            (3, keyed("k2", Some("Honey|C.1"), 3)),
            (4, keyed("k3", Some("Honey|C.1"), 4)),
            (5, keyed("keyless", None, 5)),
        ])
        .unwrap();
        let resolved = Triage {
            state: State::Resolved,
            assignee: Some("bob".into()),
            verdict: Some(Verdict::FalsePositive),
        };
        c.set_triage(&[("k2".into(), resolved, 7)]).unwrap();
        let before = |id: &str| c.previous(id).unwrap();
        assert_eq!(before("k1"), None, "the first of its key");
        assert_eq!(before("other"), None);
        assert_eq!(before("keyless"), None, "no key: no repeat");
        assert_eq!(before("nope"), None);
        assert_eq!(before("k2").unwrap().id, "k1");
        let k3 = before("k3").unwrap();
        assert_eq!(
            (k3.id.as_str(), k3.state.as_str(), k3.verdict.as_deref()),
            ("k2", "resolved", Some("false_positive")),
            "the nearest before it, with its triage"
        );
        assert_eq!(k3.assignee.as_deref(), Some("bob"));
    }

    #[test]
    fn triage_before_its_alert_applies_when_it_arrives_and_counts_follow() {
        let mut c = catalog();
        let resolved = Triage {
            state: State::Resolved,
            assignee: None,
            verdict: Some(Verdict::Benign),
        };
        c.set_triage(&[("a9".into(), resolved, 4)]).unwrap();
        c.add(&[(9, alert("a9", "Late record", Some("low"), "C.9", 9))])
            .unwrap();
        let page = c
            .query(
                &Filter {
                    state: vec!["resolved".into()],
                    ..Default::default()
                },
                10,
                None,
            )
            .unwrap();
        assert_eq!(ids(&page), ["a9"]);
        assert_eq!(page.alerts[0]["version"], 4);
        // Counts from the tally (no filter, or severity and state only)
        // agree with counts read from the alerts (any other filter).
        let all = c.query(&Filter::default(), 1, None).unwrap().counts;
        assert_eq!(all.total, 5);
        assert_eq!(all.state["resolved"], 1);
        assert_eq!(all.state["open"], 4);
        let low = c
            .query(
                &Filter {
                    severity: vec!["low".into()],
                    ..Default::default()
                },
                1,
                None,
            )
            .unwrap()
            .counts;
        assert_eq!((low.total, low.state["resolved"].as_u64()), (1, Some(1)));
        let read = c
            .query(
                &Filter {
                    source: Some("nats".into()),
                    ..Default::default()
                },
                1,
                None,
            )
            .unwrap()
            .counts;
        assert_eq!(read.state["resolved"], 1);
        assert_eq!(read.total, 4, "a4 is a rule's");
        c.set_triage(&[("a9".into(), Triage::default(), 7)])
            .unwrap();
        let all = c.query(&Filter::default(), 1, None).unwrap().counts;
        assert_eq!(
            all.state
                .get("resolved")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            0
        );
        assert_eq!(all.state["open"], 5);
    }

    #[test]
    fn a_record_seen_twice_is_one_alert_and_hostile_text_is_just_words() {
        let mut c = catalog();
        c.add(&[(9, alert("a1", "Honey file opened", Some("high"), "C.1", 1))])
            .unwrap();
        assert_eq!(c.len().unwrap(), 4);
        assert_eq!(c.seq_of("a1").unwrap(), Some(1));
        assert_eq!(c.seq_of("nope").unwrap(), None);
        for hostile in [
            "\"",
            "NEAR(",
            "*",
            "a OR b",
            "') OR 1=1 --",
            "name:honey",
            "^",
            "",
        ] {
            let got = c.query(
                &Filter {
                    text: words(hostile),
                    ..Default::default()
                },
                10,
                None,
            );
            assert!(got.is_ok(), "{hostile:?}: {got:?}");
        }
        assert_eq!(words(&"w ".repeat(1000)).len(), QUERY_WORDS);
    }
}
