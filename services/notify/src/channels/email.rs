//! The `email` channel: one multipart/alternative mail (plain text and HTML)
//! per alert, through lettre's pooled async SMTP transport, to the server of
//! the channel's `[secrets.<name>]` table.
//!
//! A retried delivery sends the same `Message-ID` (`<alert-id.channel@talon>`),
//! so a mail server or client that deduplicates on it shows one mail.
//!
//! A group message (a channel's `group_by` or `digest`) is one digest mail
//! ([`group`]) through the same transport. Its `Message-ID`
//! (`<group.group-key.sequence.channel@talon>`) is the same on every retry
//! of that message, and every later message of the group refers to the
//! first, so mail clients thread a group's messages.

pub mod group;
mod render;

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use talon_kit::config::{ChannelConfig, ChannelSpec, Config, EmailSpec, Env};
use talon_proto::{Alert, GroupMessage};

pub use render::{escape, html_body, severity_colour, subject, text_body};

use super::present::{one_line, Sections};
use super::DeliveryError;

/// How long connecting, and each SMTP command, may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The header naming the alert a mail is about.
pub const ALERT_ID_HEADER: &str = "X-Talon-Alert-Id";

/// The header naming the group a group mail is about (its key).
pub const GROUP_KEY_HEADER: &str = "X-Talon-Group-Key";

/// The `tls` of a secret that sets none.
pub const DEFAULT_TLS: &str = "starttls";

/// An email channel, ready to send (connections are opened on first use).
#[derive(Debug, Clone)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for error messages.
    server: String,
    channel: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    sections: Sections,
    /// `[console].public_url`: group mails link each alert there.
    console: Option<String>,
}

impl Email {
    /// [`Email::with_spec`] for `channel`, an email one of `config`.
    pub fn new(channel: &ChannelConfig, config: &Config, env: &Env) -> Result<Email, String> {
        match channel.spec(&config.secrets) {
            Ok(ChannelSpec::Email(spec)) => Email::with_spec(channel, &spec, config, env),
            Ok(_) => Err(format!("channels[id={}]: not an email channel", channel.id)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Builds the transport from the channel's `[secrets.<secret>]` (server,
    /// port, tls, username and the password resolved through `env`); does
    /// not connect yet. Call it inside a Tokio runtime, and drop the value
    /// there too: the connection pool runs a cleanup task on it.
    pub fn with_spec(
        channel: &ChannelConfig,
        spec: &EmailSpec,
        config: &Config,
        env: &Env,
    ) -> Result<Email, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("an email channel is built inside a Tokio runtime".to_owned());
        }
        let prefix = format!("channels[id={}]", channel.id);
        let name = spec.secret.as_str();
        let table = format!("secrets.{name}");
        let secret = config
            .secrets
            .get(name)
            .ok_or_else(|| format!("{prefix}.secret: no [{table}] table"))?;
        let host = secret
            .server
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{table}.server: needed by email channel {:?}", channel.id))?;
        let from_text = secret
            .from
            .as_deref()
            .ok_or_else(|| format!("{table}.from: needed by email channel {:?}", channel.id))?;
        let from: Mailbox = from_text
            .parse()
            .map_err(|e| format!("{table}.from: {from_text:?} is not a mailbox: {e}"))?;
        let to = spec
            .recipients
            .iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|e| format!("{prefix}.recipients: {a:?} is not an address: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(format!("{prefix}.recipients: no recipient address"));
        }

        let mode = secret.tls.as_deref().unwrap_or(DEFAULT_TLS);
        let tls = match mode {
            "none" => Tls::None,
            "starttls" | "tls" => {
                let params =
                    TlsParameters::new(host.to_owned()).map_err(|e| format!("{table}.tls: {e}"))?;
                if mode == "tls" {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
            other => {
                return Err(format!(
                    "{table}.tls: {other:?} is not starttls, tls or none"
                ))
            }
        };
        let port = secret.port.unwrap_or(match mode {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(TIMEOUT))
            .pool_config(PoolConfig::new().max_size(channel.max_in_flight.max(1)));
        if let Some(username) = &secret.username {
            let password = config
                .secret_password(name, env)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{table}.username: needs password_env or password_file"))?;
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(Email {
            transport: builder.build(),
            server: format!("{host}:{port}"),
            channel: channel.id.clone(),
            from,
            to,
            sections: Sections::of(channel),
            console: config.console.public_base(),
        })
    }

    /// The mail for `alert`, as it would be sent.
    pub fn message(&self, alert: &Alert) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(alert))
            .message_id(Some(message_id(&alert.id, &self.channel)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(ALERT_ID_HEADER),
                one_line(&alert.id),
            ))
            .date_now();
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                text_body(alert, &self.sections),
                html_body(alert, &self.sections),
            ))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the mail: {e}")))
    }

    /// The mail for `group`, as it would be sent: a sequence after the
    /// first is `In-Reply-To` the first.
    pub fn group_message(&self, group: &GroupMessage) -> Result<Message, DeliveryError> {
        let id = group_message_id(&group.group_key, group.sequence, &self.channel);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(group::subject(group))
            .message_id(Some(id))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(GROUP_KEY_HEADER),
                one_line(&group.group_key),
            ))
            .date_now();
        if group.sequence > 1 {
            let first = group_message_id(&group.group_key, 1, &self.channel);
            builder = builder.in_reply_to(first.clone()).references(first);
        }
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                group::text_body(group, &self.sections, self.console.as_deref()),
                group::html_body(group, &self.sections, self.console.as_deref()),
            ))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the group mail: {e}")))
    }

    /// Sends one mail. SMTP 5xx (a rejected recipient among them) is
    /// permanent; SMTP 4xx, connection and TLS errors and timeouts are
    /// transient.
    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.send(self.message(alert)?).await
    }

    /// Sends the group's mail, classified as [`Email::deliver`] does.
    pub async fn deliver_group(&self, group: &GroupMessage) -> Result<(), DeliveryError> {
        self.send(self.group_message(group)?).await
    }

    async fn send(&self, message: Message) -> Result<(), DeliveryError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(&self.server, &e)),
        }
    }
}

