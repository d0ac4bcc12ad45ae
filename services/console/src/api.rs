//! The console API. Every route but login answers 401 without a live
//! session, and acts only on the session's own user: no route takes a user
//! name, so no one can read, count or clear another user's messages.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::session::{self, Sessions};
use super::store::{Inbox, StoreError};
use super::{Backend, Console};

/// Messages a page holds by default, and at most.
pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 200;
/// An `alerts` event stands for every change within this long.
const ALERTS_COALESCE: Duration = Duration::from_millis(300);
/// How often an open event stream checks that its session still lives.
const SESSION_RECHECK: Duration = Duration::from_secs(30);

/// The largest body a console request may have.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/messages", get(messages))
        .route("/v1/messages/read", post(read))
        .route("/v1/messages/clear", post(clear))
        .route("/v1/events", get(events))
        // Logins and marks are a few bytes: nothing bigger is read, before
        // or after authentication.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(console)
}

/// An API failure: a status and a reason, as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotReady => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            StoreError::NoSuchGroup(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Nats(_) => {
                tracing::warn!(error = %e, "console request failed");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, "not logged in".into())
}

pub(crate) fn backend(console: &Console) -> Result<&Backend, ApiError> {
    console.backend().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the console is not connected to NATS yet".into(),
        )
    })
}

/// The user of the request's API token (`Authorization: Bearer`) or else
/// of its session cookie, or 401. A bearer token that is not one of the
/// users' is refused, whatever cookie comes with it.
pub(crate) async fn user_of(console: &Console, headers: &HeaderMap) -> Result<String, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return talon_kit::http::bearer(headers)
            .and_then(|given| console.token_user(given))
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "Authorization: Bearer <a user's console API token> is wrong".into(),
                )
            });
    }
    let token = session::token(headers).ok_or_else(unauthorized)?;
    let backend = backend(console)?;
    let user = backend.sessions.user(&token).await.map_err(|e| {
        tracing::warn!(error = %e, "session lookup failed");
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    })?;
    // A user taken out of the config, or whose password hash changed,
    // loses the session.
    match user {
        Some(s) if console.honours(&s) => Ok(s.user),
        _ => Err(unauthorized()),
    }
}

/// The JSON body of a state-changing request, of type `T`. The request must
/// come from the console's own origin (`Sec-Fetch-Site`, `Origin`, when the
/// client sends them: browsers do) and say it is JSON, which a page
/// elsewhere cannot do without the browser asking first; an empty body is
/// refused like any other that is not `T`.
pub(crate) fn body<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, ApiError> {
    same_origin(headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

/// Refuses a request a browser says comes from another site: `Sec-Fetch-Site`
/// other than `same-origin` (or `none`, typed by the user), or an `Origin`
/// whose host is not the one the request was sent to.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = || {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            "a cross-site request is refused".into(),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return refused();
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let authority = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if authority.is_none() || authority != host {
            return refused();
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(wait: Duration, reason: &str) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.max(1).to_string())],
        Json(json!({ "error": reason })),
    )
        .into_response()
}

async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let LoginBody { name, password } = body(&headers, &bytes)?;
    let addr = peer.ip();
    let limits = &console.login_limits;
    if let Some(wait) = limits.blocked(&name, addr, std::time::Instant::now()) {
        console.logins.with_label_values(&["limited"]).inc();
        return Ok(too_many(
            wait,
            "too many failed logins: wait before trying again",
        ));
    }
    let hash = console.users.get(&name).cloned().flatten();
    let credential = hash.as_deref().map(session::credential).unwrap_or_default();
    // Each check takes tens of milliseconds and 19 MiB: a few at a time,
    // and none waits in a queue behind them.
    let Ok(_slot) = console.password_checks.try_acquire() else {
        console.logins.with_label_values(&["busy"]).inc();
        return Ok(too_many(
            Duration::from_secs(1),
            "too many logins at once: try again",
        ));
    };
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(h) => talon_kit::password::verify(&h, &password),
        None => {
            // As slow as a real check, so timing tells no one which names exist.
            talon_kit::password::verify(dummy_hash(), &password);
            false
        }
    })
    .await
    .unwrap_or(false);
    if !ok {
        limits.failed(&name, addr, std::time::Instant::now());
        console.logins.with_label_values(&["refused"]).inc();
        tracing::info!(user = ?name, "console login refused");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong name or password".into(),
        ));
    }
    let token = backend(&console)?
        .sessions
        .create(&name, &credential)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    limits.succeeded(&name, addr);
    console.logins.with_label_values(&["ok"]).inc();
    tracing::info!(user = ?name, "console login");
    Ok((
        [(
            header::SET_COOKIE,
            session::set_cookie(&token, console.cookie_secure),
        )],
        Json(json!({ "name": name })),
    )
        .into_response())
}

