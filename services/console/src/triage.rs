//! Triage: what analysts do to an alert — acknowledge, assign, resolve with
//! a verdict, reopen, note. Each action is one event on
//! `talon.triage.<alert-id>` (stream `TRIAGE`) naming who, when, what, and
//! the state before and after; an alert's state is its last event's
//! `after`, its version that event's stream sequence. Pure: [`apply`]
//! decides; the shell (`alerts.rs`) writes with an expected-last-sequence
//! check, so two analysts never overwrite each other unseen.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A note holds at most this many characters.
pub const NOTE_CHARS: usize = 4000;

/// Where an alert is in its triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum State {
    #[default]
    Open,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }
}

/// Was it real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    TruePositive,
    FalsePositive,
    Benign,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::TruePositive => "true_positive",
            Verdict::FalsePositive => "false_positive",
            Verdict::Benign => "benign",
        }
    }
}

/// An alert's triage at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Triage {
    pub state: State,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

/// What an analyst asks for (`POST /v1/alerts/<id>/triage`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub action: Action,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub verdict: Option<Verdict>,
    #[serde(default)]
    pub note: Option<String>,
    /// The version the analyst saw; a newer one means 409.
    #[serde(default)]
    pub expected_version: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Ack,
    Assign,
    Resolve,
    Reopen,
    Note,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ack => "ack",
            Action::Assign => "assign",
            Action::Resolve => "resolve",
            Action::Reopen => "reopen",
            Action::Note => "note",
        }
    }
}

