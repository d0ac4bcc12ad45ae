//! The email channel against a real SMTP server (aiosmtpd): what arrives,
//! and how failures are classified.

use std::time::{Duration, Instant};

use talon_kit::{Config, Env};
use talon_notify::channels::email::Email;
use talon_notify::channels::DeliveryError;
use talon_proto::{Alert, ClientInfo, ContextEntry, DedupInfo};
use talon_tests::smtp::{SmtpServer, StoredMail};

const SCRIPT: &str = "<script>alert(1)</script>";
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// An `email-soc` channel through `smtp` to `recipients`.
fn email(smtp: &SmtpServer, recipients: &[&str], extra: &str) -> Email {
    let text = format!(
        "[[channels]]\nid = \"email-soc\"\nkind = \"email\"\nsecret = \"soc_smtp\"\n\
         recipients = {recipients:?}\n{extra}\n\n{}",
        smtp.secret_toml("soc_smtp")
    );
    let config = Config::parse(&text, &Env::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    Email::new(&config.channels[0], &config, &Env::default()).expect("email channel")
}

/// An alert as enrich hands it to notify.
fn enriched(name: &str) -> Alert {
    Alert {
        id: "6f1c0e4b2a9d4e7f8a0b1c2d3e4f5a6b".into(),
        received_at: "2024-05-01T10:00:01Z".parse().unwrap(),
        name: name.into(),
        timestamp: "2024-05-01T10:00:00Z".parse().unwrap(),
        client_id: Some("C.1234abcd".into()),
        flow_id: Some("F.CQ1OF8ME4BN2U".into()),
        artifact: Some("Linux.Detection.Honeyfiles".into()),
        artifact_type: Some("CLIENT_EVENT".into()),
        dedup: Some(DedupInfo {
            key: name.into(),
            window_start: "2024-05-01T10:00:01Z".parse().unwrap(),
            window_end: "2024-05-01T12:00:01Z".parse().unwrap(),
            suppressed_before: 3,
        }),
        severity: Some("high".into()),
        context: Some(vec![
            ContextEntry {
                key: "FileName".into(),
                value: SCRIPT.into(),
            },
            ContextEntry {
                key: SCRIPT.into(),
                value: "a key with markup".into(),
            },
            ContextEntry {
                key: "Details.Connections.0.DestinationIp".into(),
                value: "10.1.2.3".into(),
            },
        ]),
        client: Some(ClientInfo {
            client_id: Some("C.1234abcd".into()),
            hostname: Some("web-01".into()),
            fqdn: Some("web-01.corp.example.org".into()),
            os: Some("linux".into()),
            labels: vec!["prod".into(), "dmz".into()],
        }),
        channel: Some("email-soc".into()),
        ..Alert::sample()
    }
}

/// Waits for exactly `n` stored mails: at least `n` within 10 s, and no
/// more half a second later.
async fn exactly(smtp: &SmtpServer, n: usize) -> Vec<StoredMail> {
    smtp.wait_for_messages(n, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mail = smtp.messages();
    assert_eq!(mail.len(), n, "{mail:#?}");
    mail
}

#[tokio::test]
async fn an_alert_arrives_with_its_subject_both_parts_sections_and_escaping() {
    let smtp = SmtpServer::started().await;
    let email = email(
        &smtp,
        &["soc@example.org", "SOC on call <oncall@example.org>"],
        "include_artifact_details = true",
    );
    let alert = enriched("Honey\r\nBcc: evil@example.org");
    email.deliver(&alert).await.expect("delivered");

    let mail = exactly(&smtp, 1).await.remove(0);
    // Envelope: the configured sender and recipients, nobody else.
    assert_eq!(mail.mail_from, "alerts@example.org");
    assert_eq!(mail.rcpt_tos, ["soc@example.org", "oncall@example.org"]);
    // Headers: the subject as Velociraptor builds it, CR/LF turned to spaces;
    // no injected Bcc, in the headers or anywhere in the header block.
    assert_eq!(
        mail.header("Subject"),
        ["Alert from client web-01 (high): Honey  Bcc: evil@example.org"]
    );
    assert!(mail.header("Bcc").is_empty(), "{:?}", mail.headers);
    let header_block = &mail.data[..mail.data.find("\r\n\r\n").expect("header block")];
    assert!(
        !header_block.to_ascii_lowercase().contains("\nbcc:"),
        "{header_block}"
    );
    assert_eq!(
        mail.header("From"),
        ["Velociraptor alerts <alerts@example.org>"]
    );
    assert_eq!(
        mail.header("To"),
        ["soc@example.org, SOC on call <oncall@example.org>"]
    );
    assert_eq!(
        mail.header("Message-ID"),
        ["<6f1c0e4b2a9d4e7f8a0b1c2d3e4f5a6b.email-soc@talon>"]
    );
    assert_eq!(
        mail.header("X-Talon-Alert-Id"),
        ["6f1c0e4b2a9d4e7f8a0b1c2d3e4f5a6b"]
    );

    // Both parts.
    assert_eq!(mail.content_type, "multipart/alternative");
    let types: Vec<&str> = mail.parts.iter().map(|p| p.content_type.as_str()).collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let text = mail.part("text/plain").expect("text part");
    let html = mail.part("text/html").expect("html part");

    // The sections, in both.
    for body in [text, html] {
        for needle in [
            "Alert summary",
            "Alert details",
            "Client details",
            "Flow details",
            "Artifact details",
            "3 similar alerts were suppressed in the previous window",
            "web-01.corp.example.org",
            "prod, dmz",
            "C.1234abcd",
            "F.CQ1OF8ME4BN2U",
            "Linux.Detection.Honeyfiles",
            "CLIENT_EVENT",
            "Details.Connections.0.DestinationIp",
            "10.1.2.3",
            "2024-05-01T10:00:00Z",
        ] {
            assert!(body.contains(needle), "{needle:?} missing from:\n{body}");
        }
    }
    // The text part says it as it is; the HTML part escapes every value.
    assert!(text.contains(&format!("FileName: {SCRIPT}")), "{text}");
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains(&format!(">{SCRIPT_ESCAPED}</td>")),
        "the value, escaped: {html}"
    );
    assert_eq!(
        html.matches(SCRIPT_ESCAPED).count(),
        2,
        "the key and the value: {html}"
    );
    assert!(
        html.contains("Honey\r\nBcc: evil@example.org")
            || html.contains("Honey\nBcc: evil@example.org"),
        "the body keeps the whole name: {html}"
    );
}

#[tokio::test]
async fn artifact_details_are_opt_in_and_the_suppressed_line_needs_a_count() {
    let smtp = SmtpServer::started().await;
    let email = email(&smtp, &["soc@example.org"], "include_flow_details = false");
    let mut alert = enriched("Quiet");
    alert.dedup = None;
    email.deliver(&alert).await.expect("delivered");
    let mail = exactly(&smtp, 1).await.remove(0);
    assert_eq!(
        mail.header("Subject"),
        ["Alert from client web-01 (high): Quiet"]
    );
    for body in [
        mail.part("text/plain").unwrap(),
        mail.part("text/html").unwrap(),
    ] {
        assert!(body.contains("Client details"), "{body}");
        for absent in ["Artifact details", "Flow details", "suppressed"] {
            assert!(!body.contains(absent), "{absent:?} in:\n{body}");
        }
    }
}

#[tokio::test]
async fn smtp_down_is_transient_and_once_up_the_mail_arrives_once() {
    let mut smtp = SmtpServer::new();
    let email = email(&smtp, &["soc@example.org"], "");
    let alert = enriched("Down then up");

    let started = Instant::now();
    let err = email.deliver(&alert).await.expect_err("nothing listens");
    assert!(
        matches!(err, DeliveryError::Transient { .. }),
        "connection refused is transient: {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refused connection fails fast"
    );
    assert!(smtp.messages().is_empty());

    smtp.start().await;
    email.deliver(&alert).await.expect("delivered once up");
    let mail = exactly(&smtp, 1).await;
    assert_eq!(
        mail[0].header("Subject"),
        ["Alert from client web-01 (high): Down then up"]
    );
}

#[tokio::test]
async fn a_pooled_connection_to_a_restarted_server_is_replaced() {
    let mut smtp = SmtpServer::started().await;
    let email = email(&smtp, &["soc@example.org"], "");
    email.deliver(&enriched("First")).await.expect("first");
    exactly(&smtp, 1).await;

    // The pooled connection dies with the server.
    smtp.stop();
    let err = email
        .deliver(&enriched("While down"))
        .await
        .expect_err("down");
    assert!(matches!(err, DeliveryError::Transient { .. }), "{err:?}");

    smtp.start().await;
    email.deliver(&enriched("Second")).await.expect("second");
    let mail = exactly(&smtp, 2).await;
    let subjects: Vec<String> = mail.iter().flat_map(|m| m.header("Subject")).collect();
    assert_eq!(
        subjects,
        [
            "Alert from client web-01 (high): First",
            "Alert from client web-01 (high): Second"
        ]
    );
}

#[tokio::test]
async fn a_recipient_rejected_with_550_is_permanent() {
    let smtp = SmtpServer::started().await;
    let email = email(&smtp, &["soc@example.org", "reject-me@example.org"], "");
    let err = email
        .deliver(&enriched("Rejected"))
        .await
        .expect_err("rejected");
    match &err {
        DeliveryError::Permanent(reason) => {
            assert!(reason.contains("550"), "{reason}");
            assert!(reason.contains("no such user"), "{reason}");
        }
        other => panic!("a 550 is permanent: {other:?}"),
    }
    assert!(smtp.messages().is_empty(), "no mail was accepted");
}

#[tokio::test]
async fn a_recipient_deferred_with_451_is_transient() {
    let smtp = SmtpServer::started().await;
    let email = email(&smtp, &["busy@example.org"], "");
    let err = email
        .deliver(&enriched("Deferred"))
        .await
        .expect_err("deferred");
    match &err {
        DeliveryError::Transient { reason, .. } => assert!(reason.contains("451"), "{reason}"),
        other => panic!("a 451 is transient: {other:?}"),
    }
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn starttls_required_against_a_server_without_it_is_transient() {
    // A server that offers no STARTTLS may be fixed; nothing is sent in clear.
    let smtp = SmtpServer::started().await;
    let text = format!(
        "[[channels]]\nid = \"email-soc\"\nkind = \"email\"\nsecret = \"s\"\n\
         recipients = [\"soc@example.org\"]\n\n[secrets.s]\nserver = \"127.0.0.1\"\n\
         port = {}\ntls = \"starttls\"\nfrom = \"alerts@example.org\"\n",
        smtp.port
    );
    let config = Config::parse(&text, &Env::default()).unwrap();
    let email = Email::new(&config.channels[0], &config, &Env::default()).unwrap();
    let err = email
        .deliver(&enriched("Clear"))
        .await
        .expect_err("no STARTTLS");
    assert!(matches!(err, DeliveryError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert!(smtp.messages().is_empty());
}
