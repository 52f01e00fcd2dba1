//! `Settings`: typed configuration from a TOML file and `DATA_BACKUP_<SECTION>__<KEY>` variables.
//!
//! Loading validates everything once, at start: an unknown key, a bad URL or an impossible
//! combination is one [`SettingsError`] line naming the key and the reason. With no configuration
//! at all the embedded defaults apply (local directory store, in-process queue, one PostgreSQL
//! source from the libpq environment, bind 127.0.0.1:8080).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::Weekday;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::model::{InstanceName, SourceName};

/// A configuration problem: the dotted key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {reason}")]
pub struct SettingsError {
    /// Dotted key (`store.url`, `sources[1].url`).
    pub key: String,
    /// What is wrong, and how to fix it.
    pub reason: String,
}

impl SettingsError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP service listens on.
    pub bind: SocketAddr,
    /// Where backups are written.
    pub store: StoreSettings,
    /// How export tasks are delivered.
    pub queue: QueueSettings,
    /// Where databases are discovered; empty means one PostgreSQL source from the libpq environment.
    /// Holds the self-hosted `[[sources]]`; those with `kind = "gcp"` are in [`Settings::gcp_sources`].
    pub sources: Vec<SourceSettings>,
    /// The `[[sources]]` with `kind = "gcp"` (split from `sources` while loading, so self-hosted
    /// code keeps its own type).
    #[serde(skip)]
    pub gcp_sources: Vec<GcpSourceSettings>,
    /// Databases left out.
    pub exclude: ExcludeSettings,
    /// Where failures are reported.
    pub notify: NotifySettings,
    /// How dumps are made.
    pub export: ExportSettings,
    /// Retention calendar.
    pub retention: RetentionSettings,
    /// Google Cloud clients (the `gs://` store).
    pub gcp: GcpSettings,
    /// Who may call the service.
    pub auth: AuthSettings,
    /// Limits of the HTTP service (timeouts, concurrency).
    pub http: HttpSettings,
    /// The embedded nightly timer (self-hosted mode).
    pub schedule: ScheduleSettings,
    /// Guards of `data-backup restore`.
    pub restore: RestoreSettings,
    /// Restore drills: the scratch servers and the checks.
    pub verify: VerifySettings,
    /// Freshness and coverage (`GET /status`, `GET /`, `data-backup status`).
    pub status: StatusSettings,
    /// The data-loss tripwire: when a new backup looks like data was lost.
    pub tripwire: TripwireSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: StoreSettings::default(),
            queue: QueueSettings::default(),
            sources: Vec::new(),
            gcp_sources: Vec::new(),
            exclude: ExcludeSettings::default(),
            notify: NotifySettings::default(),
            export: ExportSettings::default(),
            retention: RetentionSettings::default(),
            gcp: GcpSettings::default(),
            auth: AuthSettings::default(),
            http: HttpSettings::default(),
            schedule: ScheduleSettings::default(),
            restore: RestoreSettings::default(),
            verify: VerifySettings::default(),
            status: StatusSettings::default(),
            tripwire: TripwireSettings::default(),
        }
    }
}

/// `[tripwire]`: when a new backup is `suspect` against the previous backup of its database.
///
/// ```toml
/// [tripwire]
/// enabled = true
/// table_loss_share = 0.5   # a table that lost more than this share of its rows trips
/// shrink_share = 0.5       # a dump that shrank by more than this share trips
/// min_rows = 1000          # tables with fewer rows before are never compared (nor missed)
/// min_bytes = 1048576      # dumps smaller than this before are never compared by size
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripwireSettings {
    /// Whether new backups are compared with the previous ones at all.
    pub enabled: bool,
    /// Share of a table's rows (0 < x < 1) whose loss makes the backup suspect.
    pub table_loss_share: f64,
    /// Share of the stored size (0 < x < 1) whose loss makes the backup suspect.
    pub shrink_share: f64,
    /// Tables with fewer rows than this in the previous backup are left out.
    pub min_rows: u64,
    /// Dumps smaller than this (bytes) in the previous backup are not compared by size.
    pub min_bytes: u64,
}

impl Default for TripwireSettings {
    fn default() -> Self {
        Self { enabled: true, table_loss_share: 0.5, shrink_share: 0.5, min_rows: 1000, min_bytes: 1 << 20 }
    }
}

/// `[status]`: what counts as fresh, and how long a computed status is reused.
///
/// ```toml
/// [status]
/// slo_hours = 26            # a backup older than this is `stale`
/// verify_within_days = 8    # no successful restore drill within this many days: `unverified` (0: off)
/// cache_secs = 30           # a computed status is served this long before the store is read again
/// runs_days = 7             # days of runs `GET /runs` lists by default
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// Hours after which the newest backup of a database is `stale`.
    pub slo_hours: u32,
    /// Days within which a database needs a successful restore drill; 0 turns `unverified` off.
    pub verify_within_days: u32,
    /// Seconds a computed status is reused.
    pub cache_secs: u64,
    /// Days of runs listed by `GET /runs` when the request does not say.
    pub runs_days: u32,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self { slo_hours: 26, verify_within_days: 8, cache_secs: 30, runs_days: 7 }
    }
}

/// `[store]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `file://DIR`, `gs://BUCKET[/PREFIX]`, `s3://BUCKET[/PREFIX]` or `az://CONTAINER[/PREFIX]`.
    pub url: String,
    /// Extra `object_store` options for `s3://` and `az://` (e.g. `aws_endpoint`, `aws_allow_http`);
    /// credentials belong in the environment (`AWS_ACCESS_KEY_ID`, `AZURE_STORAGE_ACCOUNT_KEY`, …).
    pub options: BTreeMap<String, String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { url: "file://./backups".to_owned(), options: BTreeMap::new() }
    }
}

/// `[queue]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// `local`: the embedded in-process queue.
    pub kind: QueueKind,
    /// Exports run at once by the local queue.
    pub workers: usize,
    /// First retry delay of a transient failure, in seconds (doubled each attempt, with jitter).
    pub retry_initial_secs: f64,
    /// Longest single retry delay, in seconds.
    pub retry_max_delay_secs: f64,
    /// A task whose transient failures last longer than this is given up and reported.
    pub retry_max_duration_secs: u64,
    /// On SIGTERM/SIGINT, running exports get this long to finish before they are abandoned.
    pub shutdown_grace_secs: u64,
    /// `cloud_tasks`: the queue, `projects/P/locations/L/queues/Q`.
    pub queue: Option<String>,
    /// `cloud_tasks`: the URL tasks are POSTed to (the service's `/export`).
    pub target_url: Option<Url>,
    /// `cloud_tasks`: service account whose OIDC token each task carries.
    pub service_account: Option<String>,
    /// `cloud_tasks`: audience of that token (default: the origin of `target_url`).
    pub audience: Option<String>,
    /// `cloud_tasks`: tasks of the same Cloud SQL instance are scheduled this many seconds apart
    /// (Cloud SQL runs one operation per instance at a time).
    pub stagger_secs: u64,
    /// `cloud_tasks`: createTask calls in flight at once.
    pub create_concurrency: usize,
    /// `cloud_tasks`: attempts per createTask (429/5xx retried with backoff) before the task is left.
    pub create_attempts: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            kind: QueueKind::Local,
            workers: 2,
            retry_initial_secs: 5.0,
            retry_max_delay_secs: 300.0,
            retry_max_duration_secs: 3600,
            shutdown_grace_secs: 8,
            queue: None,
            target_url: None,
            service_account: None,
            audience: None,
            stagger_secs: 120,
            create_concurrency: 16,
            create_attempts: 5,
        }
    }
}

