//! `talonctl health URL`: the container health check. GETs the URL (a
//! service's `/readyz`) and exits 0 on a 2xx answer, 1 otherwise, so the
//! image needs no curl or wget.

use std::time::Duration;

use anyhow::{bail, Context as _};

/// Arguments of `talonctl health`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to GET, e.g. http://127.0.0.1:8470/readyz.
    url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

/// Prints the answer's first line; fails unless it is a 2xx.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = talon_kit::outbound::client_builder()
        .timeout(Duration::from_secs(args.timeout.clamp(1, 300)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let mut response = http
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("GET {}", args.url))?;
    let status = response.status();
    // Only the first chunk: whatever answers, a huge body is not read.
    let first = response.chunk().await.ok().flatten().unwrap_or_default();
    let body = String::from_utf8_lossy(&first);
    let line = body.lines().next().unwrap_or("").chars().take(200);
    let line: String = line.collect::<String>().escape_debug().to_string();
    if !status.is_success() {
        bail!("GET {}: {status} {line}", args.url);
    }
    println!("{status} {line}");
    Ok(())
}
