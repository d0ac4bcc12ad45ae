//! The pure core of rules with state (DESIGN §14): one key's state and one
//! row in, the next state and the alert to raise (if any) out; for
//! `absent`, one tick of a clock handed in. Times are the rows' own (`_ts`,
//! in milliseconds), so a backlog replayed later counts as it happened.
//! No I/O here: where the state lives, and how two ingest replicas share
//! it, is the shell's business.
//!
//! Every step is idempotent for the row it is given: a row applied twice
//! (redelivered after a crash between writing the state and acking it)
//! changes nothing the second time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a stateful rule counts, with its limits in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// At least `count` rows of one key with at most `within_ms` between
    /// the first and the last; the alert carries up to `samples` of them.
    Threshold {
        count: usize,
        within_ms: i64,
        samples: usize,
    },
    /// A key seen for the first time, or for the first time in
    /// `lookback_ms`.
    FirstSeen { lookback_ms: i64 },
    /// A key that has sent no row for `after_ms`.
    Absent { after_ms: i64 },
}

/// One row counted by a threshold: its identity (what its alert's
/// `Nats-Msg-Id` derives from), its time and, for the newest few, the
/// columns the alert shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    pub id: String,
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Value>,
}

/// Row ids a threshold remembers per key: more than one pull of the rules'
/// consumer (256 rows) can hold unacked, and more than the largest
/// `count`.
pub const REMEMBER: usize = 1024;

/// One key's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyState {
    /// threshold: the rows counted toward the next alert, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Counted>,
    /// threshold: the ids of the last [`REMEMBER`] rows applied, oldest
    /// first, so that one of them redelivered (a replica died between
    /// writing the state and acking a batch of rows) is not counted again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    /// first_seen, absent: the newest row's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<i64>,
    /// absent: the newest row's columns (what the alert shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_row: Option<Value>,
    /// absent: the silence since `last_ms` has raised its alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raised: bool,
}

/// What an alert of a stateful rule says beyond its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    /// Rows counted (threshold), 1 (first_seen) or 0 (absent).
    pub count: usize,
    /// The first and the last counted row's time; for absent, both the
    /// last row's.
    pub first_ms: i64,
    pub last_ms: i64,
    /// threshold: the newest counted rows' columns, oldest first.
    pub samples: Vec<Value>,
    /// first_seen: when the key was seen before (outside the lookback).
    pub previous_ms: Option<i64>,
}

/// Applies one row (`id`, its time `at_ms`, its `sample` columns) to a
/// threshold's state.
pub fn threshold(
    state: &mut KeyState,
    id: &str,
    at_ms: i64,
    sample: Value,
    count: usize,
    within_ms: i64,
    samples: usize,
) -> Option<Raise> {
    if state.applied.iter().any(|c| c == id) || state.rows.iter().any(|r| r.id == id) {
        return None;
    }
    state.applied.push(id.to_owned());
    if state.applied.len() > REMEMBER {
        let over = state.applied.len() - REMEMBER;
        state.applied.drain(..over);
    }
    // After the rows of its time or before: the order of equal times is
    // the order of arrival.
    let at = state.rows.partition_point(|r| r.at_ms <= at_ms);
    state.rows.insert(
        at,
        Counted {
            id: id.to_owned(),
            at_ms,
            sample: Some(sample),
        },
    );
    let newest = state.rows.last().map_or(at_ms, |r| r.at_ms);
    let oldest_kept = newest.saturating_sub(within_ms.max(0));
    state.rows.retain(|r| r.at_ms >= oldest_kept);
    let keep_samples = state.rows.len().saturating_sub(samples);
    for r in state.rows.iter_mut().take(keep_samples) {
        r.sample = None;
    }
    if state.rows.len() < count.max(1) {
        return None;
    }
    let rows = std::mem::take(&mut state.rows);
    Some(Raise {
        count: rows.len(),
        first_ms: rows.first().map_or(at_ms, |r| r.at_ms),
        last_ms: newest,
        samples: rows.into_iter().filter_map(|r| r.sample).collect(),
        previous_ms: None,
    })
}

/// Applies one row at `at_ms` to a first_seen's state.
pub fn first_seen(state: &mut KeyState, at_ms: i64, lookback_ms: i64) -> Option<Raise> {
    let previous = state.last_ms;
    state.last_ms = Some(previous.map_or(at_ms, |last| last.max(at_ms)));
    let fresh = match previous {
        None => true,
        Some(last) => at_ms.saturating_sub(last) > lookback_ms,
    };
    fresh.then_some(Raise {
        count: 1,
        first_ms: at_ms,
        last_ms: at_ms,
        samples: Vec::new(),
        previous_ms: previous,
    })
}

