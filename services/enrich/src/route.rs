//! Routing: which `[[channels]]` an alert goes to, from its name and
//! severity. Each channel filters on its own, as each copy of Velociraptor's
//! `Server.Monitor.Alerts` / `Server.Monitor.Alerts.UserMessage` does with
//! `AlertMsgInclude`/`AlertMsgExclude` and `SeverityThreshold`.

use regex::Regex;
use talon_kit::config::{ChannelConfig, SeverityThreshold};

/// A channel's `severity_threshold`, compiled against `severity_levels`.
#[derive(Debug, Clone)]
enum Threshold {
    /// Unset: every severity.
    All,
    /// A string: the index of that level in `severity_levels`, or `None` when
    /// it is not one of them (config validation refuses that), and then no
    /// severity is at or above it.
    AtLeast(Option<usize>),
    /// A list: exactly these severities, lowercased.
    Exactly(Vec<String>),
}

/// One channel's filters.
#[derive(Debug, Clone)]
struct Route {
    id: String,
    include: Regex,
    /// `None` when `alert_exclude` is empty.
    exclude: Option<Regex>,
    threshold: Threshold,
    require_severity: bool,
}

/// Every channel's filters, in config order.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    /// `severity_levels`, lowercased, lowest first.
    levels: Vec<String>,
}

impl Routes {
    /// Compiles the channels' filters; `levels` is `enrich.severity_levels`,
    /// lowest first.
    pub fn new(channels: &[ChannelConfig], levels: &[String]) -> Result<Routes, regex::Error> {
        let levels: Vec<String> = levels.iter().map(|l| l.to_lowercase()).collect();
        let routes = channels
            .iter()
            .map(|channel| {
                let exclude = match channel.alert_exclude.as_str() {
                    "" => None,
                    pattern => Some(Regex::new(pattern)?),
                };
                let threshold = match &channel.severity_threshold {
                    None => Threshold::All,
                    Some(SeverityThreshold::AtLeast(level)) => {
                        let level = level.to_lowercase();
                        Threshold::AtLeast(levels.iter().position(|l| *l == level))
                    }
                    Some(SeverityThreshold::Exactly(list)) => {
                        Threshold::Exactly(list.iter().map(|s| s.to_lowercase()).collect())
                    }
                };
                Ok(Route {
                    id: channel.id.clone(),
                    include: Regex::new(&channel.alert_include)?,
                    exclude,
                    threshold,
                    require_severity: channel.require_severity,
                })
            })
            .collect::<Result<_, regex::Error>>()?;
        Ok(Routes { routes, levels })
    }

    /// The ids of the channels an alert with this name and severity goes to,
    /// in config order. A channel takes it when:
    ///
    /// - `alert_include` matches the name and `alert_exclude` (when not
    ///   empty) does not (searches, not anchored);
    /// - and its severity passes `severity_threshold`: a string, when the
    ///   severity is that level or one after it in `severity_levels` (a
    ///   severity that is not one of the levels passes no string threshold);
    ///   a list, when the severity is one of them; unset, always. Severities
    ///   are compared case-insensitively.
    ///
    /// An alert without a severity (`None`, or an empty or blank string)
    /// passes every threshold, as in Velociraptor, except on channels with
    /// `require_severity = true`.
    pub fn route(&self, name: &str, severity: Option<&str>) -> Vec<&str> {
        let severity = severity
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        let rank = severity
            .as_deref()
            .and_then(|s| self.levels.iter().position(|l| l == s));
        self.routes
            .iter()
            .filter(|route| route.takes(name, severity.as_deref(), rank))
            .map(|route| route.id.as_str())
            .collect()
    }
}

impl Route {
    /// `severity` is lowercased; `rank` is its index in the levels.
    fn takes(&self, name: &str, severity: Option<&str>, rank: Option<usize>) -> bool {
        if !self.include.is_match(name) || self.exclude.as_ref().is_some_and(|e| e.is_match(name)) {
            return false;
        }
        let Some(severity) = severity else {
            return !self.require_severity;
        };
        match &self.threshold {
            Threshold::All => true,
            Threshold::AtLeast(min) => {
                matches!((rank, min), (Some(rank), Some(min)) if rank >= *min)
            }
            Threshold::Exactly(list) => list.iter().any(|s| s == severity),
        }
    }
}

