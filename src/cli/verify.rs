//! `data-backup verify`: restore drills of one backup or of the least recently verified databases;
//! prints the records, exits 1 when a drill failed. `--from COPY` drills the backup in an off-site
//! copy and records the verdict there.

use std::process::ExitCode;

use anyhow::bail;

use super::output::print_json;
use crate::http::state::AppState;
use crate::model::{DatabasePath, RunDate};
use crate::settings::Settings;

/// `data-backup verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// PROJECT/INSTANCE/DATABASE to verify.
    #[arg(long, conflicts_with = "pick", required_unless_present = "pick")]
    pub database: Option<DatabasePath>,
    /// The backup of this run date (default the newest).
    #[arg(long, requires = "database")]
    pub date: Option<String>,
    /// Nightly drill: verify the N least recently verified databases, in the primary store and each
    /// off-site copy (default `verify.nightly_count`).
    #[arg(long, num_args = 0..=1, value_name = "N")]
    pub pick: Option<Option<usize>>,
    /// Drill the backup in this off-site copy (a `[[copies]]` name) instead of the primary store;
    /// the record is written in the copy's store. Needs `--database`.
    #[arg(long = "from", value_name = "COPY", requires = "database", conflicts_with = "pick")]
    pub from: Option<String>,
}

/// Runs `verify`.
pub async fn run(settings: &Settings, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let state = AppState::build(settings).await?;
    let records = match (args.database, args.pick) {
        (_, Some(n)) => state.verifier.pick(n.unwrap_or(settings.verify.nightly_count)).await,
        (Some(db), None) => {
            let date = args.date.as_deref().map(RunDate::parse).transpose()?;
            match args.from.as_deref() {
                None => state.verifier.verify(&db, date).await.map(|r| vec![r]),
                Some(name) => {
                    // A drill of the copy: its catalog, its record (the copy is itself proven).
                    let store = crate::copy::open_copy_store(settings, &state.service.store, name).await?;
                    state.verifier.verify_from(name, &store, &db, date).await.map(|r| vec![r])
                }
            }
        }
        (None, None) => bail!("pass --database P/I/D or --pick [N]"),
    };
    state.local_queue.shutdown(state.grace).await;
    let records = records?;
    print_json(&records)?;
    let failed = records.iter().filter(|r| r.result == crate::verify::VerificationResult::Failed).count();
    if failed > 0 {
        eprintln!("{failed} of {} verifications failed", records.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
