//! `[export]`: how dumps are made (compression, leases, tools, encryption, Cloud SQL waits), with
//! its checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::SettingsError;

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
    /// `cloud_tasks` queue: a Cloud SQL export that is still running (or an instance busy with
    /// another operation) is answered 200 and checked again by a follow-up task, instead of 503
    /// polling (ADR 0021). Off: 503 + `Retry-After` as before.
    pub follow_up: bool,
    /// Follow-ups: the earliest a check comes after the previous one, in seconds.
    pub follow_up_min_secs: u64,
    /// Follow-ups: the latest a check comes after the previous one, in seconds (at most a day).
    pub follow_up_max_secs: u64,
    /// Follow-ups: how long an export is expected to take when the database has no previous backup
    /// to learn it from, in seconds.
    pub follow_up_default_secs: u64,
    /// Follow-ups: the most checks of one database's day; the check past it is a failure reported
    /// once (`follow_ups_exhausted`).
    pub follow_up_max_checks: u32,
    /// `cloud_tasks` with follow-ups: a Cloud Run job (`projects/P/locations/L/jobs/J`, the same
    /// image) that runs the dumps of self-hosted databases whose previous backup took at least
    /// `job_after_secs`, as a job execution (`jobs.run` with `export --database …` as its args)
    /// that follow-ups attach to, so no dump has to fit in one request. Unset: every dump runs in
    /// its request.
    pub job: Option<String>,
    /// See `job`: the previous backup's duration from which a self-hosted dump runs as a job
    /// execution, in seconds (default 20 minutes: a request lasts at most 30).
    pub job_after_secs: u64,
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
            follow_up: true,
            follow_up_min_secs: 60,
            follow_up_max_secs: 1800,
            follow_up_default_secs: 600,
            follow_up_max_checks: 48,
            job: None,
            job_after_secs: 1200,
        }
    }
}

impl ExportSettings {
    /// Checks the compression level and the lease's lifetime.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if !(1..=19).contains(&self.zstd_level) {
            return Err(SettingsError::new("export.zstd_level", "must be between 1 and 19"));
        }
        if self.lease_ttl_secs < 30 {
            return Err(SettingsError::new("export.lease_ttl_secs", "must be at least 30"));
        }
        self.validate_follow_up()
    }

    /// Checks the follow-up bounds: 1 s ≤ min ≤ max ≤ a day, a default inside a day, 1–1000 checks.
    fn validate_follow_up(&self) -> Result<(), SettingsError> {
        if self.follow_up_min_secs == 0 {
            return Err(SettingsError::new("export.follow_up_min_secs", "must be at least 1"));
        }
        if !(self.follow_up_min_secs..=86_400).contains(&self.follow_up_max_secs) {
            return Err(SettingsError::new(
                "export.follow_up_max_secs",
                "must be between export.follow_up_min_secs and 86400 (a day)",
            ));
        }
        if !(1..=86_400).contains(&self.follow_up_default_secs) {
            return Err(SettingsError::new("export.follow_up_default_secs", "must be between 1 and 86400"));
        }
        if !(1..=1000).contains(&self.follow_up_max_checks) {
            return Err(SettingsError::new("export.follow_up_max_checks", "must be between 1 and 1000"));
        }
        if let Some(job) = &self.job {
            let parts: Vec<&str> = job.split('/').collect();
            let shaped = matches!(parts.as_slice(), ["projects", p, "locations", l, "jobs", j] if !p.is_empty() && !l.is_empty() && !j.is_empty());
            if !shaped {
                return Err(SettingsError::new("export.job", "must be projects/PROJECT/locations/LOCATION/jobs/JOB"));
            }
        }
        Ok(())
    }

    /// Checks the age recipients.
    pub(crate) fn validate_recipients(&self) -> Result<(), SettingsError> {
        crate::crypto::parse_recipients(&self.age_recipients)
            .map_err(|e| SettingsError::new("export.age_recipients", e))?;
        Ok(())
    }

    /// Checks the Cloud SQL wait against the longest request (`http.long_request_timeout_secs`)
    /// when `gcp` sources are configured, and the first poll delay.
    pub(crate) fn validate_wait(
        &self,
        long_request_timeout_secs: u64,
        has_gcp_sources: bool,
    ) -> Result<(), SettingsError> {
        // Cloud Tasks stops listening after its dispatch deadline (at most 30 minutes): the wait
        // must end, and the answer reach it, well before.
        if !(1..=1500).contains(&self.wait_secs) {
            return Err(SettingsError::new(
                "export.wait_secs",
                "must be between 1 and 1500 seconds (below Cloud Tasks' 30-minute dispatch deadline)",
            ));
        }
        if self.wait_secs + 30 > long_request_timeout_secs && has_gcp_sources {
            return Err(SettingsError::new(
                "export.wait_secs",
                format!(
                    "must be at least 30 s below http.long_request_timeout_secs ({long_request_timeout_secs} s), so \
                     /export answers 503 before its request times out"
                ),
            ));
        }
        if self.poll_initial_ms == 0 {
            return Err(SettingsError::new("export.poll_initial_ms", "must be at least 1"));
        }
        Ok(())
    }
}
