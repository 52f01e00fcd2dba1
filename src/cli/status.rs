//! `data-backup status`: the totals and the state of every database as a table with the strip of
//! its last nights and how each off-site copy holds it (or the JSON of `GET /status`), with an exit
//! status for cron and health checks (see `status::render::exit_status`).

use std::process::ExitCode;

use anyhow::Context;

use super::output::print_json;
use crate::settings::Settings;

/// `data-backup status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the JSON of `GET /status` instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Only this project.
    #[arg(long)]
    pub project: Option<String>,
    /// Only this instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// Only this state.
    #[arg(long)]
    pub state: Option<String>,
}

/// Runs `status`.
pub async fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    let StatusArgs { json, project, instance, state } = args;
    let state = state
        .map(|s| {
            crate::status::DbState::parse(&s).with_context(|| {
                format!("unknown state `{s}` (ok, stale, failing, missing, suspect, gone, unverified, unverifiable, excluded)")
            })
        })
        .transpose()?;
    let store = crate::store::BackupStore::open(settings).await?;
    let mut copies = Vec::with_capacity(settings.copies.len());
    for copy in &settings.copies {
        let copy_store = crate::copy::open_copy_store(settings, &store, &copy.name).await?;
        copies.push(crate::status::copies::StatusCopy { settings: copy.clone(), store: copy_store });
    }
    let (report, histories) = tokio::try_join!(
        crate::status::compute::compute(&store, &settings.status, &copies, chrono::Utc::now()),
        crate::store::history::all_histories(&store)
    )?;
    let histories: crate::status::page::Histories =
        histories.into_values().map(|h| ((h.project.clone(), h.instance.clone(), h.database.clone()), h)).collect();
    let shown = report.filtered(&crate::status::StatusFilter { project, instance, state });
    if json {
        print_json(&shown)?;
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        print!("{}", crate::status::render::render_table(&shown, &histories, color));
    }
    Ok(ExitCode::from(crate::status::render::exit_status(&shown)))
}
