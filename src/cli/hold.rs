//! `data-backup hold …`: the backups held by the data-loss tripwire; list them, release one.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use super::output::print_json;
use crate::model::{DatabasePath, RunDate};
use crate::settings::Settings;

/// `data-backup hold …`.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Every held backup, oldest first, with the reason.
    List {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Release the hold of one backup (and its object holds on GCS).
    Release {
        /// PROJECT/INSTANCE/DATABASE.
        #[arg(long)]
        database: DatabasePath,
        /// Run date of the held backup (YYYY-MM-DD).
        #[arg(long)]
        date: String,
    },
}

/// Runs `hold list` or `hold release`.
pub async fn run(settings: &Settings, command: HoldCommand) -> anyhow::Result<ExitCode> {
    let store = crate::store::BackupStore::open(settings).await?;
    match command {
        HoldCommand::List { json } => {
            let holds = crate::store::holds::holds(&store).await?;
            if json {
                print_json(&holds)?;
            } else {
                println!("{:<40}  {:<10}  {:<10}  REASON", "DATABASE", "HELD", "SUSPECT");
                for h in &holds {
                    let db = format!("{}/{}/{}", h.project, h.instance, h.database);
                    println!("{db:<40}  {:<10}  {:<10}  {}", h.run_date, h.suspect_run_date, h.trip.words());
                }
                if holds.is_empty() {
                    eprintln!("no backups are held");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HoldCommand::Release { database, date } => {
            let date = RunDate::parse(&date)?;
            match crate::store::holds::release(&store, &database, date).await? {
                Some(hold) => {
                    print_json(&hold)?;
                    eprintln!("released the hold of {} of {date}", crate::restore::path_text(&database));
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!("no hold on the backup of {} of {date}", crate::restore::path_text(&database)),
            }
        }
    }
}
