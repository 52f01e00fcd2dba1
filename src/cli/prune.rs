//! `data-backup prune`: deletes backups past their class's keep-for (a dry run unless `--apply`);
//! prints the plan, then does the same in each off-site copy (`copies` in the plan).

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
    let mut plan = crate::retention::prune(&store, &policy, as_of, args.apply).await?;
    // Each copy after the primary; one that cannot be opened is answered, never fatal.
    let mut copies = Vec::new();
    for copy in &settings.copies {
        match crate::copy::open_copy_store(settings, &store, &copy.name).await {
            Ok(copy_store) => copies.push((copy.name.clone(), copy_store)),
            Err(e) => plan.copies.push(crate::retention::CopyPrune::failed(&copy.name, e.to_string())),
        }
    }
    plan.copies.extend(crate::retention::prune_copies(&store, &copies, &policy, as_of, args.apply, None).await);
    print_json(&plan)?;
    Ok(ExitCode::SUCCESS)
}
