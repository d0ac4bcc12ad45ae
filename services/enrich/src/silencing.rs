//! What this enrich replica tells the console about silences: under
//! `sync.<replica>` in `talon_silences`, the newest silence revision it has
//! applied and how many are active, written when a silence changes and
//! every [`REPORT_EVERY`]; removed on a clean shutdown.

use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use talon_kit::silences::Silences;
use talon_proto::silence::SYNC_KEY_PREFIX;
use talon_proto::SilenceSync;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often a replica reports even when nothing changed.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Reports until `shutdown` fires, then removes the report.
pub async fn report(
    js: jetstream::Context,
    replicas: usize,
    replica: String,
    silences: Silences,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let key = format!("{SYNC_KEY_PREFIX}{replica}");
    let mut changed = silences.subscribe();
    let mut store = None;
    loop {
        let now = Utc::now();
        let active = silences.active(now);
        metrics
            .silences_active
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        let sync = SilenceSync {
            replica: replica.clone(),
            revision: silences.revision(),
            active,
            at: now,
        };
        if store.is_none() {
            store = talon_kit::streams::ensure_silences_bucket(&js, replicas)
                .await
                .map_err(|e| tracing::warn!(error = %e, "silences bucket; reporting later"))
                .ok();
        }
        if let Some(s) = &store {
            let body = serde_json::to_vec(&sync).unwrap_or_default();
            if let Err(e) = s.put(&key, body.into()).await {
                tracing::warn!(error = %e, "reporting the silences applied; retrying later");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed.changed() => {}
            _ = tokio::time::sleep(REPORT_EVERY) => {}
        }
    }
    if let Some(s) = store {
        let _ = s.delete(&key).await;
    }
}
