//! `data-backup export`: exports one database now, in this process; prints its manifest.

use std::process::ExitCode;

use anyhow::bail;

use super::output::print_json;
use crate::export::ExportOutcome;
use crate::http::state::AppState;
use crate::model::{DatabasePath, ExportTask, RunDate, RunId, SourceName};
use crate::settings::Settings;

/// `data-backup export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// PROJECT/INSTANCE/DATABASE (self-hosted: SOURCE/INSTANCE/DATABASE, as `schedule --dry-run`
    /// lists); a Cloud SQL database's engine is its instance's.
    #[arg(long)]
    pub database: DatabasePath,
    /// Day the backup belongs to (default today, UTC).
    #[arg(long)]
    pub date: Option<String>,
    /// Source, when several are configured.
    #[arg(long)]
    pub source: Option<String>,
    /// Store it as the named backup LABEL (`labels/LABEL/…`), which retention never removes;
    /// exporting the same label again does nothing.
    #[arg(long)]
    pub label: Option<String>,
    /// Export even when the database lies outside what the service is configured to back up
    /// (an `[exclude]` pattern, the source's `databases` globs, a `gcp` source's folders and projects).
    #[arg(long)]
    pub ignore_scope: bool,
}

/// Runs `export`.
pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let ExportArgs { database, date, source, label, ignore_scope } = args;
    let label = label.map(crate::model::Label::parse).transpose()?;
    let state = AppState::build(settings).await?;
    let source = source.map(SourceName::parse).transpose()?;
    let src = state.service.source_for(source.as_ref(), &database.project, &database.instance)?;
    let run_date = date.as_deref().map(RunDate::parse).transpose()?.unwrap_or_else(RunDate::today);
    let mut db = src.database_in(&database.project, &database.instance, database.database, None);
    if !ignore_scope {
        state.service.check_scope(src, &db, &state.exclusions).await?;
    }
    db.engine = src.engine_of(&db, None).await?;
    let task = ExportTask { db, run_date, run_id: RunId::manual() };
    let store = match label {
        Some(label) => state.service.store.with_label(label),
        None => state.service.store.clone(),
    };
    let outcome = state.service.export_into(&store, &task).await;
    state.local_queue.shutdown(state.grace).await;
    match outcome? {
        ExportOutcome::Exported(m) => print_json(&m)?,
        ExportOutcome::AlreadyExported(m) => {
            eprintln!("already exported: {}", m.key);
            print_json(&m)?;
        }
        ExportOutcome::LeaseHeld { retry_after } => {
            bail!("another export of {} is running; try again in {}s", task.db, retry_after.as_secs())
        }
    }
    Ok(ExitCode::SUCCESS)
}
