//! talon-notify: one durable consumer per channel on
//! `Server.Monitor.Alerts.<channel-id>`, shared by every replica; each
//! (alert, channel) delivered once, failures retried with backoff, what
//! cannot be delivered parked on `talon.dlq.notify`.

pub mod channels;
pub mod groups;
pub mod ledger;
pub mod metrics;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use talon_kit::config::{ChannelConfig, ChannelSpec, ChatSpec, Config, Env};
use talon_kit::service::{self, Context, Running};

use crate::channels::chat::{ChannelOptions, Chat};
use crate::channels::{email::Email, inbox, webhook};
use crate::worker::{Channel, Sender};

/// Ledger records outlive the longest retry deadline by this much.
const LEDGER_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// How `channel` delivers: what its kind's spec says, with its URL and
/// secrets read from `env` or files now.
fn sender(
    channel: &ChannelConfig,
    config: &Config,
    env: &Env,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<Sender> {
    let id = &channel.id;
    Ok(match channel.spec(&config.secrets)? {
        ChannelSpec::Webhook(hook) => {
            let url = hook.url.read_url(env)?;
            let pairs: Vec<(String, String)> = hook.headers.into_iter().collect();
            let headers = webhook::headers_of(&pairs)
                .map_err(|e| anyhow::anyhow!("channels[id={id}].headers: {e}"))?;
            let secret = match &hook.signing_secret {
                Some(from) => Some(from.read(env)?.into_bytes()),
                None => None,
            };
            Sender::Webhook(webhook::Webhook::new(url, headers, secret)?)
        }
        ChannelSpec::Email(spec) => Sender::Email(Box::new(
            Email::with_spec(channel, &spec, config, env)
                .map_err(|e| anyhow::anyhow!("channels[id={id}]: {e}"))?,
        )),
        ChannelSpec::Inbox(spec) => {
            let users: Vec<inbox::User> = config.console.users.iter().map(Into::into).collect();
            let inbox = inbox::Inbox::new(js.clone(), &spec, &users)
                .map_err(|e| anyhow::anyhow!("channels[id={id}]: {e}"))?;
            if inbox.users().is_empty() {
                tracing::warn!(channel = %id, "no user matches this inbox channel's recipients and recipient_roles");
            }
            Sender::Inbox(inbox)
        }
        ChannelSpec::Chat(spec) => chat_sender(channel, &spec, env)?,
    })
}

/// A chat or incident channel: its URL (PagerDuty's by default) and, for
/// PagerDuty, its routing key, both read from `env` or files.
fn chat_sender(channel: &ChannelConfig, spec: &ChatSpec, env: &Env) -> anyhow::Result<Sender> {
    let url = spec.url.read_url(env)?;
    let routing_key = match &spec.routing_key {
        Some(from) => Some(from.read(env)?),
        None => None,
    };
    let options = ChannelOptions::of(channel, spec, routing_key);
    let chat = Chat::new(spec.kind, &url, options)
        .map_err(|e| anyhow::anyhow!("channels[id={}].url: {e}", channel.id))?;
    Ok(Sender::Chat(Box::new(chat)))
}

/// Starts delivering on the configured channels (those of
/// `[notify].channels`, when given).
pub async fn start(ctx: Context) -> anyhow::Result<Running> {
    let Context {
        config,
        env,
        shutdown,
        ..
    } = &ctx;
    let only = config.notify.channels.as_ref();
    for id in only.into_iter().flatten() {
        if config.channel(id).is_none() {
            bail!("notify.channels (--channels): no channel {id:?} in the config");
        }
    }
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let health = ctx.health(registry);
    let js = ctx.jetstream();
    let mut channels = Vec::new();
    for c in &config.channels {
        if only.is_some_and(|o| !o.contains(&c.id)) {
            continue;
        }
        let channel = Arc::new(Channel::new(
            c.id.clone(),
            sender(c, config, env, &js)?,
            c.max_in_flight,
            c.rate_per_minute,
            Duration::from_secs(c.retry_deadline_seconds),
        ));
        channels.push((channel, c.grouping()));
    }
    let topology = ctx.topology();
    let keep = config
        .channels
        .iter()
        .map(|c| Duration::from_secs(c.retry_deadline_seconds))
        .max()
        .unwrap_or_default()
        + LEDGER_MARGIN;

    let listening = service::listen(
        "notify.http_listen",
        &config.notify.http_listen,
        axum::Router::new(),
        &health,
        shutdown,
    )
    .await?;
    tracing::info!(channels = channels.len(), "notify delivering");

    let replica = format!(
        "notify-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let shutdown = shutdown.clone();
    Ok(listening.run("notify", async move {
        let open = || async {
            // Where each attempt's outcome is told (the console reads it).
            talon_kit::streams::ensure_stream(
                &js,
                talon_kit::streams::Stream::Deliveries,
                topology,
            )
            .await
            .map_err(|e| ledger::LedgerError::from_display(&e))?;
            ledger::Ledger::open(&js, topology.replicas, keep, replica.clone()).await
        };
        let Some(ledger) = service::until_ready("delivery ledger", &shutdown, open).await else {
            return Ok(());
        };
        let shared = Arc::new(worker::Shared {
            js,
            ledger,
            held: Default::default(),
            metrics,
            topology,
        });
        health.set_streams_ready(true);
        let mut workers = Vec::new();
        for (channel, grouping) in channels {
            let groups = match grouping {
                None => None,
                Some(grouping) => {
                    let open = || {
                        groups::Groups::open(
                            shared.clone(),
                            channel.clone(),
                            grouping.clone(),
                            Arc::new(groups::SystemClock),
                            replica.clone(),
                        )
                    };
                    let Some(g) = service::until_ready("groups", &shutdown, open).await else {
                        return Ok(());
                    };
                    let g = Arc::new(g);
                    workers.push(tokio::spawn(g.clone().run(shutdown.clone())));
                    Some(g)
                }
            };
            workers.push(tokio::spawn(worker::run_channel(
                shared.clone(),
                channel,
                groups,
                shutdown.clone(),
            )));
        }
        for w in workers {
            w.await?;
        }
        Ok(())
    }))
}