/// One event on `talon.triage.<alert-id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub alert_id: String,
    pub action: Action,
    pub by: String,
    pub at: DateTime<Utc>,
    pub before: Triage,
    pub after: Triage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a request cannot be applied: 422 with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowed(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, NotAllowed> {
    Err(NotAllowed(why.into()))
}

/// The state after `request` on `current`, and the note it carries.
/// `is_user` says whether a name is a configured user (an assignee must
/// be one).
pub fn apply(
    current: &Triage,
    request: &Request,
    is_user: impl Fn(&str) -> bool,
) -> Result<(Triage, Option<String>), NotAllowed> {
    let mut next = current.clone();
    match request.action {
        Action::Ack => {
            if current.state != State::Open {
                return refuse(format!(
                    "only an open alert can be acknowledged; this one is {}",
                    current.state.as_str()
                ));
            }
            next.state = State::Acknowledged;
        }
        Action::Assign => {
            if current.state == State::Resolved {
                return refuse("a resolved alert cannot be assigned: reopen it first");
            }
            match request.assignee.as_deref() {
                // Assigning to nobody takes it back.
                None | Some("") => next.assignee = None,
                Some(name) if is_user(name) => next.assignee = Some(name.to_owned()),
                Some(_) => return refuse("assignee is not a console user"),
            }
        }
        Action::Resolve => {
            if current.state == State::Resolved {
                return refuse("the alert is already resolved");
            }
            let Some(verdict) = request.verdict else {
                return refuse("resolve needs a verdict: true_positive, false_positive or benign");
            };
            next.state = State::Resolved;
            next.verdict = Some(verdict);
        }
        Action::Reopen => {
            if current.state != State::Resolved {
                return refuse("only a resolved alert can be reopened");
            }
            next.state = State::Open;
            next.verdict = None;
        }
        Action::Note => {}
    }
    let note = match request.note.as_deref().map(str::trim) {
        None | Some("") if request.action == Action::Note => {
            return refuse("a note needs its text");
        }
        None | Some("") => None,
        Some(text) if text.chars().count() > NOTE_CHARS => {
            return refuse(format!("a note holds at most {NOTE_CHARS} characters"));
        }
        Some(text) => Some(text.to_owned()),
    };
    Ok((next, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: Action) -> Request {
        Request {
            action,
            assignee: None,
            verdict: None,
            note: None,
            expected_version: None,
        }
    }

    fn users(name: &str) -> bool {
        matches!(name, "alice" | "bob")
    }

    #[test]
    fn the_life_of_an_alert() {
        let open = Triage::default();
        let (acked, _) = apply(&open, &request(Action::Ack), users).unwrap();
        assert_eq!(acked.state, State::Acknowledged);
        let (assigned, _) = apply(
            &acked,
            &Request {
                assignee: Some("bob".into()),
                ..request(Action::Assign)
            },
            users,
        )
        .unwrap();
        assert_eq!(assigned.assignee.as_deref(), Some("bob"));
        let (resolved, note) = apply(
            &assigned,
            &Request {
                verdict: Some(Verdict::FalsePositive),
                note: Some("  scanner host  ".into()),
                ..request(Action::Resolve)
            },
            users,
        )
        .unwrap();
        assert_eq!(resolved.state, State::Resolved);
        assert_eq!(resolved.verdict, Some(Verdict::FalsePositive));
        assert_eq!(resolved.assignee.as_deref(), Some("bob"), "kept");
        assert_eq!(note.as_deref(), Some("scanner host"));
        let (reopened, _) = apply(&resolved, &request(Action::Reopen), users).unwrap();
        assert_eq!(reopened.state, State::Open);
        assert_eq!(reopened.verdict, None);
        // Resolving straight from open is allowed.
        let direct = Request {
            verdict: Some(Verdict::Benign),
            ..request(Action::Resolve)
        };
        assert_eq!(
            apply(&open, &direct, users).unwrap().0.state,
            State::Resolved
        );
    }

    #[test]
    fn transitions_that_make_no_sense_are_refused() {
        let open = Triage::default();
        let resolved = Triage {
            state: State::Resolved,
            verdict: Some(Verdict::TruePositive),
            assignee: None,
        };
        let acked = Triage {
            state: State::Acknowledged,
            ..Triage::default()
        };
        let refused = |t: &Triage, r: Request| apply(t, &r, users).unwrap_err().0;
        assert!(refused(&acked, request(Action::Ack)).contains("only an open alert"));
        assert!(refused(&resolved, request(Action::Ack)).contains("this one is resolved"));
        assert!(refused(&open, request(Action::Reopen)).contains("only a resolved"));
        assert!(refused(&open, request(Action::Resolve)).contains("needs a verdict"));
        let again = Request {
            verdict: Some(Verdict::Benign),
            ..request(Action::Resolve)
        };
        assert!(refused(&resolved, again).contains("already resolved"));
        let to_stranger = Request {
            assignee: Some("mallory".into()),
            ..request(Action::Assign)
        };
        assert!(refused(&open, to_stranger).contains("not a console user"));
        let to_bob = Request {
            assignee: Some("bob".into()),
            ..request(Action::Assign)
        };
        assert!(refused(&resolved, to_bob).contains("reopen it first"));
        assert!(refused(&open, request(Action::Note)).contains("needs its text"));
        let blank = Request {
            note: Some(" \n ".into()),
            ..request(Action::Note)
        };
        assert!(refused(&open, blank).contains("needs its text"));
        let long = Request {
            note: Some("x".repeat(NOTE_CHARS + 1)),
            ..request(Action::Note)
        };
        assert!(refused(&open, long).contains("at most 4000"));
    }

    #[test]
    fn a_note_changes_nothing_and_an_empty_assignee_unassigns() {
        let t = Triage {
            state: State::Acknowledged,
            assignee: Some("alice".into()),
            verdict: None,
        };
        let note = Request {
            note: Some("looked at the process tree".into()),
            ..request(Action::Note)
        };
        let (after, text) = apply(&t, &note, users).unwrap();
        assert_eq!(after, t);
        assert_eq!(text.as_deref(), Some("looked at the process tree"));
        let (after, _) = apply(&t, &request(Action::Assign), users).unwrap();
        assert_eq!(after.assignee, None);
    }

    #[test]
    fn requests_are_strict() {
        let bad: Result<Request, _> = serde_json::from_str(r#"{"action": "delete"}"#);
        assert!(bad.is_err());
        let extra: Result<Request, _> =
            serde_json::from_str(r#"{"action": "ack", "state": "resolved"}"#);
        assert!(extra.is_err());
        let verdict: Result<Request, _> =
            serde_json::from_str(r#"{"action": "resolve", "verdict": "maybe"}"#);
        assert!(verdict.is_err());
        let ok: Request = serde_json::from_str(
            r#"{"action": "resolve", "verdict": "true_positive", "expected_version": 7}"#,
        )
        .unwrap();
        assert_eq!(ok.expected_version, Some(7));
    }
}
