//! The pure core of dedup: what a window record holds, how it is stored as
//! bytes, and what one alert does to it. No I/O here.

use regex::Regex;
use talon_kit::config::DedupConfig;
use talon_proto::DedupWindow;

/// One key's window, as stored in sled (40 bytes, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `received_at` of the alert that opened it, ms since the epoch.
    pub start_ms: i64,
    /// `start_ms + seconds * 1000`: alerts received before it are suppressed.
    pub end_ms: i64,
    /// Alerts suppressed in this window so far.
    pub suppressed: u64,
    /// Alerts suppressed in the key's previous window (the opener's
    /// `suppressed_before`).
    pub suppressed_before: u64,
    /// Stream sequence of the alert that opened it.
    pub opener_seq: u64,
}

pub const WINDOW_BYTES: usize = 40;

impl Window {
    pub fn to_bytes(self) -> [u8; WINDOW_BYTES] {
        let mut out = [0u8; WINDOW_BYTES];
        out[0..8].copy_from_slice(&self.start_ms.to_be_bytes());
        out[8..16].copy_from_slice(&self.end_ms.to_be_bytes());
        out[16..24].copy_from_slice(&self.suppressed.to_be_bytes());
        out[24..32].copy_from_slice(&self.suppressed_before.to_be_bytes());
        out[32..40].copy_from_slice(&self.opener_seq.to_be_bytes());
        out
    }

    /// `None` when `bytes` is not a stored window (a corrupt record).
    pub fn from_bytes(bytes: &[u8]) -> Option<Window> {
        let b: &[u8; WINDOW_BYTES] = bytes.try_into().ok()?;
        let word = |i: usize| -> Option<[u8; 8]> { b.get(i..i + 8)?.try_into().ok() };
        Some(Window {
            start_ms: i64::from_be_bytes(word(0)?),
            end_ms: i64::from_be_bytes(word(8)?),
            suppressed: u64::from_be_bytes(word(16)?),
            suppressed_before: u64::from_be_bytes(word(24)?),
            opener_seq: u64::from_be_bytes(word(32)?),
        })
    }

    /// Is an alert received at `at_ms` inside this window?
    pub fn covers(&self, at_ms: i64) -> bool {
        at_ms < self.end_ms
    }
}

/// What one alert does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It opened `window`: publish it downstream.
    Fresh(Window),
    /// Inside the key's window, which now counts it.
    Suppressed(Window),
    /// Negative window: passes, and leaves the key's state alone.
    Unsuppressed,
}

/// Applies an alert received at `at_ms` with a window of `seconds` (`None`:
/// never suppress it) to the key's current window. Windows run on `received_at`, never on the clock.
/// An alert received before the current window opened (a redelivery out of
/// order) is counted in it rather than opening an older window.
pub fn apply(current: Option<Window>, at_ms: i64, seconds: Option<i64>, seq: u64) -> Verdict {
    let Some(seconds) = seconds else {
        return Verdict::Unsuppressed;
    };
    match current {
        Some(mut w) if w.covers(at_ms) => {
            w.suppressed += 1;
            Verdict::Suppressed(w)
        }
        previous => Verdict::Fresh(Window {
            start_ms: at_ms,
            end_ms: at_ms.saturating_add(seconds.saturating_mul(1000)),
            suppressed: 0,
            suppressed_before: previous.map_or(0, |w| w.suppressed),
            opener_seq: seq,
        }),
    }
}

/// The window length rules of `[dedup]`: the alert's own `dedup` if set and
/// non-zero (negative: never suppress; above `max_seconds`: cut to it), else
/// the first override whose regex matches the name, else `default_seconds`.
#[derive(Debug, Clone)]
pub struct Lengths {
    default_seconds: i64,
    max_seconds: i64,
    overrides: Vec<(Regex, i64)>,
}

impl Lengths {
    /// The regexes were validated when the config was loaded.
    pub fn new(config: &DedupConfig) -> Result<Lengths, regex::Error> {
        let overrides = config
            .r#override
            .iter()
            .map(|o| Ok((Regex::new(&o.name)?, o.seconds)))
            .collect::<Result<_, regex::Error>>()?;
        Ok(Lengths {
            default_seconds: config.default_seconds,
            max_seconds: config.max_seconds,
            overrides,
        })
    }

