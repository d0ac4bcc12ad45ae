//! talon-ingest: validates raw alerts from `Server.Internal.Alerts` (and the
//! HTTP edge, which publishes there), gives each a stable id, and publishes
//! it to its dedup partition `talon.alerts.accepted.<p>`; what cannot be
//! processed goes to `talon.dlq.ingest` with its reason. Its rules turn
//! monitoring rows (`Monitoring.<ArtifactName>`, also taken by the HTTP
//! edge) into alerts on `Server.Internal.Alerts`.

pub mod consume;
pub mod counting;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod process;
pub mod rules;
pub mod stateful;

use std::sync::Arc;

use anyhow::Context as _;
use talon_kit::inventory::Inventory;
use talon_kit::service::{self, Context, Running};
use talon_kit::streams::{self, ConsumerSpec, Stream};
use tokio::sync::watch;

/// Binds the HTTP edge, then (in the background) creates the streams and
/// consumer it needs and consumes until `shutdown` fires.
pub async fn start(ctx: Context) -> anyhow::Result<Running> {
    let Context {
        config,
        env,
        client,
        shutdown,
    } = &ctx;
    let rules = rules::Rules::compile(&config.rules).context("rules")?;
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let health = ctx.health(registry);
    let js = ctx.jetstream();

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
    let listening = service::listen(
        "ingest.http_listen",
        &config.ingest.http_listen,
        http::routes(edge),
        &health,
        shutdown,
    )
    .await?;

    let settings = process::Settings {
        max_bytes: config.ingest.max_body_bytes,
        key: config.dedup.key.clone(),
        partitions: config.ingest.partitions,
    };
    let topology = ctx.topology();
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
    let shutdown = shutdown.clone();
    Ok(listening.run("ingest", async move {
        let with_rules = !rules.is_empty();
        let Some((consumer, rules_consumer)) =
            service::until_ready("streams", &shutdown, || prepare(&js, topology, with_rules)).await
        else {
            return Ok(());
        };
        health.set_streams_ready(true);
        let watching = rules_consumer.map(|rules_consumer| {
            let (js, metrics, shutdown) = (js.clone(), metrics.clone(), shutdown.clone());
            async move {
                let states = if rules.with_state() {
                    let open = || stateful::States::open(&js, topology.replicas);
                    let Some(states) = service::until_ready("rule state", &shutdown, open).await
                    else {
                        return;
                    };
                    if rules.absent().next().is_some() {
                        tokio::spawn(stateful::absent_clock(
                            states.clone(),
                            rules.clone(),
                            rules_consumer.clone(),
                            inventory.clone(),
                            metrics.clone(),
                            shutdown.clone(),
                        ));
                    }
                    Some(states)
                } else {
                    None
                };
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
                monitor::run(
                    js,
                    rules_consumer,
                    rules,
                    states,
                    inventory,
                    metrics,
                    shutdown,
                )
                .await
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
        Ok(())
    }))
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
