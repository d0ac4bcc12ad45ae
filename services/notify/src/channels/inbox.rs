//! The in-app inbox: one message per chosen user on `talon.inbox.<user>`
//! (stream `INBOX`), read by the console. Users are chosen from
//! `[[console.users]]` by `recipients` (a regex on the name) and
//! `recipient_roles` (a regex tried on each role), as Velociraptor's
//! `Server.Monitor.Alerts.UserMessage` does.
//!
//! Every message carries `Nats-Msg-Id` = `<alert id>:<user>`, and the console
//! keeps one message per alert id and user, so no user ever gets the same
//! alert twice. A grouped channel sends one message per group message
//! instead: the `GroupMessage` JSON with `Talon-Group: <key>-<sequence>` and
//! `Nats-Msg-Id` = `group:<key>-<sequence>:<user>`, kept once per user too.

use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::HeaderMap;
use regex::Regex;
use talon_kit::config::{InboxSpec, UserConfig};
use talon_proto::names::{
    inbox_group_msg_id, inbox_group_ref, inbox_msg_id, inbox_subject, HEADER_ALERT_ID, HEADER_GROUP,
};
use talon_proto::{Alert, GroupMessage};

use super::DeliveryError;

/// One user as the inbox channel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub roles: Vec<String>,
}

impl From<&UserConfig> for User {
    fn from(u: &UserConfig) -> User {
        User {
            name: u.name.clone(),
            roles: u.roles.clone(),
        }
    }
}

/// Who gets an inbox channel's messages.
#[derive(Debug, Clone)]
pub struct Recipients {
    names: Regex,
    roles: Regex,
}

impl Recipients {
    /// From the channel's `recipients` and `recipient_roles` (both already
    /// checked by the config loader).
    pub fn of(spec: &InboxSpec) -> Result<Recipients, regex::Error> {
        Ok(Recipients {
            names: Regex::new(&spec.recipients)?,
            roles: Regex::new(&spec.recipient_roles)?,
        })
    }

    /// The users whose name matches and one of whose roles matches, in
    /// configuration order.
    pub fn choose<'u>(&self, users: &'u [User]) -> Vec<&'u User> {
        users
            .iter()
            .filter(|u| self.names.is_match(&u.name))
            .filter(|u| u.roles.iter().any(|r| self.roles.is_match(r)))
            .collect()
    }
}

pub struct Inbox {
    js: jetstream::Context,
    /// The chosen users' names.
    users: Vec<String>,
}

/// What a message may weigh when the server does not say: NATS's default
/// `max_payload`.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Room kept under `max_payload` for the headers.
const HEADER_ROOM: usize = 4 * 1024;

/// The group message as the inbox stores it, in at most `max` bytes: whole
/// when it fits; else without its whole alerts, then without its rows
/// too (the console shows the counts and lists the alerts by id from its
/// catalog). A message whose ids alone are too many bytes is refused.
pub fn group_body(group: &GroupMessage, max: usize) -> Result<Vec<u8>, DeliveryError> {
    let encode = |g: &GroupMessage| {
        // A GroupMessage always serializes: this error is never returned.
        serde_json::to_vec(g)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the group message: {e}")))
    };
    let body = encode(group)?;
    if body.len() <= max {
        return Ok(body);
    }
    let mut slim = GroupMessage {
        alerts: Vec::new(),
        ..group.clone()
    };
    let body = encode(&slim)?;
    if body.len() <= max {
        return Ok(body);
    }
    slim.rows.clear();
    slim.not_listed = slim.count;
    let body = encode(&slim)?;
    if body.len() <= max {
        return Ok(body);
    }
    Err(DeliveryError::Permanent(format!(
        "the group message is {} bytes even without its alerts and rows, more than the {max} an inbox message may have",
        body.len()
    )))
}

