//! `talonctl init`: every stream and consumer of the suite.

use crate::cmd::Nats;

/// Creates the streams and consumers (idempotent) and names each consumer.
pub async fn run(nats: &Nats) -> anyhow::Result<()> {
    talon_kit::streams::ensure_suite(&nats.js, &nats.config).await?;
    for spec in talon_kit::streams::suite_consumers(&nats.config) {
        println!(
            "consumer {} on {} ({})",
            spec.durable,
            spec.stream.name(),
            spec.filter
        );
    }
    println!("streams and consumers ready");
    Ok(())
}
