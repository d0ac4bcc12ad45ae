//! The client inventory: the KV bucket `talon_clients`, watched and cached in
//! memory, so a lookup costs no round trip. enrich reads it for an alert's
//! client details, ingest's rules for `{client.hostname}` / `{client.fqdn}`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv::Operation};
use futures::StreamExt;
use talon_proto::ClientInfo;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The id Velociraptor gives the server itself: never looked up.
pub const SERVER_CLIENT_ID: &str = "server";

#[derive(Clone, Default)]
pub struct Inventory {
    clients: Arc<RwLock<HashMap<String, ClientInfo>>>,
}

impl Inventory {
    /// The client's details, when the inventory knows it.
    pub fn get(&self, client_id: &str) -> Option<ClientInfo> {
        if client_id.is_empty() || client_id == SERVER_CLIENT_ID {
            return None;
        }
        self.clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.clients.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(&self, key: &str, operation: Operation, value: &[u8]) {
        let mut clients = self.clients.write().unwrap_or_else(|e| e.into_inner());
        match operation {
            Operation::Put => match serde_json::from_slice::<ClientInfo>(value) {
                Ok(mut info) => {
                    info.client_id.get_or_insert_with(|| key.to_owned());
                    clients.insert(key.to_owned(), info);
                }
                Err(e) => {
                    tracing::warn!(client = key, error = %e, "inventory entry is not a client record; ignored")
                }
            },
            Operation::Delete | Operation::Purge => {
                clients.remove(key);
            }
        }
    }

    /// Keeps the cache in step with the bucket until `shutdown` fires;
    /// `loaded` turns true once the bucket's current contents are in.
    pub async fn follow(
        self,
        js: jetstream::Context,
        replicas: usize,
        loaded: watch::Sender<bool>,
        shutdown: CancellationToken,
    ) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.follow_once(&js, replicas, &loaded, &shutdown).await {
                tracing::warn!(error = %e, "client inventory watch failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    async fn follow_once(
        &self,
        js: &jetstream::Context,
        replicas: usize,
        loaded: &watch::Sender<bool>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let store = crate::streams::ensure_clients_bucket(js, replicas).await?;
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
                    self.apply(&entry.key, entry.operation, &entry.value);
                    if entry.seen_current || entry.delta == 0 {
                        let _ = loaded.send(true);
                    }
                }
                Some(Err(e)) => anyhow::bail!("{e}"),
                None => anyhow::bail!("the watch ended"),
            }
        }
    }
}
