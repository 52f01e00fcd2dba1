//! `data-backup prune`: deletes backups past their class's keep-for (a dry run unless `--apply`);
//! prints the plan.

use std::process::ExitCode;

use super::output::print_json;
use crate::settings::Settings;

/// `data-backup prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Delete what the plan says (default: only print it).
    #[arg(long)]
    pub apply: bool,
    /// Evaluate the policy as if today were this day (YYYY-MM-DD); only a dry run may look ahead.
    #[arg(long)]
    pub as_of: Option<String>,
}

/// Runs `prune`.
pub async fn run(settings: &Settings, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let policy = crate::retention::RetentionPolicy::from_settings(settings)?;
    let store = crate::store::BackupStore::open(settings).await?;
    let as_of = match args.as_of.as_deref() {
        Some(value) => crate::retention::parse_as_of(value)?,
        None => chrono::Utc::now().date_naive(),
    };
    print_json(&crate::retention::prune(&store, &policy, as_of, args.apply).await?)?;
    Ok(ExitCode::SUCCESS)
}