    /// The length in seconds of the window of an alert called `name` that
    /// asked for `own`; `None` when it is never suppressed.
    pub fn seconds(&self, name: &str, own: DedupWindow) -> Option<i64> {
        match own {
            DedupWindow::Never => None,
            DedupWindow::Seconds(s) => Some(i64::from(s).min(self.max_seconds)),
            DedupWindow::Default => Some(
                self.overrides
                    .iter()
                    .find(|(re, _)| re.is_match(name))
                    .map_or(self.default_seconds, |(_, s)| *s),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64, suppressed: u64, before: u64, seq: u64) -> Window {
        Window {
            start_ms: start,
            end_ms: end,
            suppressed,
            suppressed_before: before,
            opener_seq: seq,
        }
    }

    fn check(current: Option<Window>, at: i64, seconds: i64, expected: Verdict) {
        let seconds = (seconds >= 0).then_some(seconds);
        assert_eq!(
            apply(current, at, seconds, 9),
            expected,
            "{current:?} at {at} for {seconds:?}s"
        );
    }

    #[test]
    fn verdicts() {
        // The first alert of a key opens a window.
        check(None, 1_000, 2, Verdict::Fresh(w(1_000, 3_000, 0, 0, 9)));
        // Inside it: suppressed and counted.
        check(
            Some(w(1_000, 3_000, 4, 0, 1)),
            2_999,
            2,
            Verdict::Suppressed(w(1_000, 3_000, 5, 0, 1)),
        );
        // At its end: a new window carrying the count.
        check(
            Some(w(1_000, 3_000, 5, 0, 1)),
            3_000,
            60,
            Verdict::Fresh(w(3_000, 63_000, 0, 5, 9)),
        );
        // Long after: the same.
        check(
            Some(w(1_000, 3_000, 2, 7, 1)),
            999_999,
            1,
            Verdict::Fresh(w(999_999, 1_000_999, 0, 2, 9)),
        );
        // Before the window opened (redelivered out of order): counted in it.
        check(
            Some(w(1_000, 3_000, 0, 0, 1)),
            500,
            2,
            Verdict::Suppressed(w(1_000, 3_000, 1, 0, 1)),
        );
        // Negative: passes, state untouched.
        check(
            Some(w(1_000, 3_000, 0, 0, 1)),
            2_000,
            -1,
            Verdict::Unsuppressed,
        );
        // Zero length: every alert opens its own window.
        check(
            Some(w(1_000, 1_000, 0, 0, 1)),
            1_000,
            0,
            Verdict::Fresh(w(1_000, 1_000, 0, 0, 9)),
        );
        // Huge windows saturate rather than overflow.
        check(None, 5, i64::MAX, Verdict::Fresh(w(5, i64::MAX, 0, 0, 9)));
    }

    #[test]
    fn records_round_trip() {
        let x = w(-5, i64::MAX, u64::MAX, 3, 77);
        assert_eq!(Window::from_bytes(&x.to_bytes()), Some(x));
        assert_eq!(Window::from_bytes(&[0u8; 39]), None);
    }

    #[test]
    fn lengths_follow_own_then_override_then_default() {
        let text = "[dedup]\ndefault_seconds = 7200\n[[dedup.override]]\nname = \"^Client event\"\nseconds = 3600\n[[dedup.override]]\nname = \"event\"\nseconds = 60\n";
        let config = talon_kit::Config::parse(text, &Default::default()).unwrap();
        let l = Lengths::new(&config.dedup).unwrap();
        assert_eq!(
            l.seconds("Client event query error", DedupWindow::of(0)),
            Some(3600),
            "first matching override"
        );
        assert_eq!(l.seconds("an event", DedupWindow::of(0)), Some(60));
        assert_eq!(l.seconds("other", DedupWindow::of(0)), Some(7200));
        assert_eq!(
            l.seconds("Client event", DedupWindow::of(30)),
            Some(30),
            "the alert's own dedup wins"
        );
        assert_eq!(l.seconds("x", DedupWindow::of(-1)), None);
        assert_eq!(
            l.seconds("x", DedupWindow::of(i64::MIN)),
            None,
            "any negative: never suppress"
        );
        assert_eq!(
            l.seconds("x", DedupWindow::of(i64::MAX)),
            Some(86_400),
            "a producer's window is cut to max_seconds"
        );
        assert_eq!(l.seconds("x", DedupWindow::of(86_401)), Some(86_400));
        assert_eq!(l.seconds("x", DedupWindow::of(86_400)), Some(86_400));
    }
}