/// A hash of nothing anyone knows, made once, to check unknown names against.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret = hex::encode(rand::random::<[u8; 16]>());
        talon_kit::password::hash(&secret).unwrap_or_default()
    })
}

async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let _: serde_json::Map<String, serde_json::Value> = body(&headers, &bytes)?;
    if let (Some(token), Some(backend)) = (session::token(&headers), console.backend()) {
        backend
            .sessions
            .end(&token)
            .await
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            session::clear_cookie(console.cookie_secure),
        )],
        Json(json!({ "logged_out": true })),
    )
        .into_response())
}

async fn me(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = user_of(&console, &headers).await?;
    let roles = console.roles(&user).to_vec();
    let may_triage = console.may_triage(&user);
    Ok(Json(
        json!({ "name": user, "roles": roles, "may_triage": may_triage }),
    ))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn messages(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let user = user_of(&console, &headers).await?;
    let Query(q) = query.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad query string: {}", e.body_text()),
        )
    })?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let page = backend(&console)?
        .inbox
        .page(&user, q.before, limit)
        .await?;
    Ok(Json(page).into_response())
}

/// `read` and `clear` act up to the newest message the page showed: a
/// message that arrived since stays unread, and is not cleared unseen.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpTo {
    up_to: u64,
}

/// `read` and `clear`: the session's user and `up_to`.
async fn marking(
    console: &Console,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<(String, u64, Arc<Inbox>), ApiError> {
    let user = user_of(console, headers).await?;
    let UpTo { up_to } = body(headers, bytes)?;
    Ok((user, up_to, backend(console)?.inbox.clone()))
}

async fn read(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (user, up_to, inbox) = marking(&console, &headers, &bytes).await?;
    let unread = inbox.read(&user, up_to).await?;
    Ok(Json(json!({ "unread": unread })).into_response())
}

async fn clear(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (user, up_to, inbox) = marking(&console, &headers, &bytes).await?;
    let cleared = inbox.clear(&user, up_to).await?;
    Ok(Json(json!({ "cleared": cleared })).into_response())
}

/// `GET /v1/events`: server-sent events. An `unread` event with
/// `{"unread": n, "latest": seq}` at once and whenever the user's inbox
/// changes; the stream ends with the session or the service.
async fn events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let user = user_of(&console, &headers).await?;
    // A bearer token's stream needs no recheck (tokens are the config's);
    // a session's ends with the session.
    let token = if headers.contains_key(header::AUTHORIZATION) {
        None
    } else {
        session::token(&headers)
    };
    let backend = backend(&console)?;
    let watch = Watch {
        console: console.clone(),
        inbox: backend.inbox.clone(),
        sessions: backend.sessions.clone(),
        changes: backend.inbox.subscribe(),
        alerts: backend.alerts.subscribe(),
        shutdown: console.shutdown.clone(),
        user,
        token,
        first: true,
    };
    let stream = futures::stream::unfold(watch, |mut w| async move {
        let event = w.next().await?;
        Some((Ok(event), w))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One user's open event stream.
struct Watch {
    console: Arc<Console>,
    inbox: Arc<Inbox>,
    sessions: Sessions,
    changes: tokio::sync::broadcast::Receiver<String>,
    /// Ticks of the alert list.
    alerts: tokio::sync::broadcast::Receiver<()>,
    shutdown: tokio_util::sync::CancellationToken,
    user: String,
    /// The session's token; `None` for an API token.
    token: Option<String>,
    first: bool,
}

impl Watch {
    /// The next event, or `None` when the stream should end.
    async fn next(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.first) {
            return Some(self.unread_event().await.retry(Duration::from_secs(1)));
        }
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(SESSION_RECHECK) => {
                    if let Some(token) = &self.token {
                        let live = self.sessions.user(token).await;
                        if !matches!(live, Ok(Some(ref s)) if self.console.honours(s)) {
                            return None;
                        }
                    }
                }
                tick = self.alerts.recv() => match tick {
                    Ok(()) | Err(RecvError::Lagged(_)) => {
                        // One event for a burst: the page reloads its list.
                        tokio::time::sleep(ALERTS_COALESCE).await;
                        while self.alerts.try_recv().is_ok() {}
                        return Some(Event::default().event("alerts").data("{}"));
                    }
                    Err(RecvError::Closed) => return None,
                },
                change = self.changes.recv() => match change {
                    Ok(user) if user == self.user => return Some(self.unread_event().await),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return Some(self.unread_event().await),
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }

    async fn unread_event(&self) -> Event {
        let data = match self.inbox.unread(&self.user).await {
            Ok((unread, latest)) => json!({ "unread": unread, "latest": latest }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        Event::default().event("unread").data(data.to_string())
    }
}
