//! The client inventory: the KV bucket `talon_clients`, watched and cached in
//! memory, so a lookup costs no round trip. enrich reads it for an alert's
//! client details, ingest's rules for `{client.hostname}` / `{client.fqdn}`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, kv::Operation};
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
        crate::kv::follow(
            "client inventory",
            || crate::streams::ensure_clients_bucket(&js, replicas),
            |e| self.apply(&e.key, e.operation, &e.value),
            loaded,
            shutdown,
        )
        .await;
    }
}
