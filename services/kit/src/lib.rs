//! What every talon service shares: configuration, the NATS connection, the
//! streams and consumers, the health/metrics HTTP server,
//! shutdown on SIGTERM, and logging.

pub mod cli;
pub mod config;
pub mod dlq;
pub mod http;
pub mod inventory;
pub mod kv;
pub mod logging;
pub mod nats;
pub mod outbound;
pub mod password;
pub mod pipeline;
pub mod registry;
pub mod schedule;
pub mod service;
pub mod shutdown;
pub mod silences;
pub mod streams;
pub mod template;

pub use config::{Config, ConfigError, Env};

/// Every program linking the kit (the services, `talonctl`, the tests and
/// benches that run services in-process) allocates with mimalloc: glibc's
/// allocator spent a quarter of the pipeline's CPU in its arena locks and
/// in giving pages back and faulting them in again (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
