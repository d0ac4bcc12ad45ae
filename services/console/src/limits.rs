//! Login rate limits, per user name and per client address: a few failures
//! are free, then each one more doubles the wait before the next try, up to
//! a cap. Pure: the clock is handed in. Kept per replica, in memory, with a
//! bounded number of entries (the oldest go first).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures in a row that cost nothing.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// A key forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Keys kept per table, at most.
pub const MAX_KEYS: usize = 100_000;

/// One key's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub failures: u32,
    pub last: Instant,
    /// No try before this.
    pub until: Instant,
}

/// The wait after `failures` failures in a row: none for the first
/// [`FREE_FAILURES`], then 1 s, 2 s, 4 s, … up to [`MAX_WAIT`].
pub fn wait_after(failures: u32) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None | Some(0) => Duration::ZERO,
        Some(n) => Duration::from_secs(1)
            .saturating_mul(1u32 << (n - 1).min(20))
            .min(MAX_WAIT),
    }
}

/// A table of entries by key.
#[derive(Debug)]
struct Table<K> {
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Table<K> {
        Table {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must still wait, if at all.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(key)?;
        entry
            .until
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    fn fail(&self, key: &K, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_KEYS && !entries.contains_key(key) {
            entries.retain(|_, e| now.saturating_duration_since(e.last) < FORGET_AFTER);
            if entries.len() >= MAX_KEYS {
                // Still full: the least recently failing one goes.
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        let entry = entries.entry(key.clone()).or_insert(Entry {
            failures: 0,
            last: now,
            until: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        entry.until = now.checked_add(wait_after(entry.failures)).unwrap_or(now);
    }

    fn forget(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The console's login limits.
#[derive(Debug)]
pub struct LoginLimits {
    by_name: Table<String>,
    by_addr: Table<IpAddr>,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            by_name: Table::new(),
            by_addr: Table::new(),
        }
    }
}

impl LoginLimits {
    /// How long a login for `name` from `addr` must wait, if at all: the
    /// longer of the two waits.
    pub fn blocked(&self, name: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let by_name = self.by_name.blocked(&name.to_owned(), now);
        let by_addr = self.by_addr.blocked(&addr, now);
        by_name.max(by_addr)
    }

    /// A wrong name or password.
    pub fn failed(&self, name: &str, addr: IpAddr, now: Instant) {
        self.by_name.fail(&name.to_owned(), now);
        self.by_addr.fail(&addr, now);
    }

    /// A good login clears both.
    pub fn succeeded(&self, name: &str, addr: IpAddr) {
        self.by_name.forget(&name.to_owned());
        self.by_addr.forget(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap() {
        let secs = |f: u32| wait_after(f).as_secs();
        assert_eq!(
            (0..=12).map(secs).collect::<Vec<_>>(),
            [0, 0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64]
        );
        assert_eq!(secs(40), MAX_WAIT.as_secs());
        assert_eq!(secs(u32::MAX), MAX_WAIT.as_secs());
    }

    #[test]
    fn an_address_or_a_name_is_held_back_and_a_success_frees_both() {
        let limits = LoginLimits::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES {
            assert_eq!(limits.blocked(&format!("u{i}"), a, t0), None);
            limits.failed(&format!("u{i}"), a, t0);
        }
        assert_eq!(limits.blocked("x", a, t0), None, "the free failures");
        limits.failed("x", a, t0);
        assert_eq!(
            limits.blocked("y", a, t0),
            Some(Duration::from_secs(1)),
            "the address"
        );
        assert_eq!(limits.blocked("y", b, t0), None, "another address");
        assert_eq!(
            limits.blocked("y", a, t0 + Duration::from_secs(1)),
            None,
            "waited"
        );
        // One name from many addresses.
        for i in 0..=FREE_FAILURES {
            limits.failed("bob", IpAddr::from([10, 0, 0, i as u8]), t0);
        }
        assert_eq!(
            limits.blocked("bob", b, t0),
            Some(Duration::from_secs(1)),
            "the name"
        );
        limits.succeeded("bob", b);
        assert_eq!(limits.blocked("bob", b, t0), None);
        // Failures long ago are forgotten.
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        limits.failed("x", a, later);
        assert_eq!(limits.blocked("z", a, later), None, "a fresh start");
    }

    #[test]
    fn the_tables_stay_bounded() {
        let table: Table<u32> = Table::new();
        let t0 = Instant::now();
        for k in 0..(MAX_KEYS as u32 + 10) {
            table.fail(&k, t0 + Duration::from_millis(u64::from(k)));
        }
        let len = table.entries.lock().unwrap().len();
        assert!(len <= MAX_KEYS, "{len}");
    }
}
