//! `data-backup serve`: runs the HTTP service and the nightly timer until SIGTERM or SIGINT.

use std::process::ExitCode;

use anyhow::Context;

use crate::app::{Application, shutdown_signal};
use crate::model::RunDate;
use crate::settings::Settings;

/// `data-backup serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Also run one schedule right away (back up every database now).
    #[arg(long)]
    pub now: bool,
}

/// Runs `serve`.
pub async fn run(settings: &Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Installed first: a SIGTERM from here on shuts down gracefully.
    let shutdown = shutdown_signal();
    let app = Application::build(settings).await?;
    if args.now {
        let state = app.state().clone();
        tokio::spawn(async move { state.schedule(RunDate::today(), false).await });
    }
    app.run_until(shutdown).await.context("serving")?;
    Ok(ExitCode::SUCCESS)
}
