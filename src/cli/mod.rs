//! The command line: `serve` runs the HTTP service; the other commands reach the same functions
//! from the shell. Every command takes `--config FILE` (or `DATA_BACKUP_CONFIG`). This file holds
//! the parser ([`Cli`], [`Command`]) and the dispatch; each command (its arguments and what it
//! does) has a file of its own, `client.rs` is `call`.

pub mod client;
pub mod doctor;
pub mod export;
pub mod from;
pub mod hold;
pub mod lifecycle;
pub mod list;
pub mod openapi;
pub mod output;
pub mod prune;
pub mod restore;
pub mod schedule;
pub mod serve;
pub mod status;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Serve(serve::ServeArgs),
    /// Discover every database and export each one now, on the in-process queue; prints the summary.
    Schedule(schedule::ScheduleArgs),
    /// Export one database now, in this process; prints its manifest.
    Export(export::ExportArgs),
    /// Check what would make tonight's Cloud SQL exports fail (bucket access of every instance's
    /// service account, the queue's retries, lifecycle rules): one line per problem with its fix;
    /// exit status 2 when there is a problem.
    Doctor(doctor::DoctorArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Call a running service: `call schedule [--dry-run]` or `call export --database P/I/D`, with
    /// `--url URL` and a bearer token (`--token-file`, `DATA_BACKUP_AUTH__BEARER_TOKEN`) or a
    /// Google ID token minted from the local credentials; prints the answer.
    Call(client::CallArgs),
    /// Print the state of every database (ok, stale, failing, missing, suspect, gone, unverified,
    /// unverifiable, excluded), how many are backed up and how many proven, and the newest run's
    /// summary. Exit status (for cron and health checks): 2 when any database shown is stale,
    /// failing, missing or suspect; else 3 when any is unverified (backed up, not proven by a recent restore
    /// drill); 0 otherwise; 1 when the status could not be computed.
    Status(status::StatusArgs),
    /// Restore a backup into a database (found through the manifests, checked while streamed).
    Restore(restore::RestoreArgs),
    /// Restore drill: restore a backup into a scratch database, compare row counts, run the checks.
    Verify(verify::VerifyArgs),
    /// List the backups of a database, newest first.
    List(list::ListArgs),
    /// The backups held by the data-loss tripwire: `hold list [--json]`, `hold release --database
    /// P/I/D --date YYYY-MM-DD` (prune may then expire it, and status stops calling it suspect).
    #[command(subcommand)]
    Hold(hold::HoldCommand),
    /// Delete backups past their class's keep-for (dry run unless --apply); prints the plan.
    Prune(prune::PruneArgs),
    /// Print bucket lifecycle rules rendered from the [retention] settings and the store's prefix.
    Lifecycle(lifecycle::LifecycleArgs),
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
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    crate::telemetry::shutdown();
    code
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Openapi => return openapi::run(),
        // A client: the service's configuration is not needed (nor loaded).
        Command::Call(args) => return Ok(client::run(args).await?),
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Openapi | Command::Call(_) => unreachable!("handled above"),
        Command::Serve(args) => serve::run(&settings, args).await,
        Command::Schedule(args) => schedule::run(&settings, args).await,
        Command::Export(args) => export::run(&settings, args).await,
        Command::Doctor(args) => doctor::run(&settings, args).await,
        Command::Status(args) => status::run(&settings, args).await,
        Command::Restore(args) => restore::run(&settings, args).await,
        Command::Verify(args) => verify::run(&settings, args).await,
        Command::List(args) => list::run(&settings, args).await,
        Command::Hold(command) => hold::run(&settings, command).await,
        Command::Prune(args) => prune::run(&settings, args).await,
        Command::Lifecycle(args) => lifecycle::run(&settings, &args),
    }
}
