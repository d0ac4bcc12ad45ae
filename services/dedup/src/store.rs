//! One partition's state in sled: window records, an outbox of outputs not
//! yet acked by JetStream, the last input sequence applied, and the alerts
//! applied lately (by `received_at` and id). Every batch is written
//! atomically and flushed before its inputs are acked.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::window::Window;

const WINDOW: u8 = b'w';
const OUTBOX: u8 = b'o';
const LAST_SEQ: &[u8] = b"m:last_seq";
const APPLIED: u8 = b'a';

/// Applied alerts are remembered this long (on `received_at`, behind the
/// newest seen): a copy of an input comes back only while ingest retries
/// an input it had already published.
pub const KEEP_APPLIED_MS: i64 = 3600 * 1000;

/// Ended windows that counted suppressions are kept this long after their
/// end, for the next window's `suppressed_before`; then removed.
pub const KEEP_ENDED_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled at {path}: {source}")]
    Sled { path: String, source: sled::Error },
    /// Never returned in practice: an [`Output`] holds three strings, which
    /// always serialize.
    #[error("encoding an outbox entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A message to publish once its batch is durable: kept in the outbox until
/// JetStream acked it, so a crash in between republishes it (with the same
/// `Nats-Msg-Id`) instead of losing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub subject: String,
    pub msg_id: String,
    pub body: String,
}

/// What a batch changes.
#[derive(Debug, Default)]
pub struct Commit {
    pub windows: Vec<(String, Window)>,
    /// The alerts applied: (`received_at` ms, id).
    pub applied: Vec<(i64, String)>,
    pub outputs: Vec<(u64, Output)>,
    pub last_seq: u64,
}

pub struct PartitionStore {
    db: sled::Db,
    path: PathBuf,
}

/// A stored window, or `None` (logged with its key) when the record does not
/// decode.
fn decoded_window(key: &[u8], bytes: &[u8]) -> Option<Window> {
    let w = Window::from_bytes(bytes);
    if w.is_none() {
        tracing::error!(key = %String::from_utf8_lossy(key), len = bytes.len(), "a window record that does not decode; taken as missing");
    }
    w
}

/// A stored outbox entry, or `None` (logged with its sequence) when the
/// record does not decode.
fn decoded_output(seq: u64, bytes: &[u8]) -> Option<Output> {
    match serde_json::from_slice(bytes) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::error!(seq, error = %e, "an outbox record that does not decode; taken as missing");
            None
        }
    }
}

