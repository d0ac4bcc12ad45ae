//! `talonctl clients`: the client inventory (KV bucket talon_clients).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use talon_proto::ClientInfo;

use crate::cmd::Nats;

/// Arguments of `talonctl clients`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load JSON lines of {client_id, hostname, fqdn, os, labels}; every line
    /// is checked before anything is written.
    Import(ImportArgs),
}

/// Arguments of `talonctl clients import`.
#[derive(Debug, clap::Args)]
struct ImportArgs {
    file: PathBuf,
}

/// Runs the `clients` subcommand given.
pub async fn run(args: Args, nats: &Nats) -> anyhow::Result<()> {
    match args.command {
        Command::Import(args) => import(args, nats).await,
    }
}

/// Reads and checks the whole file, then stores each client and prints how
/// many.
async fn import(args: ImportArgs, nats: &Nats) -> anyhow::Result<()> {
    let file = args.file;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let clients = parse_inventory(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let store =
        talon_kit::streams::ensure_clients_bucket(&nats.js, nats.config.nats.stream_replicas)
            .await?;
    for (id, info) in &clients {
        store
            .put(id, serde_json::to_vec(info)?.into())
            .await
            .with_context(|| format!("cannot store client {id}"))?;
    }
    println!("imported {} clients", clients.len());
    Ok(())
}

/// The client records of a JSON-lines inventory, keyed by client id; the
/// first bad line is an error naming it.
fn parse_inventory(text: &str) -> Result<Vec<(String, ClientInfo)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let info: ClientInfo =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let id = match info.client_id.as_deref() {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => return Err(format!("line {}: client_id is missing", i + 1)),
        };
        out.push((id, info));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_lines_are_checked_before_anything_is_written() {
        let good = "{\"client_id\":\"C.1\",\"hostname\":\"web-1\",\"labels\":[\"prod\"]}\n\n{\"client_id\":\"C.2\"}\n";
        let parsed = parse_inventory(good).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].1.hostname.as_deref(), Some("web-1"));
        assert_eq!(
            parse_inventory("{\"hostname\":\"x\"}").unwrap_err(),
            "line 1: client_id is missing"
        );
        assert!(
            parse_inventory("{\"client_id\":\"C.1\"}\n{\"client_id\":\"C.2\",\"colour\":1}")
                .unwrap_err()
                .starts_with("line 2: unknown field `colour`")
        );
    }
}
