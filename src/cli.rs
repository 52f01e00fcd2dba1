//! The command line: `serve` runs the HTTP service; the other commands reach the same functions
//! from the shell. Every command takes `--config FILE` (or `DATA_BACKUP_CONFIG`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::{AppState, Application, shutdown_signal};
use crate::export::ExportOutcome;
use crate::model::{
    DatabaseName, DatabasePath, DatabaseRef, ExportTask, InstanceName, ProjectId, RunDate, RunId, SourceName,
};
use crate::schedule::RunLedger;
use crate::settings::Settings;
use crate::store::layout::Key;

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
        /// PROJECT/INSTANCE/DATABASE (self-hosted: SOURCE/INSTANCE/DATABASE, as `schedule --dry-run`
        /// lists); a Cloud SQL database's engine is its instance's.
        #[arg(long)]
        database: DatabasePath,
        /// Day the backup belongs to (default today, UTC).
        #[arg(long)]
        date: Option<String>,
        /// Source, when several are configured.
        #[arg(long)]
        source: Option<String>,
        /// Store it as the named backup LABEL (`labels/LABEL/…`), which retention never removes;
        /// exporting the same label again does nothing.
        #[arg(long)]
        label: Option<String>,
        /// Export even when the database lies outside what the service is configured to back up
        /// (an `[exclude]` pattern, the source's `databases` globs, a `gcp` source's folders and projects).
        #[arg(long)]
        ignore_scope: bool,
    },
    /// Check what would make tonight's Cloud SQL exports fail (bucket access of every instance's
    /// service account, the queue's retries, lifecycle rules): one line per problem with its fix;
    /// exit status 2 when there is a problem.
    Doctor {
        /// Print the JSON of `GET /doctor` instead of the lines.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Call a running service: `call schedule [--dry-run]` or `call export --database P/I/D`, with
    /// `--url URL` and a bearer token (`--token-file`, `DATA_BACKUP_AUTH__BEARER_TOKEN`) or a
    /// Google ID token minted from the local credentials; prints the answer.
    Call(crate::client::CallArgs),
    /// Print the state of every database (ok, stale, failing, missing, suspect, gone, unverified,
    /// unverifiable, excluded), how many are backed up and how many proven, and the newest run's
    /// summary. Exit status (for cron and health checks): 2 when any database shown is stale,
    /// failing, missing or suspect; else 3 when any is unverified (backed up, not proven by a recent restore
    /// drill); 0 otherwise; 1 when the status could not be computed.
    Status {
        /// Print the JSON of `GET /status` instead of the table.
        #[arg(long)]
        json: bool,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Restore a backup into a database (found through the manifests, checked while streamed).
    Restore(RestoreArgs),
    /// Restore drill: restore a backup into a scratch database, compare row counts, run the checks.
    Verify(VerifyArgs),
    /// List the backups of a database, newest first.
    List(ListArgs),
    /// The backups held by the data-loss tripwire: `hold list [--json]`, `hold release --database
    /// P/I/D --date YYYY-MM-DD` (prune may then expire it, and status stops calling it suspect).
    #[command(subcommand)]
    Hold(HoldCommand),
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
    if let Command::Call(args) = &cli.command {
        // A client: the service's configuration is not needed (nor loaded).
        return Ok(crate::client::run(args).await?);
    }
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Openapi => unreachable!("handled above"),
        Command::Call(_) => unreachable!("handled above"),
        Command::Doctor { json } => {
            let report = crate::doctor::run(&settings).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for f in &report.findings {
                    println!("{}", crate::doctor::line(f));
                }
                let problems = report.findings.iter().filter(|f| f.level == "problem").count();
                println!("{} instance(s) checked, {problems} problem(s)", report.instances_checked);
            }
            Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Status { json, project, instance, state } => {
            use std::io::IsTerminal as _;
            let state = state
                .map(|s| {
                    crate::status::DbState::parse(&s).with_context(|| {
                        format!(
                            "unknown state `{s}` (ok, stale, failing, missing, suspect, gone, unverified, unverifiable, excluded)"
                        )
                    })
                })
                .transpose()?;
            let store = crate::store::BackupStore::open(&settings).await?;
            let report = crate::status::compute(&store, &settings.status, chrono::Utc::now()).await?;
            let shown = report.filtered(&crate::status::StatusFilter { project, instance, state });
            if json {
                print_json(&shown)?;
            } else {
                let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                print!("{}", crate::status::render_table(&shown, color));
            }
            Ok(ExitCode::from(crate::status::exit_status(&shown)))
        }
        Command::Restore(args) => run_restore(&settings, args).await,
        Command::Verify(args) => run_verify(&settings, args).await,
        Command::List(args) => run_list(&settings, args).await,
        Command::Hold(command) => run_hold(&settings, command).await,
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
            // Installed first: a SIGTERM from here on shuts down gracefully.
            let shutdown = shutdown_signal();
            let app = Application::build(&settings).await?;
            if now {
                let state = app.state().clone();
                tokio::spawn(async move { state.schedule(RunDate::today(), false).await });
            }
            app.run_until(shutdown).await.context("serving")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { dry_run } => {
            let state = AppState::build(&settings).await?;
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
                for planned in ledger.databases.iter().filter(|d| d.action == "export") {
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
        Command::Export { database, date, source, label, ignore_scope } => {
            let label = label.map(crate::model::Label::parse).transpose()?;
            let state = AppState::build(&settings).await?;
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
    }
}

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
}

/// `data-backup verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// PROJECT/INSTANCE/DATABASE to verify.
    #[arg(long, conflicts_with = "pick", required_unless_present = "pick")]
    pub database: Option<DatabasePath>,
    /// The backup of this run date (default the newest).
    #[arg(long, requires = "database")]
    pub date: Option<String>,
    /// Nightly drill: verify the N least recently verified databases (default `verify.nightly_count`).
    #[arg(long, num_args = 0..=1, value_name = "N")]
    pub pick: Option<Option<usize>>,
}

/// `data-backup list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// PROJECT/INSTANCE/DATABASE.
    #[arg(long)]
    pub database: DatabasePath,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

async fn run_restore(settings: &Settings, args: RestoreArgs) -> anyhow::Result<ExitCode> {
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
    let store = crate::store::BackupStore::open(settings).await?;
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

async fn run_verify(settings: &Settings, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let state = AppState::build(settings).await?;
    let records = match (args.database, args.pick) {
        (_, Some(n)) => state.verifier.pick(n.unwrap_or(settings.verify.nightly_count)).await,
        (Some(db), None) => {
            let date = args.date.as_deref().map(RunDate::parse).transpose()?;
            state.verifier.verify(&db, date).await.map(|r| vec![r])
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

async fn run_list(settings: &Settings, args: ListArgs) -> anyhow::Result<ExitCode> {
    let store = crate::store::BackupStore::open(settings).await?;
    let mut backups = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page =
            crate::restore::list_backups(&store, &args.database, token.as_deref(), crate::restore::MAX_PAGE_SIZE)
                .await?;
        backups.extend(page.backups);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    if args.json {
        print_json(&backups)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = backups.iter().filter_map(|b| b.label.as_ref()).map(|l| l.chars().count()).max().unwrap_or(0).max(5);
    println!("{:<10}  {:<9}  {:>10}  {:<9}  {:<width$}  VERIFIED", "DATE", "CLASS", "SIZE", "ENCRYPTED", "LABEL");
    for b in &backups {
        let verified = match &b.verification {
            Some(v) => {
                let rto = crate::status::restore_time_words(v.restore_secs, v.bytes_per_sec)
                    .map(|w| format!(", {w}"))
                    .unwrap_or_default();
                format!("{} {}{rto}", format!("{:?}", v.result).to_lowercase(), v.verified_at.format("%Y-%m-%d %H:%M"))
            }
            None => "never".to_owned(),
        };
        println!(
            "{:<10}  {:<9}  {:>10}  {:<9}  {:<width$}  {verified}",
            b.run_date,
            b.class,
            crate::restore::human_bytes(b.bytes),
            if b.encrypted { "age" } else { "no" },
            b.label.as_deref().unwrap_or("-")
        );
    }
    if backups.is_empty() {
        eprintln!("no backups of {}", crate::restore::path_text(&args.database));
    }
    Ok(ExitCode::SUCCESS)
}

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

async fn run_hold(settings: &Settings, command: HoldCommand) -> anyhow::Result<ExitCode> {
    let store = crate::store::BackupStore::open(settings).await?;
    match command {
        HoldCommand::List { json } => {
            let holds = crate::tripwire::holds(&store).await?;
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
            match crate::tripwire::release(&store, &database, date).await? {
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