fn window_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(WINDOW);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `a` + `received_at` (ms, order-preserving) + the alert id: ordered by
/// time, so forgetting the old ones is one range.
fn applied_key(at_ms: i64, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.push(APPLIED);
    k.extend_from_slice(&((at_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn outbox_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = OUTBOX;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

impl PartitionStore {
    /// Opens (or creates) the store of `partition` under `data_dir`, with a
    /// page cache of `cache_bytes`.
    pub fn open(
        data_dir: &Path,
        partition: u32,
        cache_bytes: u64,
    ) -> Result<PartitionStore, StoreError> {
        let path = data_dir.join(format!("partition-{partition}"));
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(|source| StoreError::Sled {
                path: path.display().to_string(),
                source,
            })?;
        Ok(PartitionStore { db, path })
    }

    fn err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// `key`'s window. A record that does not decode is logged with its key
    /// and taken as missing: the next alert opens a new window.
    pub fn window(&self, key: &str) -> Result<Option<Window>, StoreError> {
        match self.db.get(window_key(key)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(bytes) => Ok(decoded_window(key.as_bytes(), &bytes)),
        }
    }

    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get(LAST_SEQ)
            .map_err(|e| self.err(e))?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Writes `commit` in one atomic batch and flushes it to disk.
    pub async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, w) in &commit.windows {
            batch.insert(window_key(key), w.to_bytes().to_vec());
        }
        for (at_ms, id) in &commit.applied {
            batch.insert(applied_key(*at_ms, id), Vec::new());
        }
        for (seq, out) in &commit.outputs {
            // An Output holds three strings: it always serializes, and this
            // error is never returned.
            let bytes = serde_json::to_vec(out)?;
            batch.insert(outbox_key(*seq).to_vec(), bytes);
        }
        batch.insert(LAST_SEQ, commit.last_seq.to_be_bytes().to_vec());
        self.db.apply_batch(batch).map_err(|e| self.err(e))?;
        self.db.flush_async().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Was the alert `id`, received at `at_ms`, applied already (under
    /// another input sequence: a copy JetStream stored again)?
    pub fn was_applied(&self, at_ms: i64, id: &str) -> Result<bool, StoreError> {
        self.db
            .contains_key(applied_key(at_ms, id))
            .map_err(|e| self.err(e))
    }

    /// Forgets up to `max` applied alerts received before `before_ms`;
    /// returns how many.
    pub fn forget_applied_before(&self, before_ms: i64, max: usize) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for item in self
            .db
            .range(applied_key(i64::MIN, "")..applied_key(before_ms, ""))
            .take(max)
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            batch.remove(k);
            removed += 1;
        }
        self.db.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(removed)
    }

    /// The output recorded for input `seq`, if it is still unacked (a
    /// record that does not decode is logged and taken as missing).
    pub fn output(&self, seq: u64) -> Result<Option<Output>, StoreError> {
        match self.db.get(outbox_key(seq)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(bytes) => Ok(decoded_output(seq, &bytes)),
        }
    }

    /// Every output still in the outbox, oldest first; records that do not
    /// decode are logged and left out.
    pub fn outbox(&self) -> Result<Vec<(u64, Output)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([OUTBOX]) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(seq) = k
                .get(1..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                tracing::error!(key = ?k.as_ref(), "an outbox key that does not decode; ignored");
                continue;
            };
            if let Some(output) = decoded_output(seq, &v) {
                out.push((seq, output));
            }
        }
        Ok(out)
    }

    /// Drops outputs JetStream has acked (flushed with the next commit: if
    /// that never comes, they are published again, with the same id).
    pub fn remove_outputs(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(outbox_key(*seq).to_vec());
        }
        self.db.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// Windows whose key starts with `prefix` and sorts after `after`, up to
    /// `limit`.
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Window)>, StoreError> {
        let start = match after {
            Some(a) => {
                let mut k = window_key(a);
                k.push(0);
                k
            }
            None => window_key(prefix),
        };
        let end = window_key(prefix);
        let mut out = Vec::new();
        for item in self.db.range(start..) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(&end) || out.len() >= limit {
                break;
            }
            let key = String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned();
            if let Some(w) = decoded_window(key.as_bytes(), &v) {
                out.push((key, w));
            }
        }
        Ok(out)
    }

    /// Removes `key`'s window; the next alert with it opens a new one.
    pub async fn forget(&self, key: &str) -> Result<bool, StoreError> {
        let existed = self
            .db
            .remove(window_key(key))
            .map_err(|e| self.err(e))?
            .is_some();
        self.db.flush_async().await.map_err(|e| self.err(e))?;
        Ok(existed)
    }

    /// One step of the background clean-up: looks at up to `max` windows
    /// after `cursor` and removes those that ended before `watermark_ms`
    /// (derived from the `received_at` of the alerts this partition has
    /// processed, never from the clock) and have nothing to hand on (no
    /// suppressions, or ended over `KEEP_ENDED_MS` ago). Returns the next
    /// cursor (`None` at the end of a pass), how many were removed, and how
    /// many of those seen are live.
    pub fn sweep(
        &self,
        cursor: Option<&[u8]>,
        watermark_ms: i64,
        max: usize,
    ) -> Result<Sweep, StoreError> {
        let start = match cursor {
            Some(c) => {
                let mut k = c.to_vec();
                k.push(0);
                k
            }
            None => vec![WINDOW],
        };
        let mut sweep = Sweep::default();
        let mut batch = sled::Batch::default();
        let mut seen = 0;
        for item in self.db.range(start..) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&WINDOW) {
                sweep.next = None;
                break;
            }
            let Some(w) = decoded_window(k.get(1..).unwrap_or_default(), &v) else {
                // Taken as missing: the sweep clears it.
                batch.remove(k.clone());
                sweep.removed += 1;
                seen += 1;
                sweep.next = Some(k.to_vec());
                continue;
            };
            if w.end_ms > watermark_ms {
                sweep.live += 1;
            } else if w.suppressed == 0 || w.end_ms < watermark_ms.saturating_sub(KEEP_ENDED_MS) {
                batch.remove(k.clone());
                sweep.removed += 1;
            }
            seen += 1;
            sweep.next = Some(k.to_vec());
            if seen >= max {
                break;
            }
        }
        if seen < max {
            sweep.next = None;
        }
        self.db.apply_batch(batch).map_err(|e| self.err(e))?;
        Ok(sweep)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub struct Sweep {
    pub next: Option<Vec<u8>>,
    pub removed: u64,
    pub live: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(end_ms: i64, suppressed: u64) -> Window {
        Window {
            start_ms: 0,
            end_ms,
            suppressed,
            suppressed_before: 0,
            opener_seq: 1,
        }
    }

    #[tokio::test]
    async fn applied_alerts_are_known_until_forgotten_in_received_at_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = PartitionStore::open(dir.path(), 0, 1 << 20).unwrap();
        let commit = Commit {
            applied: vec![(-5, "old".into()), (1_000, "a".into()), (2_000, "b".into())],
            last_seq: 3,
            ..Commit::default()
        };
        store.commit(&commit).await.unwrap();
        assert!(store.was_applied(1_000, "a").unwrap());
        assert!(
            !store.was_applied(1_001, "a").unwrap(),
            "same id, another input"
        );
        assert!(!store.was_applied(1_000, "c").unwrap());
        assert_eq!(store.forget_applied_before(2_000, 100).unwrap(), 2);
        assert!(!store.was_applied(-5, "old").unwrap());
        assert!(!store.was_applied(1_000, "a").unwrap());
        assert!(store.was_applied(2_000, "b").unwrap());
    }

    #[tokio::test]
    async fn commits_survive_reopening_and_the_outbox_drains() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = PartitionStore::open(dir.path(), 3, 1 << 20).unwrap();
            let out = Output {
                subject: "talon.alerts.unique".into(),
                msg_id: "id".into(),
                body: "{}".into(),
            };
            s.commit(&Commit {
                windows: vec![("k".into(), w(10, 2))],
                outputs: vec![(7, out.clone())],
                last_seq: 7,
                ..Commit::default()
            })
            .await
            .unwrap();
            assert_eq!(s.output(7).unwrap(), Some(out));
        }
        let s = PartitionStore::open(dir.path(), 3, 1 << 20).unwrap();
        assert_eq!(s.last_seq().unwrap(), 7);
        assert_eq!(s.window("k").unwrap(), Some(w(10, 2)));
        assert_eq!(s.outbox().unwrap().len(), 1);
        s.remove_outputs(&[7]).unwrap();
        assert!(s.outbox().unwrap().is_empty());
        assert!(s.forget("k").await.unwrap());
        assert_eq!(s.window("k").unwrap(), None);
    }

    #[tokio::test]
    async fn list_pages_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = PartitionStore::open(dir.path(), 0, 1 << 20).unwrap();
        let windows = ["a1", "a2", "a3", "b1"]
            .iter()
            .map(|k| (k.to_string(), w(10, 0)))
            .collect();
        s.commit(&Commit {
            windows,
            outputs: vec![],
            last_seq: 1,
            ..Commit::default()
        })
        .await
        .unwrap();
        let keys = |v: Vec<(String, Window)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(s.list("a", None, 2).unwrap()), ["a1", "a2"]);
        assert_eq!(keys(s.list("a", Some("a2"), 2).unwrap()), ["a3"]);
        assert_eq!(
            keys(s.list("", None, 10).unwrap()),
            ["a1", "a2", "a3", "b1"]
        );
    }

    #[tokio::test]
    async fn sweep_removes_ended_windows_but_keeps_counts_owed() {
        let dir = tempfile::tempdir().unwrap();
        let s = PartitionStore::open(dir.path(), 0, 1 << 20).unwrap();
        let now = KEEP_ENDED_MS * 2;
        let windows = vec![
            ("ended-empty".to_string(), w(now - 1, 0)),
            ("ended-counted".to_string(), w(now - 1, 3)),
            (
                "ended-counted-long-ago".to_string(),
                w(now - KEEP_ENDED_MS - 1, 3),
            ),
            ("live".to_string(), w(now + 1, 0)),
        ];
        s.commit(&Commit {
            windows,
            outputs: vec![],
            last_seq: 1,
            ..Commit::default()
        })
        .await
        .unwrap();
        let mut cursor = None;
        let (mut removed, mut live) = (0, 0);
        loop {
            let sweep = s.sweep(cursor.as_deref(), now, 1).unwrap();
            removed += sweep.removed;
            live += sweep.live;
            match sweep.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!((removed, live), (2, 1));
        let left: Vec<String> = s
            .list("", None, 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(left, ["ended-counted", "live"]);
    }
}