/// Which `TaskQueue` delivers tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// The embedded in-process queue.
    Local,
    /// Google Cloud Tasks: one HTTP task per database to `target_url`.
    CloudTasks,
}

/// `[[sources]]`: one self-hosted database server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Unique name; the `project` segment of its backups.
    pub name: SourceName,
    /// `postgres` or `mysql` (MariaDB too).
    pub kind: SourceKind,
    /// `postgres://user[:password]@host[:port]/[db]` or `mysql://user[:password]@host[:port]/`.
    pub url: ServerUrl,
    /// File holding the password (its first line); overrides a password in the URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The `instance` segment of its backups; defaults to the URL's host.
    #[serde(default)]
    pub instance: Option<InstanceName>,
    /// Only the databases whose names match one of these globs (default: every database).
    #[serde(default)]
    pub databases: Option<Vec<String>>,
    /// age recipients for this source's dumps (overrides `export.age_recipients`; `[]` turns encryption off).
    #[serde(default)]
    pub age_recipients: Option<Vec<String>>,
    /// Count rows per table in the dump's snapshot (overrides `export.row_counts`; turn off for huge databases).
    #[serde(default)]
    pub row_counts: Option<bool>,
}

impl SourceSettings {
    /// The instance name of this server's backups.
    #[must_use]
    pub fn instance_name(&self) -> InstanceName {
        self.instance.clone().unwrap_or_else(|| {
            InstanceName::parse(self.url.host.replace('/', "_"))
                .unwrap_or_else(|_| InstanceName::parse("server").expect("valid"))
        })
    }
}

/// Kind of a self-hosted source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A PostgreSQL server.
    Postgres,
    /// A MySQL or MariaDB server.
    Mysql,
}

/// A server's connection URL, split up; the password is a secret and never printed.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerUrl {
    /// `postgres` or `mysql`.
    pub scheme: String,
    /// Host name, address, or (PostgreSQL) socket directory.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, if any.
    pub password: Option<SecretString>,
    /// Database to connect to for discovery (PostgreSQL; default `postgres`).
    pub dbname: Option<String>,
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pw = if self.password.is_some() { ":***" } else { "" };
        write!(f, "{}://{}{pw}@{}:{}/", self.scheme, self.user, self.host, self.port)
    }
}

impl TryFrom<String> for ServerUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let url = Url::parse(&value).map_err(|e| format!("not a URL ({e})"))?;
        let (scheme, default_port, default_user) = match url.scheme() {
            "postgres" | "postgresql" => ("postgres", 5432, "postgres"),
            "mysql" | "mariadb" => ("mysql", 3306, "root"),
            other => return Err(format!("unsupported scheme `{other}` (expected postgres:// or mysql://)")),
        };
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let dbname = url.path().trim_start_matches('/');
        Ok(Self {
            scheme: scheme.to_owned(),
            host: decode(host.trim_start_matches('[').trim_end_matches(']')),
            port: url.port().unwrap_or(default_port),
            user: if url.username().is_empty() { default_user.to_owned() } else { decode(url.username()) },
            password: url.password().map(|p| SecretString::from(decode(p))),
            dbname: (!dbname.is_empty()).then(|| decode(dbname)),
        })
    }
}

/// `[exclude]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExcludeSettings {
    /// Globs over `project/instance/database` (`*` does not cross `/`).
    pub patterns: Vec<String>,
}

/// `[notify]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Incoming-webhook URL (Slack, Teams, or anything taking JSON) for failure reports.
    pub webhook_url: Option<SecretUrl>,
    /// Attempts per report before giving up (the log event stays).
    pub webhook_attempts: u32,
    /// Pub/Sub topic (`projects/P/topics/T`) that receives failure reports and run summaries.
    pub pubsub_topic: Option<String>,
    /// Also publish one `export_succeeded` event per backup made (bytes, duration).
    pub pubsub_success: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self { webhook_url: None, webhook_attempts: 3, pubsub_topic: None, pubsub_success: false }
    }
}

/// A URL that may carry a secret (webhook URLs do): printed without its path and query.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SecretUrl(Url);