#[cfg(test)]
mod tests {
    use talon_kit::config::ChannelKind;

    use super::*;

    const LEVELS: [&str; 5] = ["info", "low", "medium", "high", "critical"];

    /// A channel: (id, alert_include, alert_exclude, severity_threshold,
    /// require_severity).
    type Channel = (
        &'static str,
        &'static str,
        &'static str,
        Option<SeverityThreshold>,
        bool,
    );

    fn at_least(level: &str) -> Option<SeverityThreshold> {
        Some(SeverityThreshold::AtLeast(level.into()))
    }

    fn exactly(levels: &[&str]) -> Option<SeverityThreshold> {
        Some(SeverityThreshold::Exactly(
            levels.iter().map(|&l| l.into()).collect(),
        ))
    }

    /// Routes an alert with `name` and `severity` through `channels` (with
    /// [`LEVELS`]); compares the channel ids, in order, with `expected`.
    fn check(channels: &[Channel], name: &str, severity: Option<&str>, expected: &[&str]) {
        let channels: Vec<ChannelConfig> = channels
            .iter()
            .map(|(id, include, exclude, threshold, require_severity)| {
                let mut c = ChannelConfig::new(id, ChannelKind::Webhook);
                c.alert_include = (*include).into();
                c.alert_exclude = (*exclude).into();
                c.severity_threshold = threshold.clone();
                c.require_severity = *require_severity;
                c
            })
            .collect();
        let levels: Vec<String> = LEVELS.iter().map(|&l| l.into()).collect();
        let routes = Routes::new(&channels, &levels).unwrap();
        assert_eq!(
            routes.route(name, severity),
            expected,
            "alert {name:?} with severity {severity:?}"
        );
    }

    #[test]
    fn string_threshold_is_at_or_above() {
        let medium = [("medium-up", ".+", "", at_least("medium"), false)];
        for (severity, expected) in [
            (Some("info"), &[][..]),
            (Some("low"), &[]),
            (Some("medium"), &["medium-up"]),
            (Some("high"), &["medium-up"]),
            (Some("critical"), &["medium-up"]),
            // Case-insensitive, blanks ignored.
            (Some("HIGH"), &["medium-up"]),
            (Some(" Medium "), &["medium-up"]),
            (Some("Low"), &[]),
            // Not one of the levels: below every string threshold.
            (Some("severe"), &[]),
            (Some("very high"), &[]),
            // No severity passes.
            (None, &["medium-up"]),
            (Some(""), &["medium-up"]),
        ] {
            check(&medium, "TestAlert", severity, expected);
        }
        // The lowest and the highest level.
        let info = [("all", ".+", "", at_least("info"), false)];
        check(&info, "TestAlert", Some("info"), &["all"]);
        check(&info, "TestAlert", Some("bogus"), &[]);
        let critical = [("crit", ".+", "", at_least("critical"), false)];
        check(&critical, "TestAlert", Some("high"), &[]);
        check(&critical, "TestAlert", Some("Critical"), &["crit"]);
        // The threshold itself is case-insensitive too.
        let upper = [("upper", ".+", "", at_least("HIGH"), false)];
        check(&upper, "TestAlert", Some("critical"), &["upper"]);
        check(&upper, "TestAlert", Some("medium"), &[]);
        // A threshold that is not a level (validation refuses it) passes no severity.
        let unknown = [("unknown", ".+", "", at_least("severe"), false)];
        check(&unknown, "TestAlert", Some("critical"), &[]);
        check(&unknown, "TestAlert", None, &["unknown"]);
    }

