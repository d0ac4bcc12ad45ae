//! talon-enrich: what Velociraptor's `Server.Monitor.Alerts` does to an
//! alert before it is sent, done once for every channel: overrides,
//! severity, flattened context, client details, routing. Consumes
//! `talon.alerts.unique`; publishes one message per routed channel to
//! `Server.Monitor.Alerts.<channel-id>`.

pub mod context;
pub mod metrics;
pub mod overrides;
pub mod route;
pub mod severity;
pub mod transform;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage};
use talon_kit::config::Config;
use talon_kit::http::Health;
use talon_kit::inventory::Inventory;
use talon_kit::pipeline::{self, Outcome};
use talon_kit::streams::{self, ConsumerSpec, Stream};
use talon_proto::names::{notify_subject, STAGE_ENRICH};
use talon_proto::Alert;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::transform::{enrich, Rules};

/// Inputs handled together.
pub const BATCH: usize = 512;

pub struct Running {
    pub http_addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// The `Nats-Msg-Id` of an alert's message to a channel.
pub fn channel_msg_id(alert_id: &str, channel: &str) -> String {
    format!("{alert_id}:{channel}")
}

pub async fn start(
    config: Config,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let rules = Arc::new(Rules::new(&config).context("enrich: bad regex")?);
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let health = Health::new(client.clone(), registry);
    let js = talon_kit::nats::jetstream(client);
    let topology = streams::Topology::from(&config.nats);

    let router = talon_kit::http::health_routes(health.clone());
    let (listener, http_addr) = talon_kit::http::bind(&config.enrich.http_listen)
        .await
        .with_context(|| {
            format!(
                "enrich.http_listen: cannot listen on {}",
                config.enrich.http_listen
            )
        })?;
    tracing::info!(addr = %http_addr, "enrich listening");
    let server = tokio::spawn(talon_kit::http::serve(listener, router, shutdown.clone()));

    let inventory = Inventory::default();
    let (loaded_tx, mut loaded) = watch::channel(false);
    tokio::spawn(inventory.clone().follow(
        js.clone(),
        topology.replicas,
        loaded_tx,
        shutdown.clone(),
    ));

    let task = tokio::spawn(async move {
        let consumer = loop {
            let ready = async {
                streams::ensure_stream(&js, Stream::Notify, topology).await?;
                streams::ensure_stream(&js, Stream::Dlq, topology).await?;
                streams::ensure_consumer(&js, &ConsumerSpec::enrich(), topology).await
            };
            match ready.await {
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
        // Alerts wait until the inventory's current contents are in, so a
        // known client is never reported unknown for a start-up race.
        tokio::select! {
            _ = shutdown.cancelled() => {
                server.await??;
                return Ok(());
            }
            _ = async { loaded.wait_for(|l| *l).await.map(|_| ()) } => {}
        }
        health.set_streams_ready(true);
        tracing::info!(
            clients = inventory.len(),
            "enrich consuming talon.alerts.unique"
        );
        let dead = pipeline::DeadLetters::new(js.clone(), STAGE_ENRICH);
        let letters = dead.clone();
        pipeline::run(
            consumer,
            BATCH,
            metrics.consume.clone(),
            dead,
            shutdown,
            |msg| {
                let (js, letters, rules, inventory, metrics) =
                    (&js, &letters, &rules, &inventory, &metrics);
                async move { handle(js, letters, &msg, rules, inventory, metrics).await }
            },
        )
        .await;
        server.await??;
        tracing::info!("enrich stopped");
        Ok(())
    });
    Ok(Running { http_addr, task })
}

pub async fn run(
    config: Config,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    start(config, client, shutdown).await?.task.await?
}

/// Enriches one alert and starts its publishes: one per routed channel, or
/// a dead letter when it is not an Alert.
async fn handle(
    js: &jetstream::Context,
    dead: &pipeline::DeadLetters,
    msg: &jetstream::Message,
    rules: &Rules,
    inventory: &Inventory,
    metrics: &metrics::Metrics,
) -> Result<Outcome, String> {
    let alert: Alert = match talon_proto::decode_alert(&msg.payload) {
        Ok(a) => a,
        Err(e) => {
            let ack = dead.publish(msg, e.to_string()).await?;
            return Ok(Outcome::new("rejected").with(ack));
        }
    };
    let (mut alert, channels) = enrich(alert, rules, |id| inventory.get(id));
    if channels.is_empty() {
        tracing::debug!(alert = %alert.id, name = ?alert.name, "routed to no channel");
        return Ok(Outcome::new("unrouted"));
    }
    let mut outcome = Outcome::new("routed");
    for channel in channels {
        alert.channel = Some(channel.clone());
        let body = serde_json::to_vec(&alert).map_err(|e| e.to_string())?;
        let ack = js
            .send_publish(
                notify_subject(&channel),
                PublishMessage::build()
                    .payload(body.into())
                    .message_id(channel_msg_id(&alert.id, &channel)),
            )
            .await
            .map_err(|e| e.to_string())?;
        metrics.routed.with_label_values(&[&channel]).inc();
        outcome = outcome.with(ack);
    }
    Ok(outcome)
}