/// SMTP 5xx replies are permanent; anything else (4xx replies, refused or
/// dropped connections, TLS failures, timeouts, a server lacking STARTTLS)
/// may pass, and is retried until the channel's deadline.
fn classify(server: &str, e: &lettre::transport::smtp::Error) -> DeliveryError {
    let reason = format!("SMTP {server}: {}", chain(e));
    if e.is_permanent() {
        DeliveryError::Permanent(reason)
    } else {
        DeliveryError::transient(reason)
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// `<{alert id}.{channel}@talon>`, the same on every retry. Characters that
/// a Message-ID cannot hold are %-escaped (so two ids never collide).
pub fn message_id(alert_id: &str, channel: &str) -> String {
    format!("<{}.{}@talon>", id_part(alert_id), id_part(channel))
}

/// `<group.{group key}.{sequence}.{channel}@talon>`, the same on every
/// retry of the message; escaped as [`message_id`], so it never equals an
/// alert's (whose left part has one unescaped dot, not three).
pub fn group_message_id(group_key: &str, sequence: u64, channel: &str) -> String {
    format!(
        "<group.{}.{sequence}.{}@talon>",
        id_part(group_key),
        id_part(channel)
    )
}

/// `text` with what a Message-ID cannot hold, and `.`, %-escaped.
fn id_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric() || "!#$&'*+-/=?^_`{|}~".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: &str) -> Config {
        let text = format!(
            r#"
[[channels]]
id = "email-soc"
kind = "email"
secret = "smtp"
recipients = ["soc@example.org", "Ops <ops@example.org>"]
include_artifact_details = true

[secrets.smtp]
server = "smtp.example.org"
from = "Velociraptor alerts <alerts@example.org>"
{secret}
"#
        );
        Config::parse(&text, &Env::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn alert(id: &str, name: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "id": id, "received_at": "2020-10-07T20:43:09Z", "source": "nats",
            "name": name, "timestamp": "2020-10-07T20:43:08Z", "client_id": "server",
        }))
        .unwrap()
    }

    #[test]
    fn message_ids() {
        fn check(alert_id: &str, channel: &str, expected: &str) {
            assert_eq!(message_id(alert_id, channel), expected);
        }
        check("0123abcd", "email-soc", "<0123abcd.email-soc@talon>");
        check("a b>c@d", "x", "<a%20b%3Ec%40d.x@talon>");
        check("a.b", "c", "<a%2Eb.c@talon>");
        check("%", "c", "<%25.c@talon>");
    }

    #[test]
    fn group_message_ids() {
        fn check(key: &str, sequence: u64, channel: &str, expected: &str) {
            assert_eq!(group_message_id(key, sequence, channel), expected);
        }
        check(
            "6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f",
            2,
            "email-soc",
            "<group.6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f.2.email-soc@talon>",
        );
        check("k", u64::MAX, "c", "<group.k.18446744073709551615.c@talon>");
        check("a.b>", 1, "c d", "<group.a%2Eb%3E.1.c%20d@talon>");
        // Never an alert's: an alert id "group" on channel "k.1.c" escapes its dots.
        assert_ne!(message_id("group", "k.1.c"), group_message_id("k", 1, "c"));
    }

    #[tokio::test]
    async fn new_reads_the_secret() {
        fn check(secret: &str, env: Env, expected: Result<&str, &str>) {
            let config = config(secret);
            let got = Email::new(&config.channels[0], &config, &env).map(|e| e.server);
            match expected {
                Ok(server) => assert_eq!(got.as_deref(), Ok(server), "{secret}"),
                Err(part) => {
                    let e = got.expect_err(secret);
                    assert!(e.contains(part), "{e:?} should mention {part:?}");
                }
            }
        }
        let env = Env::default().with("SMTP_PASSWORD", "hunter2");
        check("", Env::default(), Ok("smtp.example.org:587"));
        check("tls = \"tls\"", Env::default(), Ok("smtp.example.org:465"));
        check("tls = \"none\"", Env::default(), Ok("smtp.example.org:25"));
        check(
            "tls = \"none\"\nport = 2525",
            Env::default(),
            Ok("smtp.example.org:2525"),
        );
        check(
            "username = \"alerts\"\npassword_env = \"SMTP_PASSWORD\"",
            env,
            Ok("smtp.example.org:587"),
        );
        check(
            "username = \"alerts\"\npassword_env = \"SMTP_PASSWORD\"",
            Env::default(),
            Err("SMTP_PASSWORD"),
        );
        check(
            "username = \"alerts\"",
            Env::default(),
            Err("secrets.smtp.username: needs password_env"),
        );
    }

    #[test]
    fn new_outside_a_runtime_is_an_error() {
        let config = config("");
        let e = Email::new(&config.channels[0], &config, &Env::default()).unwrap_err();
        assert!(e.contains("Tokio runtime"), "{e}");
    }

    #[tokio::test]
    async fn the_mail_is_multipart_with_stable_headers() {
        let config = config("tls = \"none\"");
        let email = Email::new(&config.channels[0], &config, &Env::default()).unwrap();
        let message = email
            .message(&alert("0123abcd", "Bad\r\nBcc: evil@example.org"))
            .unwrap();
        let text = String::from_utf8(message.formatted()).unwrap();
        let headers = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(
            headers.contains("\r\nSubject: Server alert: Bad  Bcc: evil@example.org\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("\r\nMessage-ID: <0123abcd.email-soc@talon>\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("\r\nX-Talon-Alert-Id: 0123abcd\r\n"),
            "{headers}"
        );
        assert!(
            headers.contains("Content-Type: multipart/alternative"),
            "{headers}"
        );
        assert!(
            !headers.to_ascii_lowercase().contains("\r\nbcc:"),
            "{headers}"
        );
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8"));
        let envelope = message.envelope();
        let to: Vec<String> = envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["soc@example.org", "ops@example.org"]);
        assert_eq!(
            envelope.from().map(|a| a.to_string()).as_deref(),
            Some("alerts@example.org")
        );
        // A retry builds the same Message-ID.
        let again = email
            .message(&alert("0123abcd", "Other"))
            .unwrap()
            .headers()
            .get_raw("Message-ID")
            .map(str::to_owned);
        assert_eq!(again.as_deref(), Some("<0123abcd.email-soc@talon>"));
    }

    fn headers_of(message: &Message) -> String {
        let text = String::from_utf8(message.formatted()).unwrap();
        text[..text.find("\r\n\r\n").unwrap()].to_owned()
    }

    #[tokio::test]
    async fn the_group_mail_has_stable_headers_and_threads() {
        let config = config("tls = \"none\"");
        let email = Email::new(&config.channels[0], &config, &Env::default()).unwrap();
        let mut group = crate::channels::chat::fixtures::group();
        let message = email.group_message(&group).unwrap();
        let headers = headers_of(&message);
        let id = "<group.6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f.2.email-soc@talon>";
        let first = "<group.6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f.1.email-soc@talon>";
        for header in [
            format!("\r\nMessage-ID: {id}\r\n"),
            format!("\r\nIn-Reply-To: {first}\r\n"),
            format!("\r\nReferences: {first}\r\n"),
            "\r\nX-Talon-Group-Key: 6f1c0e6f3a2b4c5d8e9f0a1b2c3d4e5f\r\n".to_owned(),
            "Content-Type: multipart/alternative".to_owned(),
        ] {
            assert!(headers.contains(&header), "{header:?} missing: {headers}");
        }
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8"));
        let to: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(to, ["soc@example.org", "ops@example.org"]);

        // A retry of the same message: the same Message-ID.
        group.alert_ids.pop();
        let again = email.group_message(&group).unwrap();
        assert_eq!(again.headers().get_raw("Message-ID"), Some(id));
        // The first message of a group refers to nothing.
        group.sequence = 1;
        let headers = headers_of(&email.group_message(&group).unwrap());
        assert!(
            headers.contains(&format!("\r\nMessage-ID: {first}\r\n")),
            "{headers}"
        );
        assert!(
            !headers.contains("In-Reply-To") && !headers.contains("References"),
            "{headers}"
        );
    }

    #[tokio::test]
    async fn no_line_break_reaches_the_group_subject() {
        let config = config("tls = \"none\"");
        let email = Email::new(&config.channels[0], &config, &Env::default()).unwrap();
        let mut group = crate::channels::chat::fixtures::group();
        group.group[0].value = "Bad\r\nBcc: evil@example.org\r\n\r\n<b>body</b>".into();
        group.group_key = "k\r\nBcc: evil@example.org".into();
        let headers = headers_of(&email.group_message(&group).unwrap());
        assert!(
            headers.contains(
                "\r\nSubject: [talon] 500 alerts: Bad  Bcc: evil@example.org    <b>body</b>\r\n"
            ),
            "{headers}"
        );
        assert!(
            !headers.to_ascii_lowercase().contains("\r\nbcc:"),
            "{headers}"
        );
    }

    /// The largest group a message holds stays under the bound, formatted.
    #[tokio::test]
    async fn the_oversized_group_mail_is_bounded() {
        let config = config("tls = \"none\"");
        let email = Email::new(&config.channels[0], &config, &Env::default()).unwrap();
        let message = email
            .group_message(&crate::channels::chat::fixtures::oversized_group())
            .unwrap();
        let size = message.formatted().len();
        assert!(size <= group::MAX_MAIL_BYTES, "{size} bytes");
    }
}
