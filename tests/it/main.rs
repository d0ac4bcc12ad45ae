//! talon's end-to-end tests, one module per area, in one binary (one link
//! of the whole workspace instead of one per file). Every test starts its
//! own nats-server and services on loopback; `cargo test -p talon-tests
//! --test it <module>::` runs one area.
//!
//! The slow suites — the chaos run, the three-node NATS cluster and the
//! console in headless Chromium — build only with `--features slow`
//! (`scripts/test` and CI pass it), so a plain `cargo test` stays quick.

mod alerts;
#[cfg(feature = "slow")]
mod chaos;
mod chat;
#[cfg(feature = "slow")]
mod cluster;
mod console_api;
#[cfg(feature = "slow")]
mod console_browser;
mod dedup;
mod deploy;
mod disk_full;
mod doors;
mod email;
mod enrich;
mod groups;
mod inbox;
mod ingest_http;
mod ingest_nats;
mod notify;
mod poison;
mod rule_state;
mod rules;
mod silences;
mod startup;
mod talonctl;
mod topology;
mod velociraptor;