/// Applies one row at `at_ms` (its columns `row`) to an absent's state:
/// a newer row ends a silence.
pub fn absent_row(state: &mut KeyState, at_ms: i64, row: Value) {
    if state.last_ms.is_none_or(|last| at_ms > last) {
        state.last_ms = Some(at_ms);
        state.last_row = Some(row);
        state.raised = false;
    }
}

/// An absent's state at `now_ms`: the alert, once per silence, when no row
/// came for `after_ms`. A key never seen has no silence.
pub fn absent_tick(state: &mut KeyState, now_ms: i64, after_ms: i64) -> Option<Raise> {
    let last = state.last_ms?;
    if state.raised || now_ms.saturating_sub(last) < after_ms {
        return None;
    }
    state.raised = true;
    Some(Raise {
        count: 0,
        first_ms: last,
        last_ms: last,
        samples: Vec::new(),
        previous_ms: None,
    })
}

/// Applies one row to the state of a rule of `kind`.
pub fn apply(kind: Kind, state: &mut KeyState, id: &str, at_ms: i64, row: Value) -> Option<Raise> {
    match kind {
        Kind::Threshold {
            count,
            within_ms,
            samples,
        } => threshold(state, id, at_ms, row, count, within_ms, samples),
        Kind::FirstSeen { lookback_ms } => first_seen(state, at_ms, lookback_ms),
        Kind::Absent { .. } => {
            absent_row(state, at_ms, row);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S: i64 = 1000;

    /// Applies rows (id, seconds) to a fresh threshold of `count` within
    /// `within` seconds; the counts of the alerts raised, in order.
    fn check_threshold(rows: &[(&str, i64)], count: usize, within: i64, expected: &[usize]) {
        let mut state = KeyState::default();
        let raised: Vec<usize> = rows
            .iter()
            .filter_map(|(id, at)| {
                threshold(
                    &mut state,
                    id,
                    at * S,
                    json!({"id": id}),
                    count,
                    within * S,
                    3,
                )
            })
            .map(|r| r.count)
            .collect();
        assert_eq!(raised, expected, "rows {rows:?}");
        // What the state holds survives a round trip through JSON.
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<KeyState>(&text).unwrap(), state);
    }

    fn ids(n: usize, every: i64) -> Vec<(String, i64)> {
        (0..n)
            .map(|i| (format!("r{i}"), i as i64 * every))
            .collect()
    }

    fn refs(rows: &[(String, i64)]) -> Vec<(&str, i64)> {
        rows.iter().map(|(id, at)| (id.as_str(), *at)).collect()
    }

    #[test]
    fn a_threshold_counts_rows_within_its_window() {
        // 9 rows in 60 s: nothing; the 10th (still within 60 s): 10.
        check_threshold(&refs(&ids(9, 6)), 10, 60, &[]);
        check_threshold(&refs(&ids(10, 6)), 10, 60, &[10]);
        // Exactly `within` from first to last counts.
        check_threshold(&[("a", 0), ("b", 30), ("c", 60)], 3, 60, &[3]);
        check_threshold(&[("a", 0), ("b", 30), ("c", 61)], 3, 60, &[]);
        // 10 rows spread over 2 minutes: never 10 within 60 s.
        check_threshold(&refs(&ids(10, 13)), 10, 60, &[]);
        // After an alert the count starts over.
        check_threshold(&refs(&ids(20, 1)), 10, 60, &[10, 10]);
        check_threshold(&refs(&ids(19, 1)), 10, 60, &[10]);
        // A count of 1 raises on every row.
        check_threshold(&[("a", 0), ("b", 1)], 1, 60, &[1, 1]);
    }

    #[test]
    fn a_threshold_counts_each_row_once() {
        // A row applied twice (redelivered) counts once, before and after
        // the alert it was part of.
        check_threshold(&[("a", 0), ("a", 0), ("b", 1), ("b", 1)], 3, 60, &[]);
        check_threshold(
            &[("a", 0), ("b", 1), ("c", 2), ("c", 2), ("a", 0)],
            3,
            60,
            &[3],
        );
    }

    #[test]
    fn a_threshold_orders_rows_by_their_own_time() {
        // Late rows inside the window count; a row older than the window
        // of the newest does not.
        check_threshold(&[("c", 50), ("a", 10), ("b", 20)], 3, 60, &[3]);
        check_threshold(&[("c", 100), ("b", 90), ("a", 10)], 3, 60, &[]);
        // A newer row pushes older ones out.
        check_threshold(&[("a", 0), ("b", 10), ("c", 100), ("d", 110)], 3, 60, &[]);
    }

    #[test]
    fn a_threshold_alert_carries_times_and_the_newest_samples() {
        let mut state = KeyState::default();
        let mut raise = None;
        for i in 0..5 {
            raise = threshold(
                &mut state,
                &format!("r{i}"),
                (100 + i) * S,
                json!(i),
                5,
                60 * S,
                2,
            );
        }
        let raise = raise.expect("the fifth row raises");
        assert_eq!(raise.count, 5);
        assert_eq!((raise.first_ms, raise.last_ms), (100 * S, 104 * S));
        assert_eq!(raise.samples, [json!(3), json!(4)]);
        assert!(state.rows.is_empty());
        assert_eq!(state.applied.len(), 5);
    }

    #[test]
    fn a_threshold_keeps_samples_only_on_the_newest_rows() {
        let mut state = KeyState::default();
        for i in 0..6 {
            threshold(
                &mut state,
                &format!("r{i}"),
                i * S,
                json!(i),
                100,
                60 * S,
                2,
            );
        }
        let kept: Vec<_> = state.rows.iter().map(|r| r.sample.clone()).collect();
        assert_eq!(
            kept,
            [None, None, None, None, Some(json!(4)), Some(json!(5))]
        );
    }

    #[test]
    fn first_seen_raises_once_per_lookback() {
        let check = |rows: &[i64], lookback: i64, expected: &[bool]| {
            let mut state = KeyState::default();
            let raised: Vec<bool> = rows
                .iter()
                .map(|at| first_seen(&mut state, at * S, lookback * S).is_some())
                .collect();
            assert_eq!(raised, expected, "rows {rows:?}");
        };
        check(&[0], 3600, &[true]);
        // Seen again within the lookback: nothing; after it: again.
        check(&[0, 10, 3600], 3600, &[true, false, false]);
        check(&[0, 3601], 3600, &[true, true]);
        check(&[0, 3000, 6000], 3600, &[true, false, false]);
        // The same row twice, and a late one: nothing.
        check(&[100, 100, 50], 3600, &[true, false, false]);
        let mut state = KeyState::default();
        first_seen(&mut state, 0, S);
        let again = first_seen(&mut state, 5 * S, S).unwrap();
        assert_eq!(again.previous_ms, Some(0));
    }

    #[test]
    fn absent_raises_once_per_silence_and_clears_on_a_newer_row() {
        let after = 3600 * S;
        let mut state = KeyState::default();
        // Never seen: no silence.
        assert!(absent_tick(&mut state, 10 * after, after).is_none());
        absent_row(&mut state, 0, json!({"ClientId": "C.1"}));
        assert!(absent_tick(&mut state, after - 1, after).is_none());
        let raise = absent_tick(&mut state, after, after).expect("silent for `after`");
        assert_eq!(raise.last_ms, 0);
        assert!(absent_tick(&mut state, 2 * after, after).is_none(), "once");
        // A replayed older row does not end the silence; a newer one does.
        absent_row(&mut state, 0, json!({}));
        assert!(state.raised);
        absent_row(&mut state, 2 * after, json!({"ClientId": "C.1", "n": 2}));
        assert!(!state.raised);
        assert_eq!(state.last_row, Some(json!({"ClientId": "C.1", "n": 2})));
        assert!(absent_tick(&mut state, 2 * after + 1, after).is_none());
        assert!(absent_tick(&mut state, 3 * after, after).is_some());
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut state = KeyState::default();
        assert!(threshold(&mut state, "a", i64::MIN, json!(0), 2, i64::MAX, 1).is_none());
        assert!(threshold(&mut state, "b", i64::MAX, json!(0), 2, i64::MAX, 1).is_none());
        let mut state = KeyState::default();
        first_seen(&mut state, i64::MIN, i64::MAX);
        assert!(first_seen(&mut state, i64::MAX, i64::MAX).is_none());
        let mut state = KeyState::default();
        absent_row(&mut state, i64::MIN, json!({}));
        assert!(absent_tick(&mut state, i64::MAX, i64::MAX).is_some());
    }

    #[test]
    fn a_row_of_an_older_alert_redelivered_is_not_counted_again() {
        // Rows a..f raise two alerts of 3; a (of the first) comes back.
        check_threshold(
            &[
                ("a", 0),
                ("b", 1),
                ("c", 2),
                ("d", 3),
                ("e", 4),
                ("f", 5),
                ("a", 0),
                ("g", 6),
                ("h", 7),
            ],
            3,
            60,
            &[3, 3],
        );
        // What is remembered is bounded.
        let mut state = KeyState::default();
        for i in 0..(REMEMBER as i64 + 50) {
            threshold(
                &mut state,
                &format!("r{i}"),
                i,
                json!(null),
                10_000,
                i64::MAX,
                0,
            );
        }
        assert_eq!(state.applied.len(), REMEMBER);
        assert_eq!(state.applied.first().map(String::as_str), Some("r50"));
    }
}
