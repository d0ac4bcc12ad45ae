//! A channel's `digest` schedule: `daily HH:MM [Zone]` or
//! `weekly <day> HH:MM [Zone]` (`Zone` an IANA name such as
//! `Europe/Berlin`; UTC when left out). Pure: the times a digest is due are
//! computed from a given instant, never from the clock.
//!
//! Local times that a daylight-saving change skips fire at the first
//! instant after the gap; those it repeats fire once, at the earlier one.

use std::fmt;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Day,
    Week(Weekday),
}

/// A parsed `digest` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    every: Every,
    at: NaiveTime,
    zone: Tz,
    text: String,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn weekday(word: &str) -> Option<Weekday> {
    let w = word.to_ascii_lowercase();
    let all = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    // "mon", "monday" and anything between.
    all.into_iter()
        .find(|d| w.len() >= 3 && full_name(*d).starts_with(&w))
}

fn full_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

impl Schedule {
    /// Parses `daily 08:00 Europe/Berlin`, `weekly mon 07:30 UTC`,
    /// `daily 18:00`; the error says what was expected.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        const EXPECTED: &str =
            "expected \"daily HH:MM [Zone]\" or \"weekly <day> HH:MM [Zone]\", e.g. \"daily 08:00 Europe/Berlin\"";
        if text.len() > 100 {
            return Err(format!("too long; {EXPECTED}"));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let (every, rest) = match words.as_slice() {
            ["daily", rest @ ..] => (Every::Day, rest),
            ["weekly", day, rest @ ..] => match weekday(day) {
                Some(d) => (Every::Week(d), rest),
                None => return Err(format!("{day:?} is not a day of the week; {EXPECTED}")),
            },
            _ => return Err(format!("{text:?}: {EXPECTED}")),
        };
        let (time, zone) = match rest {
            [time] => (*time, None),
            [time, zone] => (*time, Some(*zone)),
            _ => return Err(format!("{text:?}: {EXPECTED}")),
        };
        let at = NaiveTime::parse_from_str(time, "%H:%M")
            .map_err(|_| format!("{time:?} is not a time of day (HH:MM, 00:00 to 23:59)"))?;
        let zone = match zone {
            None => Tz::UTC,
            Some(z) => z.parse::<Tz>().map_err(|_| {
                format!("{z:?} is not a time zone (an IANA name such as Europe/Berlin, or UTC)")
            })?,
        };
        Ok(Schedule {
            every,
            at,
            zone,
            text: words.join(" "),
        })
    }

    /// The first time the digest is due strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        let local = after.with_timezone(&self.zone).date_naive();
        // The day before covers a zone whose local date is behind UTC's.
        let mut day = local.checked_sub_days(Days::new(1)).unwrap_or(local);
        for _ in 0..16 {
            if self.fires_on(day) {
                let at = self.instant(day);
                if at > after {
                    return at;
                }
            }
            match day.checked_add_days(Days::new(1)) {
                Some(next) => day = next,
                None => break,
            }
        }
        // Beyond chrono's calendar: never due.
        DateTime::<Utc>::MAX_UTC
    }

    /// The last time the digest was due at or before `at`, if any in the
    /// past fortnight.
    pub fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.zone).date_naive();
        let mut day = local.checked_add_days(Days::new(1)).unwrap_or(local);
        for _ in 0..16 {
            if self.fires_on(day) {
                let fire = self.instant(day);
                if fire <= at {
                    return Some(fire);
                }
            }
            day = day.checked_sub_days(Days::new(1))?;
        }
        None
    }

    fn fires_on(&self, day: NaiveDate) -> bool {
        match self.every {
            Every::Day => true,
            Every::Week(d) => day.weekday() == d,
        }
    }

    /// `self.at` on `day` in the zone: the earlier of a repeated local time,
    /// the first minute after a skipped one.
    fn instant(&self, day: NaiveDate) -> DateTime<Utc> {
        let mut local = day.and_time(self.at);
        for _ in 0..180 {
            if let Some(t) = self.zone.from_local_datetime(&local).earliest() {
                return t.with_timezone(&Utc);
            }
            local += chrono::Duration::minutes(1);
        }
        DateTime::<Utc>::MAX_UTC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_in_a_zone() {
        let s = Schedule::parse("daily 08:00 Europe/Berlin").unwrap();
        assert_eq!(s.to_string(), "daily 08:00 Europe/Berlin");
        // Winter: UTC+1.
        assert_eq!(
            s.next_after(t("2026-12-05T06:00:00Z")),
            t("2026-12-05T07:00:00Z")
        );
        assert_eq!(
            s.next_after(t("2026-12-05T07:00:00Z")),
            t("2026-12-06T07:00:00Z")
        );
        // Summer: UTC+2.
        assert_eq!(
            s.next_after(t("2026-07-01T12:00:00Z")),
            t("2026-07-02T06:00:00Z")
        );
        assert_eq!(
            s.last_at_or_before(t("2026-12-05T07:00:00Z")),
            Some(t("2026-12-05T07:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(t("2026-12-05T06:59:59Z")),
            Some(t("2026-12-04T07:00:00Z"))
        );
    }

    #[test]
    fn weekly_and_utc() {
        let s = Schedule::parse("weekly monday 07:30").unwrap();
        // 2026-12-05 is a Saturday.
        assert_eq!(
            s.next_after(t("2026-12-05T00:00:00Z")),
            t("2026-12-07T07:30:00Z")
        );
        assert_eq!(
            s.next_after(t("2026-12-07T07:30:00Z")),
            t("2026-12-14T07:30:00Z")
        );
        let s = Schedule::parse("weekly Sun 23:59 Pacific/Kiritimati").unwrap();
        let next = s.next_after(t("2026-12-05T00:00:00Z"));
        assert_eq!(next, t("2026-12-06T09:59:00Z"));
    }

    #[test]
    fn a_skipped_local_time_fires_after_the_gap() {
        // 2026-03-29 02:30 does not exist in Berlin.
        let s = Schedule::parse("daily 02:30 Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(t("2026-03-28T12:00:00Z")),
            t("2026-03-29T01:00:00Z")
        );
        // 2026-10-25 02:30 happens twice: the first one.
        assert_eq!(
            s.next_after(t("2026-10-24T12:00:00Z")),
            t("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn bad_schedules_say_what_is_expected() {
        for (bad, says) in [
            ("", "expected"),
            ("hourly", "expected"),
            ("daily", "expected"),
            ("daily 8am", "is not a time of day"),
            ("daily 24:00", "is not a time of day"),
            ("daily 08:00 Mars/Olympus", "is not a time zone"),
            ("weekly funday 08:00", "is not a day of the week"),
            ("daily 08:00 UTC extra", "expected"),
            (&"daily ".repeat(50), "too long"),
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
