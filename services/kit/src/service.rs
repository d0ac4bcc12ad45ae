//! One skeleton for every service: what `start` is given ([`Context`]), its
//! HTTP listener with `/healthz`, `/readyz` and `/metrics` ([`listen`]),
//! the wait for NATS and the streams ([`until_ready`]), and what `start`
//! returns ([`Running`]). A service's `main` is [`main`] with its `start`.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Env};
use crate::http::Health;
use crate::streams::Topology;

/// What every service starts from: its config (with the command line's
/// overrides applied), the environment (secrets), a NATS client that keeps
/// reconnecting, and the token that stops it (SIGTERM, Ctrl-C, a test).
pub struct Context {
    pub config: Config,
    pub env: Env,
    pub client: async_nats::Client,
    pub shutdown: CancellationToken,
}

impl Context {
    /// A JetStream context with the suite's timeouts.
    pub fn jetstream(&self) -> jetstream::Context {
        crate::nats::jetstream(self.client.clone())
    }

    /// Replicas and sizes of the streams it creates.
    pub fn topology(&self) -> Topology {
        Topology::from(&self.config)
    }

    /// `/readyz` and `/metrics` over `registry` (metrics registered by the
    /// service before or after).
    pub fn health(&self, registry: prometheus::Registry) -> Health {
        Health::new(self.client.clone(), registry)
    }
}

/// A started service: where its HTTP server listens, and the task that
/// ends when it has stopped (with its error, if it failed).
pub struct Running {
    pub http_addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// A service's HTTP server, bound and serving.
pub struct Listening {
    pub addr: SocketAddr,
    server: JoinHandle<std::io::Result<()>>,
    shutdown: CancellationToken,
}

/// Binds `addr` (the value of config key `key`, named in the error) and
/// serves `routes` plus `/healthz`, `/readyz` and `/metrics` of `health`,
/// under the kit's limits, until `shutdown` fires.
pub async fn listen(
    key: &str,
    addr: &str,
    routes: Router,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<Listening> {
    let router = routes.merge(crate::http::health_routes(health.clone()));
    let (listener, local) = crate::http::bind(addr)
        .await
        .with_context(|| format!("{key}: cannot listen on {addr}"))?;
    // Tests and scripts read the address from this line.
    tracing::info!(addr = %local, "listening");
    let server = tokio::spawn(crate::http::serve(listener, router, shutdown.clone()));
    Ok(Listening {
        addr: local,
        server,
        shutdown: shutdown.clone(),
    })
}

impl Listening {
    /// The service's task: `work` (its consumers), then the HTTP server's
    /// drain. If `work` fails the whole service stops with its error.
    pub fn run<F>(self, name: &'static str, work: F) -> Running
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let Listening {
            addr,
            server,
            shutdown,
        } = self;
        let task = tokio::spawn(async move {
            let worked = work.await;
            if worked.is_err() {
                shutdown.cancel();
            }
            let served = server.await;
            worked?;
            served??;
            tracing::info!("{name} stopped");
            Ok(())
        });
        Running {
            http_addr: addr,
            task,
        }
    }
}

/// The first wait between tries of [`until_ready`]; it doubles to
/// [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries of [`until_ready`].
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Calls `prepare` (create streams, consumers, buckets) until it succeeds,
/// logging each failure as "`what` not ready; retrying" and waiting
/// between tries from [`RETRY_FIRST`] doubling to [`RETRY_MAX`], each wait
/// shortened by up to a quarter at random so replicas do not retry in step.
/// `None` when `shutdown` fires first.
pub async fn until_ready<T, E, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut prepare: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return None,
            outcome = prepare() => outcome,
        };
        match outcome {
            Ok(ready) => return Some(ready),
            Err(e) => tracing::warn!(error = %e, "{what} not ready; retrying"),
        }
        let jittered = wait.mul_f64(1.0 - rand::random::<f64>() / 4.0);
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(jittered) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// A service's whole `main`: parse the shared command line, load the
/// config (one line and exit 2 on a bad one), connect to NATS, `start`,
/// and wait until it has stopped.
pub async fn main<F, Fut>(
    name: &'static str,
    args: crate::cli::ServiceArgs,
    start: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<Running>>,
{
    let boot = args.boot(name).await?;
    let running = start(Context {
        config: boot.config,
        env: boot.env,
        client: boot.client,
        shutdown: boot.shutdown,
    })
    .await?;
    running.task.await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn until_ready_backs_off_and_stops_on_shutdown() {
        let shutdown = CancellationToken::new();
        let mut tries = 0;
        let started = tokio::time::Instant::now();
        let ready = until_ready("streams", &shutdown, || {
            tries += 1;
            let now = tries;
            async move {
                if now < 4 {
                    Err("no server")
                } else {
                    Ok(now)
                }
            }
        })
        .await;
        assert_eq!(ready, Some(4));
        // Three waits: 0.25 s, 0.5 s and 1 s, each cut by at most a quarter.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1312), "{waited:?}");
        assert!(waited <= Duration::from_millis(1750), "{waited:?}");

        let stopped = CancellationToken::new();
        stopped.cancel();
        let never = until_ready("streams", &stopped, || async { Err::<(), _>("down") }).await;
        assert_eq!(never, None);
    }
}
