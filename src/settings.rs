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
    pub sources: Vec<SourceSettings>,
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
    /// The embedded nightly timer (self-hosted mode).
    pub schedule: ScheduleSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: StoreSettings::default(),
            queue: QueueSettings::default(),
            sources: Vec::new(),
            exclude: ExcludeSettings::default(),
            notify: NotifySettings::default(),
            export: ExportSettings::default(),
            retention: RetentionSettings::default(),
            gcp: GcpSettings::default(),
            auth: AuthSettings::default(),
            schedule: ScheduleSettings::default(),
        }
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
        }
    }
}

/// Which `TaskQueue` delivers tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// The embedded in-process queue.
    Local,
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
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self { webhook_url: None, webhook_attempts: 3 }
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
    /// zstd level (1–19); 3 is the measured sweet spot (see bench/README.md).
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
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            zstd_threads: 0,
            lease_ttl_secs: 600,
            pg_bin_dir: None,
            mysql_bin_dir: None,
            age_recipients: Vec::new(),
            row_counts: true,
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

/// `[gcp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcpSettings {
    /// `default` (Application Default Credentials) or `anonymous` (emulators).
    pub credentials: GcpCredentials,
    /// Cloud Storage endpoint (default Google's); tests use fake-gcs-server.
    pub storage_endpoint: Option<Url>,
}

impl Default for GcpSettings {
    fn default() -> Self {
        Self { credentials: GcpCredentials::Default, storage_endpoint: None }
    }
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

/// `[auth]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer token callers must present (prefer `bearer_token_file` or the environment).
    pub bearer_token: Option<SecretString>,
    /// File holding the bearer token (its first line).
    pub bearer_token_file: Option<PathBuf>,
}

impl AuthSettings {
    /// The configured bearer token, read from its file if needed.
    pub fn token(&self) -> Result<Option<SecretString>, SettingsError> {
        if let Some(path) = &self.bearer_token_file {
            return read_secret_file(path).map(Some).map_err(|r| SettingsError::new("auth.bearer_token_file", r));
        }
        Ok(self.bearer_token.clone())
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
        let settings: Self = figment.extract().map_err(|e| {
            let key = if e.path.is_empty() { "(top level)".to_owned() } else { e.path.join(".") };
            SettingsError::new(key, e.kind.to_string())
        })?;
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
        let has_auth = self.auth.token()?.is_some_and(|t| !t.expose_secret().is_empty());
        if !self.bind.ip().is_loopback() && !has_auth {
            return Err(SettingsError::new(
                "bind",
                format!(
                    "{} is reachable beyond this machine but no authentication is configured: set auth.bearer_token_file \
                     (or DATA_BACKUP_AUTH__BEARER_TOKEN), or bind to 127.0.0.1",
                    self.bind
                ),
            ));
        }
        crate::retention::RetentionPolicy::from_settings(self)?;
        Ok(())
    }

    /// The configured sources, or the embedded default: one PostgreSQL server from the libpq
    /// environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`; default `127.0.0.1:5432`, user `postgres`).
    #[must_use]
    pub fn effective_sources(&self) -> Vec<SourceSettings> {
        if !self.sources.is_empty() {
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
            ("[[sources]]\nname = \"a/b\"\nkind = \"postgres\"\nurl = \"postgres://h/\"", "sources.0.name"),
            ("[exclude]\npatterns = [\"a[\"]", "`exclude.patterns[0]`"),
            ("bind = \"0.0.0.0:8080\"", "no authentication is configured"),
        ];
        for (toml, expected) in cases {
            let err = Settings::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{toml:?} gave {err:?}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
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
