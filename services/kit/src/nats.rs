//! The NATS connection: authentication and TLS from `[nats]`, reconnecting
//! forever, and a JetStream context with a bounded ack wait.

use std::time::Duration;

use async_nats::jetstream;

use crate::config::{ConfigError, Env, NatsConfig};

/// How long a JetStream publish or API call waits for its answer.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read NATS credentials file {path}: {source}")]
    Creds {
        path: String,
        source: std::io::Error,
    },
    #[error("nats.url: {url:?} is not a NATS URL: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
}

/// How `connect` behaves while the server is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// Return at once and keep trying in the background (services: they
    /// start, report not-ready, and become ready when NATS is there).
    Retry,
    /// Fail if the first attempt fails (talonctl).
    FailFast,
}

/// Connects as `name` with the options of `[nats]`.
pub async fn connect(
    cfg: &NatsConfig,
    env: &Env,
    name: &str,
    initial: Initial,
) -> Result<async_nats::Client, NatsError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .custom_inbox_prefix(cfg.inbox_prefix())
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(|attempt| {
            // async-nats asks with attempt 1 before the very first try: no
            // wait then; after that 0.1 s, 0.2 s, ... capped at 2 s, quick to
            // come back after a NATS restart without hammering a server that
            // stays down.
            if attempt <= 1 {
                Duration::ZERO
            } else {
                Duration::from_millis((100 * (attempt as u64 - 1)).min(2_000))
            }
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::info!(event = %other, "NATS event"),
            }
        });
    if initial == Initial::Retry {
        opts = opts.retry_on_initial_connect();
    }
    if let Some(path) = &cfg.creds_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|source| NatsError::Creds {
                path: path.display().to_string(),
                source,
            })?;
    }
    if let Some(user) = &cfg.user {
        let password = cfg.password(env)?.unwrap_or_default();
        opts = opts.user_and_password(user.clone(), password);
    }
    if let Some(token) = cfg.token(env)? {
        opts = opts.token(token);
    }
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if cfg.tls_required {
        opts = opts.require_tls(true);
    }
    let addrs = cfg
        .url
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NatsError::Url {
            url: cfg.url.clone(),
            reason: e.to_string(),
        })?;
    opts.connect(addrs)
        .await
        .map_err(|source| NatsError::Connect {
            url: cfg.url.clone(),
            source,
        })
}

/// A JetStream context whose publishes and API calls give up after
/// `JETSTREAM_TIMEOUT`, so a lost server turns into an error (then a nak or
/// a 503), never into a hang.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(JETSTREAM_TIMEOUT)
        .max_ack_inflight(20_000)
        .backpressure_on_inflight(true)
        .build(client)
}

/// Is the client connected right now?
pub fn is_connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}