impl SecretUrl {
    /// The full URL, for the HTTP client only.
    #[must_use]
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl TryFrom<String> for SecretUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let url = Url::parse(&value).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("unsupported scheme `{}` (expected http or https)", url.scheme()));
        }
        Ok(Self(url))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}/***", self.0.scheme(), self.0.host_str().unwrap_or(""))
    }
}

/// `[export]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// zstd level (1–19). Default 2: in bench/dump it ran at pg_dump's own speed (the floor) and
    /// stayed smaller than `pg_dump -Fc`; 3 saves 5% more space for about 40% more CPU.
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the export's own task.
    pub zstd_threads: u32,
    /// How long a lease protects a running export without being renewed, in seconds.
    pub lease_ttl_secs: u64,
    /// Directory holding `pg_dump` (default: the newest under /usr/lib/postgresql, then `PATH`).
    pub pg_bin_dir: Option<PathBuf>,
    /// Directory holding `mariadb-dump`/`mysqldump` (default: `PATH`).
    pub mysql_bin_dir: Option<PathBuf>,
    /// Encrypt every dump to these age X25519 recipients (`age1…`); empty: no encryption.
    pub age_recipients: Vec<String>,
    /// Count rows per table in the dump's snapshot and keep them in the manifest.
    pub row_counts: bool,
    /// Cloud SQL: how long one `/export` attempt waits for its operation before answering 503 with
    /// `Retry-After` (the retry attaches to the same operation), in seconds. Must stay below the
    /// Cloud Tasks dispatch deadline (default 10 minutes, at most 30).
    pub wait_secs: u64,
    /// Cloud SQL: first delay between two polls of the operation, in milliseconds (doubled up to 30 s).
    pub poll_initial_ms: u64,
    /// Cloud SQL: use serverless export (`offload`: a temporary instance does the work).
    pub offload: bool,
    /// Cloud SQL: an instance label that overrides `offload` per instance (`"true"` or `"false"`).
    pub offload_label: String,
    /// A transient failure is reported once its task has been retried this many times.
    pub report_after_retries: u32,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            zstd_level: 2,
            zstd_threads: 0,
            lease_ttl_secs: 600,
            pg_bin_dir: None,
            mysql_bin_dir: None,
            age_recipients: Vec::new(),
            row_counts: true,
            wait_secs: 300,
            poll_initial_ms: 1000,
            offload: false,
            offload_label: "data-backup-offload".to_owned(),
            report_after_retries: 3,
        }
    }
}

/// `[retention]`: the retention calendar and how long each class is kept.
///
/// ```toml
/// [retention]
/// weekly_on = "monday"            # the weekly class's weekday
/// prune_after_schedule = false    # prune (as of the run date) after each non-dry-run /schedule
/// [retention.daily]               # also weekly, monthly, quarterly, yearly
/// keep_days = 9                   # defaults: daily 9, weekly 40, monthly 365, quarterly 2190, yearly 43800
/// colder_after_days = 30          # optional: move to colder storage after this many days (0: never)
/// colder_storage = "nearline"     # nearline (default) | coldline | archive
/// [retention.sources.legacy.daily]  # per-source override of any of the three keys above
/// keep_days = 3
/// ```
/// A per-source override names a configured source and applies to the backups whose key's project
/// segment is that name, which is every backup of a self-hosted source (`<class>/<source>/…`), so
/// bucket lifecycle rules can match it by prefix. Keys it leaves out are inherited from the class.
/// Every value is resolved and checked by [`crate::retention::RetentionPolicy::from_settings`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Weekday of the weekly class (`monday` … `sunday`).
    pub weekly_on: WeekdayName,
    /// Run a prune (evaluated as of the run date) after each `/schedule` has enqueued its tasks.
    pub prune_after_schedule: bool,
    /// Object retention (`gs://` stores): `off`, `unlocked` (the retain-until date can be shortened
    /// by an administrator) or `locked` (nobody can delete the backup before it, ever). Every new
    /// backup's dump and manifest are retained until the end of their class's `keep_days`.
    pub lock: RetentionLock,
    /// `[retention.daily]`.
    pub daily: ClassRetentionSettings,
    /// `[retention.weekly]`.
    pub weekly: ClassRetentionSettings,
    /// `[retention.monthly]`.
    pub monthly: ClassRetentionSettings,
    /// `[retention.quarterly]`.
    pub quarterly: ClassRetentionSettings,
    /// `[retention.yearly]`.
    pub yearly: ClassRetentionSettings,
    /// `[retention.sources.<source name>.<class>]`: per-source overrides.
    pub sources: BTreeMap<String, SourceRetentionSettings>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            weekly_on: WeekdayName(Weekday::Mon),
            prune_after_schedule: false,
            lock: RetentionLock::Off,
            daily: ClassRetentionSettings::default(),
            weekly: ClassRetentionSettings::default(),
            monthly: ClassRetentionSettings::default(),
            quarterly: ClassRetentionSettings::default(),
            yearly: ClassRetentionSettings::default(),
            sources: BTreeMap::new(),
        }
    }
}

/// `[retention.<class>]`: how long one class is kept; a key left out takes its default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassRetentionSettings {
    /// Days a backup of this class is kept after its run date (at least 1).
    pub keep_days: Option<u32>,
    /// Days after which it moves to colder storage (lifecycle rules only; 0 or absent: never).
    pub colder_after_days: Option<u32>,
    /// The colder storage: `nearline` (default), `coldline` or `archive`.
    pub colder_storage: Option<crate::retention::ColderStorage>,
}

/// `[retention.sources.<name>]`: one source's overrides, class by class.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceRetentionSettings {
    /// `[retention.sources.<name>.daily]`.
    pub daily: ClassRetentionSettings,
    /// `[retention.sources.<name>.weekly]`.
    pub weekly: ClassRetentionSettings,
    /// `[retention.sources.<name>.monthly]`.
    pub monthly: ClassRetentionSettings,
    /// `[retention.sources.<name>.quarterly]`.
    pub quarterly: ClassRetentionSettings,
    /// `[retention.sources.<name>.yearly]`.
    pub yearly: ClassRetentionSettings,
}

/// A weekday written in English (`monday`, `Mon`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct WeekdayName(pub Weekday);

impl TryFrom<String> for WeekdayName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse::<Weekday>().map(Self).map_err(|_| format!("`{value}` is not a weekday"))
    }
}

/// Object retention of new backups (`retention.lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionLock {
    /// No retention is set.
    #[default]
    Off,
    /// Retained; an administrator may still shorten the date.
    Unlocked,
    /// Retained; nobody can delete or shorten it before the date.
    Locked,
}

/// `[gcp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcpSettings {
    /// `default` (Application Default Credentials) or `anonymous` (emulators).
    pub credentials: GcpCredentials,
    /// Cloud Storage endpoint (default Google's); tests use fake-gcs-server.
    pub storage_endpoint: Option<Url>,
    /// Resource Manager v3 endpoint (default Google's); tests use a fake.
    pub resource_manager_endpoint: Option<Url>,
    /// Cloud SQL Admin v1 endpoint (default Google's); tests use a fake.
    pub sql_admin_endpoint: Option<Url>,
    /// Cloud Tasks v2 endpoint (default Google's); tests use a fake.
    pub cloud_tasks_endpoint: Option<Url>,
    /// Cloud Asset v1 endpoint (default Google's); tests use a fake.
    pub asset_endpoint: Option<Url>,
    /// Pub/Sub v1 endpoint (default Google's); tests use a fake.
    pub pubsub_endpoint: Option<Url>,
    /// Endpoint of the bucket IAM policy call of `doctor` (default: `storage_endpoint`);
    /// fake-gcs-server has no IAM, so tests point it at a fake.
    pub storage_iam_endpoint: Option<Url>,
    /// Client-side limit of Resource Manager calls per minute (quota: 600 list calls a minute).
    pub resource_manager_per_minute: u32,
    /// Client-side limit of Cloud SQL Admin calls per minute (quota: about 180 a minute per user).
    pub sql_admin_per_minute: u32,
    /// Client-side limit of Cloud Asset search calls per minute (quota: 400 a minute per project).
    pub asset_per_minute: u32,
    /// Client-side limit of Cloud Tasks createTask calls per minute.
    pub cloud_tasks_per_minute: u32,
    /// Discovery calls in flight at once (per API, on top of the rate limits).
    pub discovery_concurrency: usize,
    /// Attempts per discovery call; 429 and 5xx are retried with backoff honouring `Retry-After`.
    pub max_attempts: u32,
    /// First retry delay of a discovery or createTask call, in milliseconds (doubled each attempt).
    pub retry_initial_ms: u64,
}

impl Default for GcpSettings {
    fn default() -> Self {
        Self {
            credentials: GcpCredentials::Default,
            storage_endpoint: None,
            resource_manager_endpoint: None,
            sql_admin_endpoint: None,
            cloud_tasks_endpoint: None,
            asset_endpoint: None,
            pubsub_endpoint: None,
            storage_iam_endpoint: None,
            resource_manager_per_minute: 500,
            sql_admin_per_minute: 150,
            asset_per_minute: 300,
            cloud_tasks_per_minute: 6000,
            discovery_concurrency: 8,
            max_attempts: 5,
            retry_initial_ms: 1000,
        }
    }
}

/// `[[sources]]` with `kind = "gcp"`: every Cloud SQL database under some folders and projects.
///
/// ```toml
/// [[sources]]
/// name = "gcp"
/// kind = "gcp"
/// folders = ["folders/123456789"]     # walked recursively (or bare numbers)
/// projects = ["billing-prod"]         # and these projects
/// strategy = "walk"                   # walk (default) | asset_inventory
/// include_replicas = false            # back up read replicas too
/// include_stopped = false             # and instances whose activation policy is NEVER
/// keep_postgres_database = false      # keep the `postgres` database of PostgreSQL instances
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSourceSettings {
    /// Unique name.
    pub name: SourceName,
    /// Always `gcp`.
    pub kind: String,
    /// Folders walked recursively (`folders/N` or `N`).
    #[serde(default)]
    pub folders: Vec<String>,
    /// Projects listed explicitly (project ids).
    #[serde(default)]
    pub projects: Vec<crate::model::ProjectId>,
    /// How instances are found.
    #[serde(default)]
    pub strategy: GcpStrategy,
    /// Back up read replicas too (default: skipped, their primary is backed up).
    #[serde(default)]
    pub include_replicas: bool,
    /// Back up stopped instances (activation policy `NEVER`) too (default: skipped).
    #[serde(default)]
    pub include_stopped: bool,
    /// Keep the `postgres` database of PostgreSQL instances (default: dropped like the system ones).
    #[serde(default)]
    pub keep_postgres_database: bool,
}

impl GcpSourceSettings {
    /// The configured folders as `folders/N`.
    #[must_use]
    pub fn folder_names(&self) -> Vec<String> {
        self.folders
            .iter()
            .map(|f| if f.starts_with("folders/") { f.clone() } else { format!("folders/{f}") })
            .collect()
    }
}

/// How a `gcp` source finds its Cloud SQL instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GcpStrategy {
    /// Resource Manager folders.list + projects.list recursively, then instances.list per project.
    #[default]
    Walk,
    /// One Cloud Asset searchAllResources query per folder for every instance of the tree.
    AssetInventory,
}

impl Settings {
    /// Checks the `gcp` sources, the `cloud_tasks` queue and `[gcp]`.
    fn validate_gcp(&self) -> Result<(), SettingsError> {
        let mut names: HashSet<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        for (i, source) in self.gcp_sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{}].{k}", self.sources.len() + i);
            if !names.insert(source.name.as_str()) {
                return Err(SettingsError::new(key("name"), format!("`{}` is used twice", source.name)));
            }
            if source.folders.is_empty() && source.projects.is_empty() {
                return Err(SettingsError::new(key("folders"), "a `gcp` source needs `folders` or `projects`"));
            }
            for (j, folder) in source.folder_names().iter().enumerate() {
                let id = folder.trim_start_matches("folders/");
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SettingsError::new(
                        key(&format!("folders[{j}]")),
                        format!("`{}` is not a folder (expected `folders/NUMBER`)", source.folders[j]),
                    ));
                }
            }
        }
        let gcp = &self.gcp;
        for (k, v) in [
            ("gcp.resource_manager_per_minute", gcp.resource_manager_per_minute),
            ("gcp.sql_admin_per_minute", gcp.sql_admin_per_minute),
            ("gcp.asset_per_minute", gcp.asset_per_minute),
            ("gcp.cloud_tasks_per_minute", gcp.cloud_tasks_per_minute),
            ("gcp.max_attempts", gcp.max_attempts),
        ] {
            if v == 0 {
                return Err(SettingsError::new(k, "must be at least 1"));
            }
        }
        if !(1..=64).contains(&gcp.discovery_concurrency) {
            return Err(SettingsError::new("gcp.discovery_concurrency", "must be between 1 and 64"));
        }
        if self.queue.kind == QueueKind::CloudTasks {
            let q = &self.queue;
            let queue = q.queue.as_deref().unwrap_or("");
            let parts: Vec<&str> = queue.split('/').collect();
            let well_formed = parts.len() == 6
                && parts[0] == "projects"
                && parts[2] == "locations"
                && parts[4] == "queues"
                && parts.iter().all(|p| !p.is_empty());
            if !well_formed {
                return Err(SettingsError::new(
                    "queue.queue",
                    format!("`{queue}` is not a queue (expected projects/P/locations/L/queues/Q)"),
                ));
            }
            match &q.target_url {
                Some(url) if matches!(url.scheme(), "http" | "https") => {}
                Some(url) => {
                    return Err(SettingsError::new(
                        "queue.target_url",
                        format!("unsupported scheme `{}` (expected https)", url.scheme()),
                    ));
                }
                None => {
                    return Err(SettingsError::new("queue.target_url", "a `cloud_tasks` queue needs the /export URL"));
                }
            }
            if q.service_account.as_deref().is_none_or(|s| !s.contains('@')) {
                return Err(SettingsError::new(
                    "queue.service_account",
                    "a `cloud_tasks` queue needs the service account email its tasks' OIDC tokens are minted for",
                ));
            }
            if !(1..=256).contains(&q.create_concurrency) {
                return Err(SettingsError::new("queue.create_concurrency", "must be between 1 and 256"));
            }
            if q.create_attempts == 0 {
                return Err(SettingsError::new("queue.create_attempts", "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Moves the `[[sources]]` entries with `kind = "gcp"` out of `sources`: returns the figment with
/// only the self-hosted ones, the gcp ones parsed, and the original index of each self-hosted one.
fn split_gcp_sources(figment: &Figment) -> Result<(Figment, Vec<GcpSourceSettings>, Vec<usize>), SettingsError> {
    let Ok(figment::value::Value::Array(tag, entries)) = figment.find_value("sources") else {
        return Ok((figment.clone(), Vec::new(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut index = Vec::new();
    let mut gcp = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        if entry.find_ref("kind").and_then(figment::value::Value::as_str) == Some("gcp") {
            let parsed: GcpSourceSettings = Figment::from(figment::providers::Serialized::defaults(entry))
                .extract()
                .map_err(|e| SettingsError::new(format!("sources[{i}].{}", e.path.join(".")), e.kind.to_string()))?;
            gcp.push(parsed);
        } else {
            kept.push(entry);
            index.push(i);
        }
    }
    let figment = figment
        .clone()
        .merge(figment::providers::Serialized::default("sources", figment::value::Value::Array(tag, kept)));
    Ok((figment, gcp, index))
}

/// How Google clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcpCredentials {
    /// Application Default Credentials.
    Default,
    /// No credentials (emulators and fakes).
    Anonymous,
}

/// `[schedule]`: the embedded timer that runs `/schedule` every day while `serve` runs, so a
/// self-hosted deployment needs no cron. Turn it off (`daily_at = ""`) when an external scheduler
/// (Cloud Scheduler, cron) calls `POST /schedule`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// UTC time of day `HH:MM` of the nightly run; empty: no embedded timer.
    pub daily_at: String,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self { daily_at: "03:00".to_owned() }
    }
}

impl ScheduleSettings {
    /// The time of day of the nightly run, if the timer is on.
    pub fn daily_at(&self) -> Result<Option<chrono::NaiveTime>, SettingsError> {
        if self.daily_at.trim().is_empty() {
            return Ok(None);
        }
        chrono::NaiveTime::parse_from_str(self.daily_at.trim(), "%H:%M").map(Some).map_err(|_| {
            SettingsError::new("schedule.daily_at", format!("`{}` is not a time of day HH:MM (UTC)", self.daily_at))
        })
    }
}

/// `[restore]`: guards of `data-backup restore`, and its parallel path (restores and drills).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestoreSettings {
    /// Globs (case-insensitive) over a restore target's database name and host; a match is refused
    /// without `--i-know-this-is-production` (e.g. `["*prod*", "db-main.*"]`).
    pub production_patterns: Vec<String>,
    /// `pg_restore -j` jobs of a parallel PostgreSQL restore (restores and drills of custom-format
    /// backups without transforms); absent: the cores, at most 8; `1`: always stream (ADR 0016).
    pub jobs: Option<usize>,
    /// Where a parallel restore spools the decoded dump (needs free space equal to it); absent:
    /// `$TMPDIR`. The file is unnamed: it is freed when the restore ends, however it ends.
    pub temp_dir: Option<PathBuf>,
}

/// `[verify]`: where restore drills restore, and what they check.
///
/// ```toml
/// [verify]
/// url = "postgres://postgres@127.0.0.1:5432/"   # scratch server for PostgreSQL backups
/// mysql_url = "mysql://root@127.0.0.1:3306/"    # scratch server for MySQL/MariaDB backups
/// identity_file = "/run/secrets/age-identity"   # to verify encrypted backups
/// nightly_count = 3        # drills after each run (and `verify --pick` without a number)
/// nightly_secs = 1800      # no drill of a run's budget starts later than this after the first
/// after_run = true         # `serve`: drill after each run's exports (the nightly timer, --now)
/// scratch = true           # no url for an engine: drill on a throwaway server of its own
/// scratch_dir = "/var/tmp" # where scratch servers live (default the temporary directory)
/// [[verify.checks]]
/// name = "has an admin"
/// sql = "SELECT count(*) > 0 FROM users WHERE role = 'admin'"   # passes when true / non-zero
/// databases = ["*/*/app"]                       # globs over project/instance/database (default all)
/// engine = "postgres"                           # optional
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifySettings {
    /// PostgreSQL server scratch databases are created on (default: a throwaway server of the
    /// drill's own, see `scratch`). Its account creates, for each drill, a
    /// throwaway role owning the scratch database, which restores (ADR 0012): it needs
    /// `CREATEROLE` and `CREATEDB` (or is a superuser).
    pub url: Option<ServerUrl>,
    /// MySQL/MariaDB server scratch schemas are created on. Its account creates, for each drill, a
    /// throwaway user granted only the scratch schema, which restores: it needs `CREATE USER` and
    /// `GRANT OPTION`.
    pub mysql_url: Option<ServerUrl>,
    /// age identity file for verifying encrypted backups (without it they fail verification).
    pub identity_file: Option<PathBuf>,
    /// Databases drilled after each run of `serve` and by `POST /verify/due`, and by `verify --pick`
    /// when no number is given. Default 3: 20 databases are all proven within a week.
    pub nightly_count: usize,
    /// Time budget of those drills in seconds: no drill starts later than this after the first
    /// (a drill running then finishes).
    pub nightly_secs: u64,
    /// Whether `serve` drills after each run's exports (the embedded timer and `--now`).
    pub after_run: bool,
    /// Whether an engine without a configured server (`url`, `mysql_url`) is drilled on a
    /// throwaway server started from the installed server binaries (ADR 0014).
    pub scratch: bool,
    /// Directory the throwaway servers' directories are created in (default the temporary
    /// directory; on Cloud Run that is memory).
    pub scratch_dir: Option<PathBuf>,
    /// Check queries run in every matching restored backup.
    pub checks: Vec<VerifyCheck>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            url: None,
            mysql_url: None,
            identity_file: None,
            nightly_count: 3,
            nightly_secs: 1800,
            after_run: true,
            scratch: true,
            scratch_dir: None,
            checks: Vec::new(),
        }
    }
}