    #[test]
    fn list_threshold_is_exactly() {
        let list = [("pd", ".+", "", exactly(&["high", "Critical"]), false)];
        for (severity, expected) in [
            (Some("medium"), &[][..]),
            (Some("high"), &["pd"]),
            (Some("High"), &["pd"]),
            (Some("critical"), &["pd"]),
            (Some("CRITICAL"), &["pd"]),
            (Some("low"), &[]),
            (Some("severe"), &[]),
            (None, &["pd"]),
        ] {
            check(&list, "TestAlert", severity, expected);
        }
        // Not "at or above": a list of one is that one only.
        let low = [("low-only", ".+", "", exactly(&["low"]), false)];
        check(&low, "TestAlert", Some("low"), &["low-only"]);
        check(&low, "TestAlert", Some("critical"), &[]);
    }

    #[test]
    fn unset_threshold_and_require_severity() {
        let all = [("all", ".+", "", None, false)];
        check(&all, "TestAlert", Some("info"), &["all"]);
        check(&all, "TestAlert", Some("bogus"), &["all"]);
        check(&all, "TestAlert", None, &["all"]);
        let required = [
            ("any", ".+", "", None, true),
            ("medium-up", ".+", "", at_least("medium"), true),
            ("pd", ".+", "", exactly(&["critical"]), true),
        ];
        check(&required, "TestAlert", None, &[]);
        check(&required, "TestAlert", Some("  "), &[]);
        check(&required, "TestAlert", Some("bogus"), &["any"]);
        check(&required, "TestAlert", Some("low"), &["any"]);
        check(&required, "TestAlert", Some("high"), &["any", "medium-up"]);
        check(
            &required,
            "TestAlert",
            Some("critical"),
            &["any", "medium-up", "pd"],
        );
    }

    #[test]
    fn include_exclude() {
        let channels = [
            ("all", ".+", "", None, false),
            ("honey", "^Honey file", "", None, false),
            ("no-errors", ".+", "(?i)query error", None, false),
            ("honey-not-tmp", "Honey", "/tmp/", None, false),
        ];
        for (name, expected) in [
            (
                r#"Honey file "/etc/shadow" accessed on web-01"#,
                &["all", "honey", "no-errors", "honey-not-tmp"][..],
            ),
            (
                r#"Honey file "/tmp/x" accessed on web-01"#,
                &["all", "honey", "no-errors"],
            ),
            // Searches, not anchored: "Honey" anywhere.
            ("Not a Honey file", &["all", "no-errors", "honey-not-tmp"]),
            ("Client event query error", &["all"]),
            ("Client event QUERY ERROR", &["all"]),
            // `.+` does not match an empty name (ingest refuses those anyway).
            ("", &[]),
        ] {
            check(&channels, name, Some("high"), expected);
        }
        // The name filters apply before, and whatever, the severity.
        let both = [("honey-high", "^Honey", "", at_least("high"), false)];
        check(&both, "Honey file", Some("critical"), &["honey-high"]);
        check(&both, "Honey file", Some("low"), &[]);
        check(&both, "Other", Some("critical"), &[]);
        check(&both, "Other", None, &[]);
    }

    #[test]
    fn ids_in_config_order() {
        let channels = [
            ("zeta", ".+", "", None, false),
            ("alpha", ".+", "", at_least("high"), false),
            ("mid", ".+", "", exactly(&["medium", "critical"]), false),
            ("beta", ".+", "", None, false),
        ];
        check(
            &channels,
            "TestAlert",
            Some("critical"),
            &["zeta", "alpha", "mid", "beta"],
        );
        check(
            &channels,
            "TestAlert",
            Some("high"),
            &["zeta", "alpha", "beta"],
        );
        check(
            &channels,
            "TestAlert",
            Some("medium"),
            &["zeta", "mid", "beta"],
        );
        check(&[], "TestAlert", Some("critical"), &[]);
    }

    #[test]
    fn bad_regex_is_an_error() {
        let mut channel = ChannelConfig::new("x", ChannelKind::Webhook);
        channel.alert_exclude = "(".into();
        assert!(Routes::new(&[channel], &[]).is_err());
    }
}
