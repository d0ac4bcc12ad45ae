//! A web hook receiver on a free loopback port: answers each request with
//! the next scripted reply (the last one repeats) and records what came.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
    /// A `Location` header (for redirects).
    pub location: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
            location: None,
        }
    }
    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_owned());
        self
    }
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
    pub fn location(mut self, url: &str) -> Reply {
        self.location = Some(url.to_owned());
        self
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    /// The request's path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    script: Vec<Reply>,
    next: usize,
    hits: Vec<Hit>,
}

#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl Receiver {
    /// Starts a receiver answering with `script` in order.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            script,
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/{*path}", post(hook))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { inner, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// From now on, answer with `script`.
    pub fn set_script(&self, script: Vec<Reply>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.script = script;
        inner.next = 0;
    }

    /// How many requests came so far (cheaper than `hits().len()`).
    pub fn count(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hits
            .len()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hits
            .clone()
    }

    /// The bodies answered with 2xx, as JSON.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.hits()
            .iter()
            .filter(|h| (200..300).contains(&h.status))
            .map(|h| serde_json::from_slice(&h.body).unwrap_or(serde_json::Value::Null))
            .collect()
    }

    /// Waits until `n` requests were answered 2xx.
    pub async fn wait_accepted(&self, n: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.accepted().len();
            if got >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("{got} of {n} deliveries accepted after {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn hook(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let at = Instant::now();
    let reply = {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        let i = inner.next.min(inner.script.len().saturating_sub(1));
        inner.next += 1;
        inner.script.get(i).cloned().unwrap_or(Reply::status(200))
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    inner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .hits
        .push(Hit {
            at,
            uri: uri.to_string(),
            headers,
            body,
            status: reply.status,
        });
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let mut response = (status, "").into_response();
    if let Some(ra) = reply.retry_after {
        if let Ok(v) = ra.parse() {
            response.headers_mut().insert("retry-after", v);
        }
    }
    if let Some(location) = reply.location {
        if let Ok(v) = location.parse() {
            response.headers_mut().insert("location", v);
        }
    }
    response
}
