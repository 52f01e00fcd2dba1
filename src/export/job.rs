//! [`JobExports`]: the dumps of self-hosted databases that outlast a request run as Cloud Run job
//! executions (`export.job`, `cloud_tasks` mode with follow-ups; ADR 0021).
//!
//! A self-hosted database whose previous backup took at least `export.job_after_secs` is not dumped
//! in the `/export` request: [`JobExports::step`] runs the job (`jobs.run`, the container's args
//! overridden to `export --database P/I/D --date D --source S --ignore-scope`, the same image and
//! settings as the service), and the follow-ups attach to that execution exactly as to a Cloud SQL
//! operation: an execution still running is [`ExportError::Running`] (named after it, so the
//! answer and the follow-up's schedule are the same), one that succeeded left the backup's
//! manifest, which the check answers, and one that failed is a failure, reported once. The
//! execution of a task is found again by its args (`jobs.executions.list`), so a duplicate
//! delivery or a follow-up never runs the job twice. The job's own `export` takes the export lease
//! like every export.

use std::time::Duration;

use chrono::Utc;

use crate::export::ExportError;
use crate::export::follow_up::took;
use crate::gcp::run_jobs::RunJobs;
use crate::model::ExportTask;
use crate::settings::{ExportSettings, GcpSettings};
use crate::store::BackupStore;
use crate::store::manifest::Manifest;

/// What a check of a job-bound export found, when it is not waiting.
#[derive(Debug)]
pub enum JobStep {
    /// Not for the job (a Cloud SQL database, a short previous backup or none, a backup made
    /// without the job): the request exports it itself (or answers that it exists).
    Inline,
    /// The job's execution made the backup: its manifest.
    Done(Box<Manifest>),
}

/// Runs long self-hosted dumps as executions of the configured Cloud Run job.
pub struct JobExports {
    jobs: RunJobs,
    job: String,
    after: Duration,
}

impl JobExports {
    /// The job of `export.job`, when set.
    pub fn from_settings(export: &ExportSettings, gcp: &GcpSettings) -> Result<Option<Self>, String> {
        let Some(job) = &export.job else { return Ok(None) };
        Ok(Some(Self { jobs: RunJobs::new(gcp)?, job: job.clone(), after: Duration::from_secs(export.job_after_secs) }))
    }

    /// Whether a previous backup that took `previous` sends the next dump to the job.
    #[must_use]
    pub fn takes(&self, previous: Option<Duration>) -> bool {
        previous.is_some_and(|d| d >= self.after)
    }

    /// The job's container args for `task`: `data-backup export` of its database and day.
    #[must_use]
    pub fn args(task: &ExportTask) -> Vec<String> {
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'/').add(b'%');
        let enc = |s: &str| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string();
        let db = &task.db;
        vec![
            "export".to_owned(),
            "--database".to_owned(),
            format!("{}/{}/{}", enc(db.project.as_str()), enc(db.instance.as_str()), enc(db.database.as_str())),
            "--date".to_owned(),
            task.run_date.to_string(),
            "--source".to_owned(),
            db.source.to_string(),
            "--ignore-scope".to_owned(),
        ]
    }

    /// Runs, attaches to or reads the execution of `task` (see the module docs); a self-hosted
    /// source only (`self_hosted`).
    pub async fn step(
        &self,
        store: &BackupStore,
        task: &ExportTask,
        self_hosted: bool,
    ) -> Result<JobStep, ExportError> {
        if !self_hosted {
            return Ok(JobStep::Inline);
        }
        let args = Self::args(task);
        if let Some(m) = store.manifest(&task.db, task.run_date).await? {
            // Made by this task's execution (its check answers `exported`), or by anything else.
            let executions = self.jobs.executions(&self.job).await.map_err(ExportError::Upstream)?;
            return Ok(if executions.iter().any(|e| e.args == args) {
                JobStep::Done(Box::new(m))
            } else {
                JobStep::Inline
            });
        }
        let previous = store.latest(&task.db).await?.and_then(|m| took(m.started_at, m.finished_at));
        if !self.takes(previous) {
            return Ok(JobStep::Inline);
        }
        let executions = self.jobs.executions(&self.job).await.map_err(ExportError::Upstream)?;
        let Some(execution) = executions.into_iter().find(|e| e.args == args) else {
            let name = self.jobs.run(&self.job, &args).await.map_err(ExportError::Upstream)?;
            tracing::info!(db.path = %task.db, execution = %name, "the dump runs as a Cloud Run job execution");
            return Err(running(name, true, Some(Utc::now())));
        };
        if !execution.done {
            return Err(running(execution.name, false, execution.created));
        }
        match store.manifest(&task.db, task.run_date).await? {
            Some(m) if execution.succeeded => Ok(JobStep::Done(Box::new(m))),
            _ => Err(ExportError::DumpFailed {
                tool: format!("Cloud Run job execution {}", execution.name),
                status: if execution.succeeded { "succeeded without a manifest" } else { "failed" }.to_owned(),
                stderr: format!("see the execution's log: gcloud run jobs executions describe {}", execution.name),
                transient: false,
            }),
        }
    }
}

fn running(name: String, started: bool, since: Option<chrono::DateTime<Utc>>) -> ExportError {
    ExportError::Running {
        operation: name,
        waited_secs: 0,
        retry_after: crate::util::backoff::spread(Duration::from_secs(30), 1.0),
        started,
        since,
    }
}
