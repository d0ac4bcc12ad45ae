//! The in-app inbox: one message per chosen user on `talon.inbox.<user>`
//! (stream `INBOX`), read by the console. Users are chosen from
//! `[[console.users]]` by `recipients` (a regex on the name) and
//! `recipient_roles` (a regex tried on each role), as Velociraptor's
//! `Server.Monitor.Alerts.UserMessage` does.
//!
//! Every message carries `Nats-Msg-Id` = `<alert id>:<user>`, and the console
//! keeps one message per alert id and user, so no user ever gets the same
//! alert twice.

use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::HeaderMap;
use regex::Regex;
use talon_kit::config::{InboxSpec, UserConfig};
use talon_proto::names::{inbox_msg_id, inbox_subject, HEADER_ALERT_ID};
use talon_proto::Alert;

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

impl Inbox {
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
        let body = bytes::Bytes::from(body);
        let mut acks = Vec::with_capacity(self.users.len());
        for user in &self.users {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER_ALERT_ID, alert.id.as_str());
            let message = PublishMessage::build()
                .payload(body.clone())
                .headers(headers)
                .message_id(inbox_msg_id(&alert.id, user));
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
