//! talon-ingest: validates raw alerts from `Server.Internal.Alerts` (and the
//! HTTP edge, which publishes there), gives each a stable id, and publishes
//! it to its dedup partition `talon.alerts.accepted.<p>`; what cannot be
//! processed goes to `talon.dlq.ingest` with its reason. Its rules turn
//! monitoring rows (`Monitoring.<ArtifactName>`, also taken by the HTTP
//! edge) into alerts on `Server.Internal.Alerts`.

pub mod consume;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod process;
pub mod rules;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use talon_kit::config::{Config, Env};
use talon_kit::http::Health;
use talon_kit::inventory::Inventory;
use talon_kit::streams::{self, ConsumerSpec, Stream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A started ingest: where its HTTP server listens, and the task to await.
pub struct Running {
    pub http_addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Binds the HTTP edge, then (in the background) creates the streams and
/// consumer it needs and consumes until `shutdown` fires.
pub async fn start(
    config: Config,
    env: &Env,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let rules = rules::Rules::compile(&config.rules).context("rules")?;
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let health = Health::new(client.clone(), registry);
    let js = talon_kit::nats::jetstream(client.clone());

    let tokens = config.ingest.checked_tokens(env)?;
    if tokens.is_empty() {
        tracing::warn!(
            tokens_env = %config.ingest.tokens_env,
            "no ingest tokens configured: every HTTP request will be refused with 401"
        );
    }
    let edge = http::Edge {
        js: js.clone(),
        client: client.clone(),
        tokens: Arc::new(tokens),
        tokens_env: config.ingest.tokens_env.clone(),
        max_body_bytes: config.ingest.max_body_bytes,
        max_items: config.ingest.max_items,
        metrics: metrics.clone(),
    };
    let router = http::routes(edge).merge(talon_kit::http::health_routes(health.clone()));
    let (listener, http_addr) = talon_kit::http::bind(&config.ingest.http_listen)
        .await
        .with_context(|| {
            format!(
                "ingest.http_listen: cannot listen on {}",
                config.ingest.http_listen
            )
        })?;
    tracing::info!(addr = %http_addr, "ingest HTTP edge listening");
    let server = tokio::spawn(talon_kit::http::serve(listener, router, shutdown.clone()));

    let settings = process::Settings {
        max_bytes: config.ingest.max_body_bytes,
        key: config.dedup.key.clone(),
        partitions: config.ingest.partitions,
    };
    let topology = streams::Topology::from(&config.nats);
    let inventory = Inventory::default();
    let (loaded_tx, mut loaded) = watch::channel(false);
    if rules.use_clients() {
        tokio::spawn(inventory.clone().follow(
            js.clone(),
            topology.replicas,
            loaded_tx,
            shutdown.clone(),
        ));
    } else {
        let _ = loaded_tx.send(true);
    }
    let task = tokio::spawn(async move {
        let (consumer, rules_consumer) = loop {
            match prepare(&js, topology, !rules.is_empty()).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "streams not ready; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            server.await??;
                            return Ok(());
                        }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        health.set_streams_ready(true);
        let watching = rules_consumer.map(|rules_consumer| {
            let (js, metrics, shutdown) = (js.clone(), metrics.clone(), shutdown.clone());
            async move {
                // Rows wait until the inventory's current contents are in, so
                // a known client's hostname is never replaced by its id for a
                // start-up race.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = async { loaded.wait_for(|l| *l).await.map(|_| ()) } => {}
                }
                tracing::info!(
                    rules = rules.len(),
                    clients = inventory.len(),
                    "ingest's rules consuming Monitoring.>"
                );
                monitor::run(js, rules_consumer, rules, inventory, metrics, shutdown).await
            }
        });
        tracing::info!("ingest consuming Server.Internal.Alerts");
        let alerts = consume::run(js, consumer, settings, metrics, shutdown);
        match watching {
            Some(watching) => {
                tokio::join!(alerts, watching);
            }
            None => alerts.await,
        }
        server.await??;
        tracing::info!("ingest stopped");
        Ok(())
    });
    Ok(Running { http_addr, task })
}

/// Runs ingest until `shutdown` fires.
pub async fn run(
    config: Config,
    env: &Env,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    start(config, env, client, shutdown).await?.task.await?
}

type Consumer = async_nats::jetstream::consumer::PullConsumer;

/// The streams ingest reads and writes, its consumer, and the rules'
/// consumer when there are rules.
async fn prepare(
    js: &async_nats::jetstream::Context,
    topology: streams::Topology,
    with_rules: bool,
) -> anyhow::Result<(Consumer, Option<Consumer>)> {
    // ingest writes to ACCEPTED and DLQ, and its HTTP edge to MONITORING:
    // they must exist before its first publish, whether or not the other
    // services have started.
    streams::ensure_stream(js, Stream::Accepted, topology).await?;
    streams::ensure_stream(js, Stream::Dlq, topology).await?;
    streams::ensure_stream(js, Stream::Monitoring, topology).await?;
    let alerts = streams::ensure_consumer(js, &ConsumerSpec::ingest(), topology).await?;
    let rules = if with_rules {
        Some(streams::ensure_consumer(js, &ConsumerSpec::rules(), topology).await?)
    } else {
        None
    };
    Ok((alerts, rules))
}