/// `[[verify.checks]]`: a query whose first value must be true (or a non-zero number).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCheck {
    /// Name shown in records and reports.
    pub name: String,
    /// The query, run in the restored database.
    pub sql: String,
    /// Globs over `project/instance/database`; empty: every database.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Only backups of this engine (`postgres` or `mysql`).
    #[serde(default)]
    pub engine: Option<SourceKind>,
}

/// `[auth]`: who may call the service. Every route but `/healthz` needs a verified caller once
/// either method is configured; both may be on together (see `src/auth.rs`).
///
/// ```toml
/// [auth]
/// bearer_token_file = "/run/secrets/data-backup-token"   # or DATA_BACKUP_AUTH__BEARER_TOKEN
/// oidc_audience = "https://data-backup-xyz.a.run.app"    # turns Google ID-token verification on
/// oidc_allowed_emails = ["ops@example.com"]              # allowed on every protected route
/// [auth.route_emails]                                    # allowed on one route only, besides those
/// schedule = ["scheduler@ops.iam.gserviceaccount.com"]
/// export = ["tasks@ops.iam.gserviceaccount.com"]
/// ```
/// `route_emails` is keyed by the route's first path segment (`schedule`, `export`, `prune`,
/// `verify`, `backups`, …), so it can be set from the environment too:
/// `DATA_BACKUP_AUTH__ROUTE_EMAILS__EXPORT='["tasks@ops.iam.gserviceaccount.com"]'`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer token callers must present (prefer `bearer_token_file` or the environment); empty: none.
    pub bearer_token: Option<SecretString>,
    /// File holding the bearer token (its first line).
    pub bearer_token_file: Option<PathBuf>,
    /// The exact `aud` Google ID tokens must carry (Cloud Run: the service URL, as the Scheduler job
    /// and the Tasks queue set it). Setting it turns ID-token verification on.
    pub oidc_audience: Option<String>,
    /// Identities (the token's `email`) allowed on every protected route: operators, and service
    /// accounts that need every route.
    pub oidc_allowed_emails: Vec<String>,
    /// Identities allowed on one route only, keyed by its first path segment (`schedule`, `export`).
    pub route_emails: BTreeMap<String, Vec<String>>,
    /// Where Google's signing keys are published (tests point it at a fake).
    pub jwks_url: Url,
    /// A token signed by a key the cache does not know refetches the keys at most this often, in seconds.
    pub jwks_min_refresh_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            bearer_token: None,
            bearer_token_file: None,
            oidc_audience: None,
            oidc_allowed_emails: Vec::new(),
            route_emails: BTreeMap::new(),
            jwks_url: Url::parse("https://www.googleapis.com/oauth2/v3/certs").expect("valid URL"),
            jwks_min_refresh_secs: 60,
        }
    }
}

