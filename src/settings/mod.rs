//! `Settings`: typed configuration from a TOML file and `DATA_BACKUP_<SECTION>__<KEY>` variables.
//!
//! Loading validates everything once, at start: an unknown key, a bad URL or an impossible
//! combination is one [`SettingsError`] line naming the key and the reason. With no configuration
//! at all the embedded defaults apply (local directory store, in-process queue, one PostgreSQL
//! source from the libpq environment, bind 127.0.0.1:8080).
//!
//! Each section has its file, with its types and its checks beside them; this module holds the
//! whole ([`Settings`]), loading, and the order the checks run in (checks that span sections too).
//! It re-exports every section's types, so `crate::settings::X` names any of them (files inside
//! `settings/` name each other by their own path).

pub mod auth;
pub mod copies;
pub mod error;
pub mod export;
pub mod gcp;
pub mod http;
pub mod notify;
pub mod queue;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod sources;
pub mod status;
pub mod store;
pub mod verify;

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

pub use auth::AuthSettings;
pub use copies::CopySettings;
pub use error::SettingsError;
pub use export::ExportSettings;
pub use gcp::{GcpCredentials, GcpSettings, GcpSourceSettings, GcpStrategy, folder_name};
pub use http::HttpSettings;
pub use notify::{NotifySettings, SecretUrl};
pub use queue::{QueueKind, QueueSettings};
pub use retention::{
    ClassRetentionSettings, ClassRule, Colder, ColderStorage, RetentionLock, RetentionPolicy, RetentionSettings,
    SourceRetentionSettings, WeekdayName,
};
pub use schedule::ScheduleSettings;
pub use secret::read_secret_file;
pub use sources::{ExcludeSettings, ServerUrl, SourceKind, SourceSettings};
pub use status::{StatusSettings, TripwireSettings};
pub use store::StoreSettings;
pub use verify::{RestoreSettings, VerifyCheck, VerifySettings};

use crate::model::names::SourceName;

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
    /// Off-site copies: further stores every dated backup is copied to (`[[copies]]`).
    pub copies: Vec<CopySettings>,
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
            copies: Vec::new(),
        }
    }
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

    /// Runs every section's checks, and those that span sections, in a fixed order (the first
    /// problem found is the one reported).
    fn validate(&self) -> Result<(), SettingsError> {
        self.store.validate()?;
        copies::validate_copies(&self.copies, &self.store.url)?;
        self.queue.validate()?;
        self.export.validate()?;
        self.schedule.daily_at()?;
        self.status.validate()?;
        self.tripwire.validate()?;
        self.export.validate_recipients()?;
        sources::validate_sources(&self.sources)?;
        self.exclude.validate()?;
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
        self.http.validate()?;
        self.export.validate_wait(self.http.long_request_timeout_secs, !self.gcp_sources.is_empty())?;
        self.notify.validate()?;
        self.retention.validate_lock(&self.store.url)?;
        gcp::validate_gcp_sources(&self.sources, &self.gcp_sources)?;
        self.gcp.validate()?;
        self.queue.validate_cloud_tasks()?;
        RetentionPolicy::from_settings(self)?;
        self.restore.validate()?;
        self.verify.validate()?;
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

impl RetentionPolicy {
    /// Resolves and checks `[retention]` for the configured sources; an error names the offending key.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        Self::resolve(&settings.retention, settings.effective_sources().iter().map(|s| s.name.to_string()))?
            .resolve_copies(settings.copies.iter().map(|c| (c.name.as_str(), &c.retention)))
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
            ("[export]\nfollow_up_min_secs = 0", "`export.follow_up_min_secs`"),
            ("[export]\nfollow_up_min_secs = 600\nfollow_up_max_secs = 60", "`export.follow_up_max_secs`"),
            ("[export]\nfollow_up_default_secs = 0", "`export.follow_up_default_secs`"),
            ("[export]\nfollow_up_max_checks = 0", "`export.follow_up_max_checks`"),
            ("[export]\njob = \"data-backup-export\"", "`export.job`"),
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