impl Inbox {
    /// Publishes the group message to every chosen user's inbox, one
    /// message each, and waits for every JetStream ack; sent again, it is
    /// stored once per user (`Nats-Msg-Id` from group key, sequence and
    /// user), as [`Inbox::deliver`] does for an alert.
    pub async fn deliver_group(&self, group: &GroupMessage) -> Result<(), DeliveryError> {
        let max = match self.js.client().server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            n => n,
        };
        let body = group_body(group, max.saturating_sub(HEADER_ROOM))?;
        let group_ref = inbox_group_ref(&group.group_key, group.sequence);
        self.publish(body.into(), HEADER_GROUP, &group_ref, |user| {
            inbox_group_msg_id(&group.group_key, group.sequence, user)
        })
        .await
    }

    pub fn new(
        js: jetstream::Context,
        spec: &InboxSpec,
        users: &[User],
    ) -> Result<Inbox, regex::Error> {
        let recipients = Recipients::of(spec)?;
        let users = recipients
            .choose(users)
            .into_iter()
            .map(|u| u.name.clone())
            .collect();
        Ok(Inbox { js, users })
    }

    /// The users this channel writes to.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// Publishes the alert to every chosen user's inbox and waits for every
    /// JetStream ack. A redelivered alert is stored once per user (its
    /// `Nats-Msg-Id`), so retrying after a partial failure is safe.
    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        // An Alert always serializes: this error is never returned.
        let body = serde_json::to_vec(alert)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the alert: {e}")))?;
        self.publish(body.into(), HEADER_ALERT_ID, &alert.id, |user| {
            inbox_msg_id(&alert.id, user)
        })
        .await
    }

    /// Publishes `body` to every chosen user's inbox with the header
    /// `name: value` and the `Nats-Msg-Id` `msg_id(user)`, then waits for
    /// every ack.
    async fn publish(
        &self,
        body: bytes::Bytes,
        name: &'static str,
        value: &str,
        msg_id: impl Fn(&str) -> String,
    ) -> Result<(), DeliveryError> {
        let mut acks = Vec::with_capacity(self.users.len());
        for user in &self.users {
            let mut headers = HeaderMap::new();
            headers.insert(name, value);
            let message = PublishMessage::build()
                .payload(body.clone())
                .headers(headers)
                .message_id(msg_id(user));
            let ack = self
                .js
                .send_publish(inbox_subject(user), message)
                .await
                .map_err(|e| DeliveryError::transient(format!("inbox of {user}: {e}")))?;
            acks.push((user, ack));
        }
        for (user, ack) in acks {
            ack.await
                .map_err(|e| DeliveryError::transient(format!("inbox of {user}: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<User> {
        [
            ("alice", &["administrator"][..]),
            ("bob", &["analyst"][..]),
            ("carol", &["analyst", "administrator"][..]),
            ("dave", &[][..]),
            ("admin2", &["administrators"][..]),
        ]
        .iter()
        .map(|(n, r)| User {
            name: n.to_string(),
            roles: r.iter().map(|s| s.to_string()).collect(),
        })
        .collect()
    }

    fn check(recipients: Option<&str>, roles: Option<&str>, expected: &[&str]) {
        let mut spec = InboxSpec::default();
        if let Some(p) = recipients {
            spec.recipients = p.to_owned();
        }
        if let Some(r) = roles {
            spec.recipient_roles = r.to_owned();
        }
        let users = users();
        let got: Vec<&str> = Recipients::of(&spec)
            .unwrap()
            .choose(&users)
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(got, expected, "recipients {recipients:?}, roles {roles:?}");
    }

    /// A group of `n` alerts, each with a context of `context_bytes`.
    fn group(n: usize, context_bytes: usize) -> GroupMessage {
        let mut b =
            talon_proto::group::Builder::new("inbox", &"ab".repeat(16), vec![], 1, None, 100);
        for i in 0..n {
            let mut a = Alert::sample();
            a.id = format!("{i:032x}");
            a.context = Some(vec![talon_proto::ContextEntry {
                key: "Blob".into(),
                value: "x".repeat(context_bytes),
            }]);
            b.push(a);
        }
        b.finish()
    }

    #[test]
    fn a_group_body_sheds_whole_alerts_then_rows_to_fit() {
        let small = group(5, 10);
        let whole = group_body(&small, 1 << 20).unwrap();
        assert_eq!(
            serde_json::from_slice::<GroupMessage>(&whole).unwrap(),
            small
        );

        // Three big alerts do not fit: the rows and every id still do.
        let big = group(200, 100_000);
        let body = group_body(&big, 200_000).unwrap();
        let got: GroupMessage = serde_json::from_slice(&body).unwrap();
        assert!(got.alerts.is_empty());
        assert_eq!(got.rows.len(), 100);
        assert_eq!(got.alert_ids, big.alert_ids);

        // Rows go too when they must; the counts and ids stay.
        let body = group_body(&big, 12_000).unwrap();
        let got: GroupMessage = serde_json::from_slice(&body).unwrap();
        assert!(got.rows.is_empty() && got.alerts.is_empty());
        assert_eq!((got.count, got.not_listed), (200, 200));
        assert_eq!(got.alert_ids, big.alert_ids);

        // Ids alone too many bytes: refused, not retried.
        assert!(matches!(
            group_body(&big, 1_000),
            Err(DeliveryError::Permanent(_))
        ));
    }

    #[test]
    fn recipients_and_roles_choose_users() {
        // Velociraptor's defaults: everyone named, administrators only.
        check(None, None, &["alice", "carol"]);
        check(Some("^(alice|bob)$"), None, &["alice"]);
        check(None, Some("^analyst$"), &["bob", "carol"]);
        check(Some("^(alice|bob)$"), Some("^analyst$"), &["bob"]);
        check(None, Some("admin"), &["alice", "carol", "admin2"]);
        check(None, Some(".*"), &["alice", "bob", "carol", "admin2"]);
        check(Some("^nobody$"), Some(".*"), &[]);
    }
}
