//! The generic web hook: POST the enriched alert as JSON, with the
//! configured headers and, when a secret is configured,
//! `X-Talon-Timestamp: <unix seconds>` and `X-Talon-Signature: sha256=<hex>`,
//! the HMAC-SHA256 of `<timestamp>.<body>`: a receiver that refuses old
//! timestamps cannot be fed a replayed request. Redirects are never
//! followed (a receiver cannot bounce the signed body elsewhere).
//!
//! A group message is POSTed the same way, as it is: its `"type": "group"`
//! tells it from an alert (`proto/schemas/group.schema.json`).

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::Serialize;
use sha2::Sha256;
use talon_proto::{Alert, GroupMessage};

use super::DeliveryError;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Talon-Signature";
/// The header with the signed timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Talon-Timestamp";

/// The HTTP client of every web-hook kind: a timeout, and no redirects.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    talon_kit::outbound::client_builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}
/// How long one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Webhook {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    secret: Option<Vec<u8>>,
}

impl Webhook {
    pub fn new(
        url: String,
        headers: HeaderMap,
        secret: Option<Vec<u8>>,
    ) -> Result<Webhook, reqwest::Error> {
        let http = client()?;
        Ok(Webhook {
            http,
            url,
            headers,
            secret,
        })
    }

    pub async fn deliver(&self, alert: &Alert) -> Result<(), DeliveryError> {
        self.post(alert, "alert").await
    }

    /// POSTs the group message, signed and classified as
    /// [`Webhook::deliver`] does.
    pub async fn deliver_group(&self, group: &GroupMessage) -> Result<(), DeliveryError> {
        self.post(group, "group message").await
    }

    async fn post<T: Serialize>(&self, value: &T, what: &str) -> Result<(), DeliveryError> {
        // talon's messages always serialize: this error is never returned.
        let body = serde_json::to_vec(value)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode the {what}: {e}")))?;
        post_json(
            &self.http,
            &self.url,
            &self.headers,
            self.secret.as_deref(),
            body,
        )
        .await
    }
}

/// `sha256=<hex>` of `<timestamp>.<body>` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length (RFC 2104: a longer key is hashed, a
    // shorter one padded), so `new_from_slice` never returns InvalidLength.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` as JSON and classifies the answer; shared by every
/// HTTP-based channel kind.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    secret: Option<&[u8]>,
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    let mut request = http
        .post(url)
        .headers(headers.clone())
        .header(CONTENT_TYPE, "application/json");
    if let Some(secret) = secret {
        let now = chrono::Utc::now().timestamp();
        request = request
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, signature(secret, now, &body));
    }
    let response = request
        .body(body)
        .send()
        .await
        // without_url: reqwest's text names the URL, whose path may hold a
        // token; only the redacted form is ever shown.
        .map_err(|e| {
            DeliveryError::transient(format!("POST {}: {}", redact(url), e.without_url()))
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let text = response.text().await.unwrap_or_default();
    let reason = format!(
        "POST {} answered {}: {}",
        redact(url),
        status,
        text.chars().take(300).collect::<String>()
    );
    Err(classify(status.as_u16(), reason, retry_after))
}

/// HTTP 4xx but 408 and 429 is permanent, and so is a redirect (talon does
/// not follow one: the channel's URL needs fixing); anything else (5xx,
/// 408, 429, an unexpected 1xx) is worth retrying.
pub fn classify(status: u16, reason: String, retry_after: Option<Duration>) -> DeliveryError {
    match status {
        300..=399 => DeliveryError::Permanent(format!(
            "{reason} (a redirect: talon does not follow redirects, point the channel at the final URL)"
        )),
        408 | 429 => DeliveryError::Transient {
            reason,
            retry_after,
        },
        400..=499 => DeliveryError::Permanent(reason),
        _ => DeliveryError::Transient {
            reason,
            retry_after,
        },
    }
}

/// `Retry-After`: delta seconds, or an HTTP date (then the time until it).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The URL without its path and query, which may hold a token (Slack,
/// Discord and Teams URLs do): errors and logs show only the host.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
        Err(_) => "<url>".to_owned(),
    }
}

