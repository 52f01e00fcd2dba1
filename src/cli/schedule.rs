//! `data-backup schedule`: discovers every database and exports each one now, on the in-process
//! queue; prints the summary, and names on standard error every planned database left without its
//! backup (exit 1 then, or when the run had errors).

use std::process::ExitCode;

use anyhow::Context;

use super::output::print_json;
use crate::http::state::AppState;
use crate::model::{DatabaseName, DatabaseRef, InstanceName, ProjectId, RunDate, RunId, SourceName};
use crate::runs::ledger::{PlanAction, RunLedger};
use crate::settings::Settings;
use crate::store::layout::Key;

/// `data-backup schedule`.
#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Print the plan (each database, or why it is excluded); export nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `schedule`.
pub async fn run(settings: &Settings, args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let dry_run = args.dry_run;
    let state = AppState::build(settings).await?;
    let summary = state.schedule(RunDate::today(), dry_run).await;
    state.queue.wait_idle().await;
    // The run's one summary notification goes out as soon as the queue is idle.
    state.flush_run_reports().await;
    // Every planned database must now have its backup: count the ones that do not.
    // The run ledger is the expected set (no second discovery).
    let mut missing = 0;
    if !dry_run {
        let date = RunDate::parse(&summary.run_date)?;
        let key = Key::RunLedger { date, run_id: RunId::parse(summary.run_id.as_str())? };
        let ledger: RunLedger = state.service.store.read(&key).await?.context("the run ledger is missing")?;
        for planned in ledger.databases.iter().filter(|d| d.action == PlanAction::Export) {
            let db = DatabaseRef {
                source: SourceName::parse(planned.source.as_str())?,
                project: ProjectId::parse(planned.project.as_str())?,
                instance: InstanceName::parse(planned.instance.as_str())?,
                database: DatabaseName::parse(planned.database.as_str())?,
                engine: planned.engine,
            };
            if state.service.store.manifest(&db, date).await?.is_none() {
                eprintln!("not backed up: {db}");
                missing += 1;
            }
        }
    }
    print_json(&summary)?;
    state.local_queue.shutdown(state.grace).await;
    Ok(if summary.errors.is_empty() && missing == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
