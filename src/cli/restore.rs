//! `data-backup restore`: restores a backup into a database (found through the manifests, checked
//! while streamed); prints the report. `--from COPY` restores from an off-site copy.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::output::print_json;
use crate::model::{DatabasePath, RunDate};
use crate::settings::Settings;

/// `data-backup restore`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").args(["date", "at", "latest", "label"])))]
pub struct RestoreArgs {
    /// PROJECT/INSTANCE/DATABASE whose backup to restore.
    #[arg(long)]
    pub database: DatabasePath,
    /// The backup of this run date (YYYY-MM-DD).
    #[arg(long)]
    pub date: Option<String>,
    /// The newest backup taken at or before this time (RFC 3339, e.g. 2026-11-20T09:00:00Z).
    #[arg(long)]
    pub at: Option<String>,
    /// The newest backup (the default).
    #[arg(long)]
    pub latest: bool,
    /// The named backup LABEL (`export --label`, `POST /export` with `label`).
    #[arg(long)]
    pub label: Option<String>,
    /// Target: postgres://USER@HOST[:PORT]/DBNAME or mysql://USER@HOST[:PORT]/SCHEMA. Prefer
    /// PGPASSWORD / MYSQL_PWD to a password in the URL (arguments are visible to other users).
    #[arg(long)]
    pub target: String,
    /// SQL file run after the restore, in the same transaction (PostgreSQL); repeatable, in order.
    #[arg(long = "transform")]
    pub transforms: Vec<PathBuf>,
    /// age identity file (AGE-SECRET-KEY-…) for an encrypted backup.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// Create the target database when it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Restore beside a non-empty target and swap it in; the old one is kept under a dated name.
    #[arg(long)]
    pub replace: bool,
    /// With --replace (PostgreSQL): terminate the target's sessions for the swap.
    #[arg(long, requires = "replace")]
    pub terminate_connections: bool,
    /// PostgreSQL: keep the dump's owners and privileges (the roles must exist on the target).
    #[arg(long)]
    pub keep_owners: bool,
    /// Restore even though the target matches `restore.production_patterns`.
    #[arg(long = "i-know-this-is-production")]
    pub i_know_this_is_production: bool,
    /// PostgreSQL custom-format backups without transforms: `pg_restore -j` jobs (default
    /// `restore.jobs`, else the cores, at most 8); 1 streams the dump through one transaction.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Which store.
    #[command(flatten)]
    pub from: super::from::FromArgs,
}

/// Runs `restore`.
pub async fn run(settings: &Settings, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    use crate::restore::{RestoreOptions, RestoreRequest, Selector};
    let selector = match (&args.date, &args.at) {
        _ if args.label.is_some() => {
            Selector::Label(crate::model::Label::parse(args.label.clone().unwrap_or_default())?)
        }
        (Some(d), _) => Selector::Date(RunDate::parse(d)?),
        (_, Some(t)) => Selector::At(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--at {t:?} is not an RFC 3339 time (2026-11-20T09:00:00Z)"))?
                .with_timezone(&chrono::Utc),
        ),
        _ => Selector::Latest,
    };
    let target = crate::settings::ServerUrl::try_from(args.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let request = RestoreRequest {
        db: args.database,
        selector,
        target,
        transforms: args.transforms,
        identity: args.identity,
        production_ok: args.i_know_this_is_production,
        options: RestoreOptions {
            create: args.create,
            replace: args.replace,
            terminate_connections: args.terminate_connections,
            keep_owners: args.keep_owners,
            strip_definers: false,
            progress: true,
            jobs: args.jobs.map(usize::from),
            temp_dir: None,
            scratch: false,
        },
    };
    let store = super::from::open_store(settings, &args.from).await?;
    let report = crate::restore::restore(&store, settings, &request).await?;
    eprintln!(
        "restored {} ({}) into {} on {} in {:.1}s{}",
        report.key,
        crate::restore::human_bytes(report.bytes),
        report.database,
        report.server,
        report.seconds,
        report.previous.as_ref().map(|p| format!("; the previous contents are in `{p}`")).unwrap_or_default()
    );
    print_json(&report)?;
    Ok(ExitCode::SUCCESS)
}