/// Headers from configuration (`name: value` pairs).
pub fn headers_of(pairs: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::chat::fixtures;
    use std::path::PathBuf;

    /// [`fixtures::group`] as the web hook POSTs it, pretty, compared with
    /// `tests/golden/webhook-group.json` (`TALON_UPDATE_GOLDEN=1` rewrites
    /// it instead).
    #[test]
    fn the_group_body_matches_the_golden_file() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/webhook-group.json");
        let group = fixtures::group();
        let text = serde_json::to_string_pretty(&group).unwrap() + "\n";
        if std::env::var_os("TALON_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(&path, &text).unwrap();
            return;
        }
        let expected =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            expected == text,
            "the group body differs from {} (TALON_UPDATE_GOLDEN=1 rewrites it; review the diff)",
            path.display()
        );
        // What a receiver reads back is the message.
        let back: GroupMessage = serde_json::from_str(&expected).unwrap();
        assert_eq!(back, group);
        assert_eq!(back.kind, talon_proto::group::GROUP_TYPE);
    }

    /// One request, as a receiver sees it.
    struct Received {
        head: String,
        body: Vec<u8>,
    }

    /// A receiver on 127.0.0.1:0 that answers one request with 200.
    async fn receiver() -> (String, tokio::task::JoinHandle<Received>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 65536];
            let (head, length) = loop {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                data.extend_from_slice(&buf[..n]);
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8(data[..end].to_vec()).unwrap();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().unwrap())
                        })
                        .expect("a Content-Length");
                    data.drain(..end + 4);
                    break (head, length);
                }
            };
            while data.len() < length {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the body ended early");
                data.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            Received { head, body: data }
        });
        (url, task)
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    #[tokio::test]
    async fn a_group_is_posted_signed_with_the_configured_headers() {
        let group = fixtures::group();
        let headers = headers_of(&[("X-Team".to_owned(), "soc".to_owned())]).unwrap();
        let (url, received) = receiver().await;
        let hook = Webhook::new(url, headers, Some(b"s3cret".to_vec())).unwrap();
        hook.deliver_group(&group).await.unwrap();
        let Received { head, body } = received.await.unwrap();
        assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
        assert_eq!(header(&head, "content-type"), Some("application/json"));
        assert_eq!(header(&head, "x-team"), Some("soc"));
        let timestamp: i64 = header(&head, TIMESTAMP_HEADER).unwrap().parse().unwrap();
        assert_eq!(
            header(&head, SIGNATURE_HEADER),
            Some(signature(b"s3cret", timestamp, &body).as_str())
        );
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["type"], "group");
        assert_eq!(
            serde_json::from_value::<GroupMessage>(value).unwrap(),
            group
        );
    }

    #[test]
    fn statuses_are_classified() {
        let check = |status: u16, permanent: bool| {
            let e = classify(status, "r".into(), None);
            assert_eq!(
                matches!(e, DeliveryError::Permanent(_)),
                permanent,
                "{status}"
            );
        };
        for (status, permanent) in [
            (400, true),
            (401, true),
            (404, true),
            (408, false),
            (429, false),
            (500, false),
            (503, false),
            (302, true),
            (307, true),
            (101, false),
        ] {
            check(status, permanent);
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn signatures_are_hmac_sha256_hex_of_timestamp_dot_body() {
        // RFC 4231 test case 2's key, over "1700000000." and its data
        // (checked with Python's hmac module).
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?"),
            "sha256=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
        assert_ne!(
            signature(b"Jefe", 1_700_000_001, b"what do ya want for nothing?"),
            signature(b"Jefe", 1_700_000_000, b"what do ya want for nothing?"),
            "the timestamp is signed"
        );
    }

    #[test]
    fn urls_are_redacted_to_their_host() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact("not a url"), "<url>");
    }
}
