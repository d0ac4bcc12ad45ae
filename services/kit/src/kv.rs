//! Following a key-value bucket into memory: every current entry, then
//! each change, handed to the cache that keeps it (the client inventory,
//! the silences).

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::streams::StreamError;

/// Watches the bucket `open` opens (creating it if need be) until
/// `shutdown` fires, handing each entry to `apply`; `loaded` turns true
/// once the bucket's current contents are in. A watch that fails is
/// opened again a second later; `what` names it in the log.
pub async fn follow<Open, Opened, Apply>(
    what: &'static str,
    open: Open,
    mut apply: Apply,
    loaded: watch::Sender<bool>,
    shutdown: CancellationToken,
) where
    Open: Fn() -> Opened,
    Opened: Future<Output = Result<kv::Store, StreamError>>,
    Apply: FnMut(&kv::Entry),
{
    while !shutdown.is_cancelled() {
        if let Err(e) = follow_once(&open, &mut apply, &loaded, &shutdown).await {
            tracing::warn!(error = %e, "{what} watch failed; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn follow_once<Open, Opened, Apply>(
    open: &Open,
    apply: &mut Apply,
    loaded: &watch::Sender<bool>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()>
where
    Open: Fn() -> Opened,
    Opened: Future<Output = Result<kv::Store, StreamError>>,
    Apply: FnMut(&kv::Entry),
{
    let store = open().await?;
    if store.status().await?.values() == 0 {
        let _ = loaded.send(true);
    }
    let mut entries = store.watch_with_history(">").await?;
    loop {
        let entry = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            e = entries.next() => e,
        };
        match entry {
            Some(Ok(entry)) => {
                apply(&entry);
                if entry.seen_current || entry.delta == 0 {
                    let _ = loaded.send(true);
                }
            }
            Some(Err(e)) => anyhow::bail!("{e}"),
            None => anyhow::bail!("the watch ended"),
        }
    }
}
