//! `talonctl check-config`: parse the config file, report the first
//! problem.

use anyhow::bail;
use talon_kit::config::{Config, Env};

use crate::cli::Global;

/// Prints `PATH: ok` (and on standard error the keys of earlier releases it
/// read), or the config's first problem on standard error and exits 2, as
/// the services do on a bad config.
pub fn run(global: &Global, env: &Env) -> anyhow::Result<()> {
    let Some(path) = &global.config else {
        bail!("check-config needs --config PATH (or TALON_CONFIG)");
    };
    match Config::load(path, env) {
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
        }
    }
    println!("{}: ok", path.display());
    Ok(())
}
