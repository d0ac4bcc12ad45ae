//! A client of the console, as a browser would use it: a login that keeps
//! the session cookie, then the API with that cookie.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Users for console tests: (name, roles, password); each gets
/// `password_hash_env = "<NAME>_HASH"`.
pub const USERS: [(&str, &[&str], &str); 4] = [
    ("alice", &["administrator"], "alice-secret"),
    ("bob", &["analyst"], "bob-secret"),
    ("carol", &["analyst", "administrator"], "carol-secret"),
    ("rita", &["reader"], "rita-secret"),
];

/// `[console]` on `http_listen` with the [`USERS`] (plus `dave`, who has no
/// password), `[notify]` on a port of its own, and the environment holding
/// the users' hashes.
pub fn console_users(http_listen: &str) -> (String, talon_kit::Env) {
    let mut text = format!(
        "[notify]\nhttp_listen = \"127.0.0.1:0\"\n[console]\nhttp_listen = \"{http_listen}\"\n"
    );
    let mut env = talon_kit::Env::default();
    for (name, roles, password) in USERS {
        let var = format!("{}_HASH", name.to_uppercase());
        let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
        text.push_str(&format!(
            "[[console.users]]\nname = \"{name}\"\nroles = [{}]\npassword_hash_env = \"{var}\"\n",
            roles.join(", ")
        ));
        env = env.with(&var, &talon_kit::password::hash(password).expect("hashes"));
    }
    text.push_str("[[console.users]]\nname = \"dave\"\nroles = [\"administrator\"]\n");
    (text, env)
}

/// The password of one of the [`USERS`].
pub fn password(user: &str) -> &'static str {
    USERS
        .iter()
        .find(|(n, _, _)| *n == user)
        .map(|(_, _, p)| *p)
        .expect("a test user")
}

#[derive(Clone)]
pub struct Console {
    pub base: String,
    pub http: reqwest::Client,
    /// `talon_session=<token>`, once logged in.
    pub cookie: Option<String>,
    /// The whole `Set-Cookie` of the login.
    pub set_cookie: Option<String>,
}

impl Console {
    /// Not logged in, against the console at `addr`.
    pub fn anonymous(addr: impl std::fmt::Display) -> Console {
        Console {
            base: format!("http://{addr}"),
            http: talon_kit::outbound::client(),
            cookie: None,
            set_cookie: None,
        }
    }

    /// Logs in as `name` with `password`: the console on success, else the
    /// status and body.
    pub async fn login(
        addr: impl std::fmt::Display,
        name: &str,
        password: &str,
    ) -> Result<Console, (StatusCode, Value)> {
        let mut console = Console::anonymous(addr);
        let response = console
            .http
            .post(format!("{}/v1/login", console.base))
            .json(&json!({ "name": name, "password": password }))
            .send()
            .await
            .expect("login request");
        let status = response.status();
        let set_cookie = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::OK {
            return Err((status, body));
        }
        let set_cookie = set_cookie.expect("a login sets a cookie");
        console.cookie = set_cookie.split(';').next().map(str::to_owned);
        console.set_cookie = Some(set_cookie);
        Ok(console)
    }

    /// The same session, against another replica.
    pub fn at(&self, addr: impl std::fmt::Display) -> Console {
        Console {
            base: format!("http://{addr}"),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            r = r.header(reqwest::header::COOKIE, c);
        }
        r
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.request(reqwest::Method::POST, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let response = r.send().await.expect("POST");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/messages`, which must answer 200.
    pub async fn messages(&self) -> Value {
        let (status, body) = self.get("/v1/messages").await;
        assert_eq!(status, StatusCode::OK, "GET /v1/messages: {body}");
        body
    }

    /// The alert ids of my messages, newest first.
    pub async fn alert_ids(&self) -> Vec<String> {
        ids(&self.messages().await)
    }

    /// Waits until I have `n` messages; returns the page.
    pub async fn wait_messages(&self, n: usize, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let page = self.messages().await;
            let have = page["messages"].as_array().map_or(0, Vec::len);
            if have >= n || Instant::now() > deadline {
                assert_eq!(have, n, "messages of {}: {page}", self.base);
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The alert ids of a page, in its order.
pub fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["alert_id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Messages on `talon.inbox.<user>` in the stream right now.
pub async fn stored(js: &async_nats::jetstream::Context, user: &str) -> usize {
    let stream = js.get_stream("INBOX").await.expect("INBOX exists");
    let subject = talon_proto::names::inbox_subject(user);
    let info = stream
        .info_with_subjects(&subject)
        .await
        .expect("stream info");
    let subjects: Vec<(String, usize)> = info
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    subjects
        .into_iter()
        .filter(|(s, _)| *s == subject)
        .map(|(_, n)| n)
        .sum()
}