impl AuthSettings {
    /// The configured bearer token, read from its file if needed; an empty token counts as none.
    pub fn token(&self) -> Result<Option<SecretString>, SettingsError> {
        if let Some(path) = &self.bearer_token_file {
            return read_secret_file(path).map(Some).map_err(|r| SettingsError::new("auth.bearer_token_file", r));
        }
        Ok(self.bearer_token.clone().filter(|t| !t.expose_secret().trim().is_empty()))
    }

    /// Whether any authentication method is configured.
    pub fn is_enabled(&self) -> Result<bool, SettingsError> {
        Ok(self.token()?.is_some() || self.oidc_audience.is_some())
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.token()?;
        let emails = || self.oidc_allowed_emails.iter().chain(self.route_emails.values().flatten());
        match &self.oidc_audience {
            Some(aud) if aud.trim().is_empty() || aud.trim() != aud => {
                return Err(SettingsError::new("auth.oidc_audience", "must be the exact audience, without spaces"));
            }
            Some(_) if emails().next().is_none() => {
                return Err(SettingsError::new(
                    "auth.oidc_allowed_emails",
                    "ID-token verification needs an allowlist (any Google account can mint a token for any \
                     audience): list the callers' emails here or in auth.route_emails",
                ));
            }
            None if emails().next().is_some() => {
                return Err(SettingsError::new(
                    "auth.oidc_audience",
                    "allowed emails are set but no audience: set the audience the callers' ID tokens carry",
                ));
            }
            _ => {}
        }
        for (i, email) in self.oidc_allowed_emails.iter().enumerate() {
            check_email(email).map_err(|r| SettingsError::new(format!("auth.oidc_allowed_emails[{i}]"), r))?;
        }
        for (route, list) in &self.route_emails {
            if route.is_empty() || !route.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(SettingsError::new(
                    format!("auth.route_emails.{route}"),
                    "the key is a route's first path segment without slashes (`schedule`, `export`)",
                ));
            }
            for (i, email) in list.iter().enumerate() {
                check_email(email).map_err(|r| SettingsError::new(format!("auth.route_emails.{route}[{i}]"), r))?;
            }
        }
        if !matches!(self.jwks_url.scheme(), "http" | "https") {
            return Err(SettingsError::new("auth.jwks_url", "must be an http:// or https:// URL"));
        }
        Ok(())
    }
}

