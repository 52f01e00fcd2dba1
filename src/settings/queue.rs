//! `[queue]`: how export tasks are delivered (the local queue or Cloud Tasks), and its checks.

use serde::Deserialize;
use url::Url;

use super::error::SettingsError;

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

impl QueueSettings {
    /// Checks the local queue's workers and the retry delays.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.workers == 0 || self.workers > 64 {
            return Err(SettingsError::new("queue.workers", "must be between 1 and 64"));
        }
        if !(self.retry_initial_secs > 0.0 && self.retry_max_delay_secs >= self.retry_initial_secs) {
            return Err(SettingsError::new(
                "queue.retry_max_delay_secs",
                "retry_initial_secs must be positive and at most retry_max_delay_secs",
            ));
        }
        Ok(())
    }

    /// Checks a `cloud_tasks` queue: its name, target URL, service account and createTask limits.
    pub(crate) fn validate_cloud_tasks(&self) -> Result<(), SettingsError> {
        if self.kind != QueueKind::CloudTasks {
            return Ok(());
        }
        let q = self;
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
        Ok(())
    }
}
