//! `talonctl tail`: print what is published on a subject.

use futures::StreamExt;

use crate::cmd::Nats;

/// Arguments of `talonctl tail`.
#[derive(Debug, clap::Args)]
pub struct Args {
    subject: String,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<usize>,
}

/// Prints `SUBJECT PAYLOAD` a line per message, until `--count` of them or
/// the connection ends.
pub async fn run(args: Args, nats: &Nats) -> anyhow::Result<()> {
    let mut sub = nats.client.subscribe(args.subject).await?;
    let mut seen = 0usize;
    while let Some(msg) = sub.next().await {
        println!("{} {}", msg.subject, String::from_utf8_lossy(&msg.payload));
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}
