use clap::Parser;
use talon_kit::cli::ServiceArgs;

/// talon-dedup: dedup windows per key, in sled, that survive restarts.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse().service;
    talon_kit::service::main("talon-dedup", args, talon_dedup::start).await
}
