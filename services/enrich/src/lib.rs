//! talon-enrich: what Velociraptor's `Server.Monitor.Alerts` does to an
//! alert before it is sent, done once for every channel: overrides,
//! severity, flattened context, client details, links into the
//! Velociraptor GUI, routing, silences. Consumes `talon.alerts.unique`; publishes
//! every alert to `talon.alerts.history` (the console's record) and one
//! message per routed channel to `Server.Monitor.Alerts.<channel-id>`.

pub mod context;
pub mod links;
pub mod metrics;
pub mod overrides;
pub mod route;
pub mod severity;
pub mod silencing;
pub mod transform;

use std::sync::Arc;

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage};
use talon_kit::inventory::Inventory;
use talon_kit::pipeline::{self, Outcome, StageError};
use talon_kit::service::{self, Context, Running};
use talon_kit::silences::Silences;
use talon_kit::streams::{self, ConsumerSpec, Stream};
use talon_proto::names::{notify_subject, Stage, SUBJECT_HISTORY};
use talon_proto::Alert;
use tokio::sync::watch;

use crate::transform::{enrich, Rules};

/// Inputs handled together.
pub const BATCH: usize = 512;

/// The `Nats-Msg-Id` of an alert's message to a channel.
pub fn channel_msg_id(alert_id: &str, channel: &str) -> String {
    format!("{alert_id}:{channel}")
}

/// Consumes `talon.alerts.unique` until `shutdown` fires, once its streams
/// exist and the client inventory is loaded.
pub async fn start(ctx: Context) -> anyhow::Result<Running> {
    let rules = Arc::new(Rules::new(&ctx.config).context("enrich: bad regex")?);
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let health = ctx.health(registry);
    let js = ctx.jetstream();
    let topology = ctx.topology();
    let shutdown = ctx.shutdown.clone();
    let listening = service::listen(
        "enrich.http_listen",
        &ctx.config.enrich.http_listen,
        axum::Router::new(),
        &health,
        &shutdown,
    )
    .await?;

    let inventory = Inventory::default();
    let (loaded_tx, mut loaded) = watch::channel(false);
    tokio::spawn(inventory.clone().follow(
        js.clone(),
        topology.replicas,
        loaded_tx,
        shutdown.clone(),
    ));
    let silences = Silences::default();
    let (silences_tx, mut silences_loaded) = watch::channel(false);
    tokio::spawn(silences.clone().follow(
        js.clone(),
        topology.replicas,
        silences_tx,
        shutdown.clone(),
    ));

    Ok(listening.run("enrich", async move {
        let prepare = || async {
            streams::ensure_stream(&js, Stream::Notify, topology).await?;
            streams::ensure_stream(&js, Stream::History, topology).await?;
            streams::ensure_stream(&js, Stream::Dlq, topology).await?;
            streams::ensure_consumer(&js, &ConsumerSpec::enrich(), topology).await
        };
        let Some(consumer) = service::until_ready("streams", &shutdown, prepare).await else {
            return Ok(());
        };
        // Alerts wait until the inventory's current contents are in, so a
        // known client is never reported unknown for a start-up race.
        // Likewise the silences: one in the bucket before this replica
        // started is in force for its first alert.
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = async { loaded.wait_for(|l| *l).await.map(|_| ()) } => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = async { silences_loaded.wait_for(|l| *l).await.map(|_| ()) } => {}
        }
        let replica = talon_kit::silences::replica_name("enrich");
        tokio::spawn(silencing::report(
            js.clone(),
            topology.replicas,
            replica.clone(),
            silences.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        health.set_streams_ready(true);
        tracing::info!(
            clients = inventory.len(),
            silences = silences.list().len(),
            %replica,
            "enrich consuming talon.alerts.unique"
        );
        let dead = pipeline::DeadLetters::new(js.clone(), Stage::Enrich);
        let letters = dead.clone();
        pipeline::run(
            consumer,
            BATCH,
            metrics.consume.clone(),
            dead,
            shutdown,
            |msg| {
                let (js, letters, rules, inventory, silences, metrics) =
                    (&js, &letters, &rules, &inventory, &silences, &metrics);
                async move { handle(js, letters, &msg, rules, inventory, silences, metrics).await }
            },
        )
        .await;
        Ok(())
    }))
}

/// Enriches one alert, applies the silences and starts its publishes: the
/// record, and one per channel it still goes to; or a dead letter when it
/// is not an Alert.
async fn handle(
    js: &jetstream::Context,
    dead: &pipeline::DeadLetters,
    msg: &jetstream::Message,
    rules: &Rules,
    inventory: &Inventory,
    silences: &Silences,
    metrics: &metrics::Metrics,
) -> Result<Outcome, StageError> {
    let alert: Alert = match talon_proto::decode_alert(&msg.payload) {
        Ok(a) => a,
        Err(e) => {
            let ack = dead.publish(msg, e.to_string()).await?;
            return Ok(Outcome::new("rejected").with(ack));
        }
    };
    let (mut alert, routed) = enrich(alert, rules, |id| inventory.get(id));
    let verdict = silences.apply(&alert, &routed, chrono::Utc::now());
    for id in &verdict.silenced_by {
        metrics.silenced.with_label_values(&[id]).inc();
    }
    let channels = verdict.channels;
    alert.silenced_by = verdict.silenced_by;
    alert.routed_to = Some(channels.clone());
    // The record first, routed or not: the console shows every alert.
    let history = js
        .send_publish(
            SUBJECT_HISTORY,
            PublishMessage::build()
                .payload(serde_json::to_vec(&alert)?.into())
                .message_id(alert.id.clone()),
        )
        .await?;
    if channels.is_empty() {
        if !alert.silenced_by.is_empty() {
            tracing::debug!(alert = %alert.id, silences = ?alert.silenced_by, "silenced");
            return Ok(Outcome::new("silenced").with(history));
        }
        tracing::debug!(alert = %alert.id, name = ?alert.name, "routed to no channel");
        return Ok(Outcome::new("unrouted").with(history));
    }
    let mut outcome = Outcome::new("routed").with(history);
    for channel in channels {
        alert.channel = Some(channel.clone());
        let body = serde_json::to_vec(&alert)?;
        let ack = js
            .send_publish(
                notify_subject(&channel),
                PublishMessage::build()
                    .payload(body.into())
                    .message_id(channel_msg_id(&alert.id, &channel)),
            )
            .await?;
        metrics.routed.with_label_values(&[&channel]).inc();
        outcome = outcome.with(ack);
    }
    Ok(outcome)
}
