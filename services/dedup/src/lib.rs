//! talon-dedup: one durable consumer per owned partition of
//! `talon.alerts.accepted.<p>`; an alert that opens its key's window goes on
//! to `talon.alerts.unique`, later ones inside the window are suppressed and
//! counted. Windows live in sled, one store per partition, flushed before
//! the inputs they reflect are acked.

pub mod consume;
pub mod http;
pub mod metrics;
pub mod store;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use talon_kit::http::Health;
use talon_kit::service::{self, Context, Running};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// sled's page cache per partition. sled's resident memory is a multiple of
/// it (about 100 MB + 2.6 x this once the sweep has walked every window):
/// 32 MB keeps a replica with 1,000,000 windows under 200 MB at no
/// measurable cost in throughput (`cargo bench --bench dedup`).
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Opens the stores of the owned partitions, binds the HTTP API, and runs
/// one loop per partition until `shutdown` fires.
pub async fn start(ctx: Context) -> anyhow::Result<Running> {
    let Context {
        config,
        env,
        shutdown,
        ..
    } = &ctx;
    let dedup = &config.dedup;
    let tokens = dedup.checked_tokens(env)?;
    if tokens.is_empty() {
        tracing::warn!(
            tokens_env = %dedup.tokens_env,
            "no dedup API tokens configured: every /v1/windows request will be refused with 401"
        );
    }
    let registry = prometheus::Registry::new();
    let metrics = metrics::Metrics::new(&registry).context("registering metrics")?;
    let health = ctx.health(registry);
    let lengths = window::Lengths::new(dedup).context("dedup.override: bad regex")?;
    let shared = Arc::new(consume::Shared {
        js: ctx.jetstream(),
        key: dedup.key.clone(),
        lengths,
        metrics,
        topology: ctx.topology(),
    });

    std::fs::create_dir_all(&dedup.data_dir)
        .with_context(|| format!("dedup.data_dir: cannot create {}", dedup.data_dir.display()))?;
    let mut owned = BTreeMap::new();
    let mut loops = Vec::new();
    let mut readiness = Vec::new();
    for &partition in &dedup.partitions {
        let store = Arc::new(
            store::PartitionStore::open(&dedup.data_dir, partition, CACHE_BYTES)
                .with_context(|| format!("dedup.data_dir: cannot open partition {partition}"))?,
        );
        let (commands, receiver) = mpsc::channel(16);
        let (ready_tx, ready_rx) = watch::channel(false);
        readiness.push(ready_rx);
        owned.insert(
            partition,
            http::Owned {
                store: store.clone(),
                commands,
            },
        );
        loops.push((partition, store, receiver, ready_tx));
    }
    let api = http::Api {
        partitions: Arc::new(owned),
        total_partitions: config.ingest.partitions,
        tokens: Arc::new(tokens),
    };
    let listening = service::listen(
        "dedup.http_listen",
        &dedup.http_listen,
        http::routes(api),
        &health,
        shutdown,
    )
    .await?;
    tracing::info!(partitions = ?dedup.partitions, "dedup serving its partitions");

    // Ready while every partition's consumer is pulling.
    tokio::spawn(watch_readiness(health, readiness, shutdown.clone()));

    let handles: Vec<_> = loops
        .into_iter()
        .map(|(partition, store, receiver, ready)| {
            tokio::spawn(consume::run_partition(
                shared.clone(),
                partition,
                store,
                receiver,
                ready,
                shutdown.clone(),
            ))
        })
        .collect();
    Ok(listening.run("dedup", async move {
        // A partition that ended on a sled error has cancelled `shutdown`;
        // the others stop with it, and the service exits with the error.
        let mut failed = None;
        for h in handles {
            if let Err(e) = h.await? {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(anyhow::Error::new(e).context("dedup stopped: its store failed")),
            None => Ok(()),
        }
    }))
}

async fn watch_readiness(
    health: Health,
    mut readiness: Vec<watch::Receiver<bool>>,
    shutdown: CancellationToken,
) {
    loop {
        let all = readiness.iter().all(|r| *r.borrow());
        health.set_streams_ready(all);
        let changes =
            futures::future::select_all(readiness.iter_mut().map(|r| Box::pin(r.changed())));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            (result, _, _) = changes => if result.is_err() { return },
        }
    }
}
