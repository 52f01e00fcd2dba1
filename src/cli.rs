//! The command line: `serve` runs the HTTP service; the other commands reach the same functions
//! from the shell. Every command takes `--config FILE` (or `DATA_BACKUP_CONFIG`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::{AppState, Application, shutdown_signal};
use crate::export::ExportOutcome;
use crate::model::{DatabasePath, ExportTask, RunDate, RunId, SourceName};
use crate::settings::Settings;

/// Backs up every database, every night, and proves the backups are good.
#[derive(Debug, Parser)]
#[command(name = "data-backup", version, about)]
pub struct Cli {
    /// Configuration file (TOML); `DATA_BACKUP_<SECTION>__<KEY>` variables override it.
    #[arg(long, global = true, env = "DATA_BACKUP_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (POST /schedule, POST /export, GET /healthz, GET /openapi.json) and the
    /// nightly timer (`[schedule] daily_at`).
    Serve {
        /// Also run one schedule right away (back up every database now).
        #[arg(long)]
        now: bool,
    },
    /// Discover every database and export each one now, on the in-process queue; prints the summary.
    Schedule {
        /// Print the plan (each database, or why it is excluded); export nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export one database now, in this process; prints its manifest.
    Export {
        /// PROJECT/INSTANCE/DATABASE (self-hosted: SOURCE/INSTANCE/DATABASE, as `schedule --dry-run` lists).
        #[arg(long)]
        database: DatabasePath,
        /// Day the backup belongs to (default today, UTC).
        #[arg(long)]
        date: Option<String>,
        /// Source, when several are configured.
        #[arg(long)]
        source: Option<String>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Delete backups past their class's keep-for (dry run unless --apply); prints the plan.
    Prune {
        /// Delete what the plan says (default: only print it).
        #[arg(long)]
        apply: bool,
        /// Evaluate the policy as if today were this day (YYYY-MM-DD); only a dry run may look ahead.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Print bucket lifecycle rules rendered from the [retention] settings and the store's prefix.
    Lifecycle {
        /// `gcs` (bucket lifecycle JSON), `s3` (LifecycleConfiguration JSON) or `terraform`
        /// (google_storage_bucket lifecycle_rule blocks; for an s3:// store an
        /// aws_s3_bucket_lifecycle_configuration resource).
        #[arg(long, value_enum)]
        format: LifecycleFormatArg,
    },
}

/// `--format` of `lifecycle`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LifecycleFormatArg {
    /// GCS bucket lifecycle JSON.
    Gcs,
    /// S3 lifecycle configuration JSON.
    S3,
    /// Terraform.
    Terraform,
}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Openapi = cli.command {
        print_json(&crate::http::openapi())?;
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Openapi => unreachable!("handled above"),
        Command::Prune { apply, as_of } => {
            let policy = crate::retention::RetentionPolicy::from_settings(&settings)?;
            let store = crate::store::BackupStore::open(&settings).await?;
            let as_of = match as_of.as_deref() {
                Some(value) => crate::retention::parse_as_of(value)?,
                None => chrono::Utc::now().date_naive(),
            };
            print_json(&crate::retention::prune(&store, &policy, as_of, apply).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Lifecycle { format } => {
            use crate::retention::LifecycleFormat;
            let policy = crate::retention::RetentionPolicy::from_settings(&settings)?;
            let format = match format {
                LifecycleFormatArg::Gcs => LifecycleFormat::Gcs,
                LifecycleFormatArg::S3 => LifecycleFormat::S3,
                LifecycleFormatArg::Terraform => LifecycleFormat::Terraform,
            };
            print!("{}", crate::retention::lifecycle(&policy, &settings.store.url, format)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { now } => {
            let app = Application::build(&settings).await?;
            if now {
                let state = app.state().clone();
                tokio::spawn(async move { state.schedule(RunDate::today(), false).await });
            }
            app.run_until(shutdown_signal()).await.context("serving")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { dry_run } => {
            let state = AppState::build(&settings).await?;
            let summary = state.schedule(RunDate::today(), dry_run).await;
            state.queue.wait_idle().await;
            // Every planned database must now have its backup: count the ones that do not.
            let mut missing = 0;
            if !dry_run {
                for source in &state.service.sources {
                    for db in source.discovery.discover().await.unwrap_or_default() {
                        if state.exclusions.excluded_by(&db).is_none()
                            && state.service.store.manifest(&db, RunDate::parse(&summary.run_date)?).await?.is_none()
                        {
                            eprintln!("not backed up: {db}");
                            missing += 1;
                        }
                    }
                }
            }
            print_json(&summary)?;
            state.local_queue.shutdown(state.grace).await;
            Ok(if summary.errors.is_empty() && missing == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Export { database, date, source } => {
            let state = AppState::build(&settings).await?;
            let source = source.map(SourceName::parse).transpose()?;
            let src = state.service.source_for(source.as_ref(), &database.project, &database.instance)?;
            let run_date = date.as_deref().map(RunDate::parse).transpose()?.unwrap_or_else(RunDate::today);
            let task = ExportTask { db: src.database(database.database), run_date, run_id: RunId::manual() };
            let outcome = state.service.export(&task).await;
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
    }
}