fn check_email(email: &str) -> Result<(), String> {
    match email.split_once('@') {
        Some((user, domain)) if !user.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace) => {
            Ok(())
        }
        _ => Err(format!("`{email}` is not an email address")),
    }
}

/// `[http]`: limits of the HTTP service. Requests beyond `max_concurrent_requests` are answered 503
/// with `Retry-After` at once (not queued); `/healthz` is not counted. Connections beyond
/// `max_connections` are closed as soon as they are accepted, and a connection that has not sent a
/// request's complete headers within `header_read_timeout_secs` (an idle keep-alive connection
/// included) is closed, so slow or half-open clients cannot hold file descriptors.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Longest request, in seconds, on quick routes (`/openapi.json` and any route not below).
    pub request_timeout_secs: u64,
    /// Longest request, in seconds, on the routes that do the work: `/export` (runs a whole dump in
    /// self-hosted mode), `/schedule` (discovery), `/prune`, `/verify` (a restore drill) and
    /// `/backups` (bucket listings). Cloud Run allows at most 3600; Cloud Tasks waits at most 1800.
    pub long_request_timeout_secs: u64,
    /// Requests served at once (protected routes together).
    pub max_concurrent_requests: usize,
    /// Longest wait, in seconds, for a request's headers once a connection is open or idle.
    pub header_read_timeout_secs: u64,
    /// Open connections at once; more are closed at once, until some close.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout_secs: 30,
            long_request_timeout_secs: 3600,
            max_concurrent_requests: 64,
            header_read_timeout_secs: 10,
            max_connections: 1024,
        }
    }
}

/// Reads the first line of a secret file.
pub fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(line.to_owned()))
}

impl Settings {
    /// Loads the file (if any) and the environment, then validates.
    pub fn load(config: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::new();
        if let Some(path) = config {
            if !path.is_file() {
                return Err(SettingsError::new("--config", format!("{} is not a readable file", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // `DATA_BACKUP_CONFIG` names the file, `DATA_BACKUP_LOG_FORMAT` is read by telemetry, and
        // `DATA_BACKUP_TEST_*` belong to the test suite: none of them is a setting.
        figment = figment.merge(
            Env::prefixed("DATA_BACKUP_")
                .filter(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    k != "config" && k != "log_format" && !k.starts_with("test_")
                })
                .split("__"),
        );
        Self::from_figment(&figment)
    }

    /// Parses TOML text (tests and examples), then validates.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        Self::from_figment(&Figment::from(Toml::string(text)))
    }

    fn from_figment(figment: &Figment) -> Result<Self, SettingsError> {
        let (figment, gcp_sources, index) = split_gcp_sources(figment)?;
        let mut settings: Self = figment.extract().map_err(|e| {
            let mut path = e.path.clone();
            // Name a self-hosted source by its index among all `[[sources]]`.
            if path.first().is_some_and(|p| p == "sources")
                && let Some(i) = path.get(1).and_then(|i| i.parse::<usize>().ok())
                && let Some(orig) = index.get(i)
            {
                path[1] = orig.to_string();
            }
            let key = if path.is_empty() { "(top level)".to_owned() } else { path.join(".") };
            SettingsError::new(key, e.kind.to_string())
        })?;
        settings.gcp_sources = gcp_sources;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let url =
            Url::parse(&self.store.url).map_err(|e| SettingsError::new("store.url", format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "file" | "gs" | "s3" | "az") {
            return Err(SettingsError::new(
                "store.url",
                format!("unsupported scheme `{}` (expected file://, gs://, s3:// or az://)", url.scheme()),
            ));
        }
        if self.queue.workers == 0 || self.queue.workers > 64 {
            return Err(SettingsError::new("queue.workers", "must be between 1 and 64"));
        }
        if !(self.queue.retry_initial_secs > 0.0 && self.queue.retry_max_delay_secs >= self.queue.retry_initial_secs) {
            return Err(SettingsError::new(
                "queue.retry_max_delay_secs",
                "retry_initial_secs must be positive and at most retry_max_delay_secs",
            ));
        }
        if !(1..=19).contains(&self.export.zstd_level) {
            return Err(SettingsError::new("export.zstd_level", "must be between 1 and 19"));
        }
        if self.export.lease_ttl_secs < 30 {
            return Err(SettingsError::new("export.lease_ttl_secs", "must be at least 30"));
        }
        self.schedule.daily_at()?;
        if self.status.slo_hours == 0 {
            return Err(SettingsError::new("status.slo_hours", "must be at least 1"));
        }
        if self.status.cache_secs > 3600 {
            return Err(SettingsError::new("status.cache_secs", "must be at most 3600"));
        }
        if !(1..=366).contains(&self.status.runs_days) {
            return Err(SettingsError::new("status.runs_days", "must be between 1 and 366"));
        }
        for (key, share) in [
            ("tripwire.table_loss_share", self.tripwire.table_loss_share),
            ("tripwire.shrink_share", self.tripwire.shrink_share),
        ] {
            if !(share > 0.0 && share < 1.0) {
                return Err(SettingsError::new(key, format!("must lie strictly between 0 and 1, not {share}")));
            }
        }
        crate::crypto::parse_recipients(&self.export.age_recipients)
            .map_err(|e| SettingsError::new("export.age_recipients", e))?;
        let mut names = HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            if !names.insert(source.name.as_str()) {
                return Err(SettingsError::new(
                    format!("sources[{i}].name"),
                    format!("`{}` is used twice", source.name),
                ));
            }
            if let Some(list) = &source.age_recipients {
                crate::crypto::parse_recipients(list)
                    .map_err(|e| SettingsError::new(format!("sources[{i}].age_recipients"), e))?;
            }
            let expected = match source.kind {
                SourceKind::Postgres => "postgres",
                SourceKind::Mysql => "mysql",
            };
            if source.url.scheme != expected {
                return Err(SettingsError::new(
                    format!("sources[{i}].url"),
                    format!("a `{expected}` source needs a {expected}:// URL"),
                ));
            }
        }
        for (i, source) in self.sources.iter().enumerate() {
            for (j, pattern) in source.databases.iter().flatten().enumerate() {
                crate::discovery::compile_glob(pattern)
                    .map_err(|e| SettingsError::new(format!("sources[{i}].databases[{j}]"), e.to_string()))?;
            }
        }
        for (i, pattern) in self.exclude.patterns.iter().enumerate() {
            crate::discovery::compile_glob(pattern)
                .map_err(|e| SettingsError::new(format!("exclude.patterns[{i}]"), e.to_string()))?;
        }
        self.auth.validate()?;
        if !self.bind.ip().is_loopback() && !self.auth.is_enabled()? {
            return Err(SettingsError::new(
                "bind",
                format!(
                    "{} is reachable beyond this machine but no authentication is configured: set \
                     auth.bearer_token_file (or DATA_BACKUP_AUTH__BEARER_TOKEN), or auth.oidc_audience with \
                     auth.oidc_allowed_emails (Google ID tokens), or bind to 127.0.0.1",
                    self.bind
                ),
            ));
        }
        if self.http.request_timeout_secs == 0 {
            return Err(SettingsError::new("http.request_timeout_secs", "must be at least 1 second"));
        }
        if self.http.long_request_timeout_secs == 0 {
            return Err(SettingsError::new("http.long_request_timeout_secs", "must be at least 1 second"));
        }
        if self.http.max_concurrent_requests == 0 {
            return Err(SettingsError::new("http.max_concurrent_requests", "must be at least 1"));
        }
        if self.http.header_read_timeout_secs == 0 {
            return Err(SettingsError::new("http.header_read_timeout_secs", "must be at least 1 second"));
        }
        if self.http.max_connections < 2 {
            // One for a liveness probe, one for the caller.
            return Err(SettingsError::new("http.max_connections", "must be at least 2"));
        }
        self.validate_export_wait()?;
        if self.retention.lock != RetentionLock::Off && !self.store.url.starts_with("gs://") {
            return Err(SettingsError::new(
                "retention.lock",
                "object retention is set on gs:// stores only (S3 Object Lock: set a default retention on the bucket)",
            ));
        }
        self.validate_gcp()?;
        crate::retention::RetentionPolicy::from_settings(self)?;
        self.validate_restore_and_verify()?;
        Ok(())
    }

    fn validate_export_wait(&self) -> Result<(), SettingsError> {
        // Cloud Tasks stops listening after its dispatch deadline (at most 30 minutes): the wait
        // must end, and the answer reach it, well before.
        if !(1..=1500).contains(&self.export.wait_secs) {
            return Err(SettingsError::new(
                "export.wait_secs",
                "must be between 1 and 1500 seconds (below Cloud Tasks' 30-minute dispatch deadline)",
            ));
        }
        if self.export.wait_secs + 30 > self.http.long_request_timeout_secs && !self.gcp_sources.is_empty() {
            return Err(SettingsError::new(
                "export.wait_secs",
                format!(
                    "must be at least 30 s below http.long_request_timeout_secs ({} s), so /export answers \
                     503 before its request times out",
                    self.http.long_request_timeout_secs
                ),
            ));
        }
        if self.export.poll_initial_ms == 0 {
            return Err(SettingsError::new("export.poll_initial_ms", "must be at least 1"));
        }
        if let Some(topic) = &self.notify.pubsub_topic {
            let parts: Vec<&str> = topic.split('/').collect();
            let valid = matches!(parts.as_slice(), ["projects", p, "topics", t] if !p.is_empty() && !t.is_empty());
            if !valid {
                return Err(SettingsError::new("notify.pubsub_topic", "must be `projects/PROJECT/topics/TOPIC`"));
            }
        }
        Ok(())
    }

    fn validate_restore_and_verify(&self) -> Result<(), SettingsError> {
        for (i, pattern) in self.restore.production_patterns.iter().enumerate() {
            globset::GlobBuilder::new(pattern)
                .case_insensitive(true)
                .build()
                .map_err(|e| SettingsError::new(format!("restore.production_patterns[{i}]"), e.to_string()))?;
        }
        if self.restore.jobs == Some(0) {
            return Err(SettingsError::new("restore.jobs", "must be at least 1 (1: never parallel)"));
        }
        for (key, url, scheme) in
            [("verify.url", &self.verify.url, "postgres"), ("verify.mysql_url", &self.verify.mysql_url, "mysql")]
        {
            if let Some(url) = url
                && url.scheme != scheme
            {
                return Err(SettingsError::new(key, format!("needs a {scheme}:// URL")));
            }
        }
        if self.verify.nightly_count == 0 {
            return Err(SettingsError::new("verify.nightly_count", "must be at least 1"));
        }
        for (i, check) in self.verify.checks.iter().enumerate() {
            if check.sql.trim().is_empty() {
                return Err(SettingsError::new(format!("verify.checks[{i}].sql"), "must not be empty"));
            }
            for (j, pattern) in check.databases.iter().enumerate() {
                crate::discovery::compile_glob(pattern)
                    .map_err(|e| SettingsError::new(format!("verify.checks[{i}].databases[{j}]"), e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The configured sources, or the embedded default: one PostgreSQL server from the libpq
    /// environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`; default `127.0.0.1:5432`, user `postgres`).
    #[must_use]
    pub fn effective_sources(&self) -> Vec<SourceSettings> {
        if !self.sources.is_empty() || !self.gcp_sources.is_empty() {
            return self.sources.clone();
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let host = env("PGHOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let url = ServerUrl {
            scheme: "postgres".to_owned(),
            host,
            port: env("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432),
            user: env("PGUSER").unwrap_or_else(|| "postgres".to_owned()),
            password: env("PGPASSWORD").map(SecretString::from),
            dbname: env("PGDATABASE"),
        };
        vec![SourceSettings {
            name: SourceName::parse("local").expect("valid name"),
            kind: SourceKind::Postgres,
            url,
            password_file: None,
            instance: None,
            databases: None,
            age_recipients: None,
            row_counts: None,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_configuration_gives_the_embedded_defaults() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.store.url, "file://./backups");
        assert_eq!(s.queue.kind, QueueKind::Local);
        assert_eq!(s.queue.workers, 2);
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("colour = 1", "unknown field"),
            ("[store]\nurl = \"ftp://x\"", "`store.url`"),
            ("[store]\nurl = \"not a url\"", "`store.url`"),
            ("[queue]\nworkers = 0", "`queue.workers`"),
            ("[queue]\nkind = \"carrier-pigeon\"", "queue.kind"),
            ("[[sources]]\nname = \"a\"\nkind = \"postgres\"\nurl = \"mysql://h/\"", "`sources[0].url`"),
            ("[[sources]]\nname = \"\"\nkind = \"postgres\"\nurl = \"postgres://h/\"", "sources.0.name"),
            ("[exclude]\npatterns = [\"a[\"]", "`exclude.patterns[0]`"),
            ("[status]\nslo_hours = 0", "`status.slo_hours`"),
            ("[http]\nheader_read_timeout_secs = 0", "`http.header_read_timeout_secs`"),
            ("[http]\nmax_connections = 1", "`http.max_connections`"),
            ("[status]\nruns_days = 0", "`status.runs_days`"),
            ("[tripwire]\ntable_loss_share = 1.5", "`tripwire.table_loss_share`"),
            ("[tripwire]\nshrink_share = 0", "`tripwire.shrink_share`"),
            ("bind = \"0.0.0.0:8080\"", "no authentication is configured"),
            ("[[sources]]\nname = \"g\"\nkind = \"gcp\"", "`sources[0].folders`"),
            ("[[sources]]\nname = \"g\"\nkind = \"gcp\"\nfolders = [\"x\"]", "`sources[0].folders[0]`"),
            (
                "[[sources]]\nname = \"g\"\nkind = \"gcp\"\nprojects = [\"p\"]\nstrategy = \"guess\"",
                "`sources[0].strategy`",
            ),
            (
                "[[sources]]\nname = \"g\"\nkind = \"gcp\"\nprojects = [\"p\"]\nurl = \"postgres://h/\"",
                "`sources[0].url`",
            ),
            (
                "[[sources]]\nname = \"g\"\nkind = \"gcp\"\nprojects = [\"p\"]\n[[sources]]\nname = \"\"\nkind = \"postgres\"\nurl = \"postgres://h/\"",
                "sources.1.name",
            ),
            ("[queue]\nkind = \"cloud_tasks\"\nqueue = \"q\"", "`queue.queue`"),
            ("[queue]\nkind = \"cloud_tasks\"\nqueue = \"projects/p/locations/l/queues/q\"", "`queue.target_url`"),
            (
                "[queue]\nkind = \"cloud_tasks\"\nqueue = \"projects/p/locations/l/queues/q\"\ntarget_url = \"https://s/export\"",
                "`queue.service_account`",
            ),
            ("[gcp]\nsql_admin_per_minute = 0", "`gcp.sql_admin_per_minute`"),
            ("[restore]\nproduction_patterns = [\"a[\"]", "`restore.production_patterns[0]`"),
            ("[verify]\nurl = \"mysql://h/\"", "`verify.url`"),
            ("[verify]\nnightly_count = 0", "`verify.nightly_count`"),
            ("[[verify.checks]]\nname = \"c\"\nsql = \" \"", "`verify.checks[0].sql`"),
        ];
        for (toml, expected) in cases {
            let err = Settings::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?} gave {err:?}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn gcp_sources_are_split_from_self_hosted_ones() {
        let s = Settings::from_toml(
            "[[sources]]\nname = \"org\"\nkind = \"gcp\"\nfolders = [\"123\", \"folders/456\"]\nstrategy = \"asset_inventory\"\n\
             [[sources]]\nname = \"a\"\nkind = \"postgres\"\nurl = \"postgres://h/\"\n\
             [queue]\nkind = \"cloud_tasks\"\nqueue = \"projects/p/locations/l/queues/q\"\n\
             target_url = \"https://svc.example/export\"\nservice_account = \"tasks@p.iam.gserviceaccount.com\"",
        )
        .unwrap();
        assert_eq!(s.sources.len(), 1);
        assert_eq!(s.gcp_sources.len(), 1);
        assert_eq!(s.gcp_sources[0].folder_names(), ["folders/123", "folders/456"]);
        assert_eq!(s.gcp_sources[0].strategy, GcpStrategy::AssetInventory);
        assert_eq!(s.queue.kind, QueueKind::CloudTasks);
        assert_eq!(s.effective_sources().len(), 1);
        let only_gcp = Settings::from_toml("[[sources]]\nname = \"org\"\nkind = \"gcp\"\nprojects = [\"p\"]").unwrap();
        assert!(only_gcp.effective_sources().is_empty(), "no default local source next to a gcp one");
    }

    #[test]
    fn passwords_never_print() {
        let s = Settings::from_toml(
            "[[sources]]\nname = \"a\"\nkind = \"postgres\"\nurl = \"postgres://u:hunter2@db:5433/x\"\n\
             [notify]\nwebhook_url = \"https://hooks.example/T0/secret-path\"",
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("secret-path"), "{printed}");
        assert_eq!(s.sources[0].url.port, 5433);
        assert_eq!(s.sources[0].instance_name().as_str(), "db");
    }
}
