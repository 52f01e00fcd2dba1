//! `AppState`: the services every entry point shares (handlers, the nightly timer, the CLI), built
//! from the settings by `app.rs`; and what a schedule run does around the schedule itself: the
//! prune after it, the discovery metrics, and the run's one summary once its tasks are resolved.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::discovery::Exclusions;
use crate::export::service::ExportService;
use crate::model::RunDate;
use crate::queue::TaskQueue;
use crate::queue::local::LocalQueue;
use crate::runs::ledger::ScheduleSummary;
use crate::runs::scope::{Narrowed, RunScope};
use crate::settings::Settings;

/// The services behind every command: the export service, the queue, and the schedule inputs.
#[derive(Clone)]
pub struct AppState {
    /// Exports.
    pub service: Arc<ExportService>,
    /// The queue tasks are enqueued on.
    pub queue: Arc<dyn TaskQueue>,
    /// The embedded queue, to drain at shutdown.
    pub local_queue: Arc<LocalQueue>,
    /// Exclusion patterns.
    pub exclusions: Exclusions,
    /// Caller verification (bearer token, Google ID tokens), see `auth.rs`.
    pub auth: Arc<super::auth::Authenticator>,
    /// Timeouts and the concurrency limit of the HTTP service.
    pub http: crate::settings::HttpSettings,
    /// Grace period for running exports at shutdown.
    pub grace: Duration,
    /// The settings the services were built from (`GET /doctor` checks what they point at).
    pub settings: Arc<Settings>,
    /// The retention policy (`POST /prune`, and the prune after `/schedule`).
    pub retention: Arc<crate::retention::RetentionPolicy>,
    /// Restore drills (`POST /verify`, `data-backup verify`).
    pub verifier: Arc<crate::verify::Verifier>,
    /// Metrics (`GET /metrics`, OTLP).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Freshness and coverage (`GET /status`, `GET /`, `GET /runs`).
    pub status: Arc<crate::status::service::StatusService>,
    /// Long self-hosted dumps as Cloud Run job executions (`export.job`), when configured.
    pub jobs: Option<Arc<crate::export::job::JobExports>>,
    /// The off-site copies (`[[copies]]`), when any is configured: a copy delivery
    /// (`"copy": true`) runs them.
    pub copies: Option<Arc<crate::copy::CopyService>>,
    /// Whether tasks go to the embedded queue (then this process sends each run's summary).
    pub(crate) local_mode: bool,
    /// Whether each run's drills follow its summary (`serve` with `verify.after_run`, embedded queue).
    pub(crate) drills_after_run: bool,
    /// Run summaries waiting for their run's tasks (see [`AppState::schedule`]).
    pub(crate) run_reports: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl AppState {
    /// Runs one schedule for `run_date`; then, when `retention.prune_after_schedule` is set and
    /// this is no dry run, one prune as of `run_date` (see `retention::prune_after_schedule`).
    pub async fn schedule(&self, run_date: RunDate, dry_run: bool) -> ScheduleSummary {
        self.schedule_scoped(run_date, dry_run, None).await
    }

    /// [`AppState::schedule`] over the sources and exclusions a run's scope resolved to.
    pub async fn schedule_scoped(
        &self,
        run_date: RunDate,
        dry_run: bool,
        scoped: Option<(&RunScope, &Narrowed)>,
    ) -> ScheduleSummary {
        let (sources, exclusions) = match scoped {
            Some((_, narrowed)) => (&narrowed.sources, &narrowed.exclusions),
            None => (&self.service.sources, &self.exclusions),
        };
        let summary = crate::runs::schedule::schedule(
            sources,
            exclusions,
            &self.service.store,
            &self.queue,
            run_date,
            dry_run,
            scoped.map(|(scope, _)| scope),
        )
        .await;
        if !dry_run && self.retention.prune_after_schedule() {
            crate::retention::prune_after_schedule(&self.service.store, &self.retention, run_date, &summary.run_id)
                .await;
            if let Some(copies) = &self.copies {
                let stores = copies.stores();
                crate::retention::prune_copies_after_schedule(
                    &self.service.store,
                    &stores,
                    &self.retention,
                    run_date,
                    &summary.run_id,
                )
                .await;
            }
        }
        self.count_discovery(&summary);
        if !dry_run {
            self.status.invalidate().await;
            if self.local_mode {
                self.report_when_resolved(&summary, run_date);
            } else {
                let (store, notifiers) = (&self.service.store, &self.service.notifiers);
                // Exports of this run that finished before its ledger was written found no ledger
                // to complete: if they were the last, the run is over now (ADR 0010).
                if let Ok(run_id) = crate::model::RunId::parse(summary.run_id.clone()) {
                    self.report_run_if_resolved(&run_id, run_date).await;
                }
                if let Err(e) = crate::runs::completion::report_overdue_runs(store, notifiers, Utc::now()).await {
                    tracing::warn!(error = %e, "summaries of overdue runs not sent: {e}");
                }
            }
        }
        summary
    }

    /// `cloud_tasks` mode: after an export of `task` resolved its database (backed up, or failed
    /// and reported), sends the summary of its run once every database of the run is resolved
    /// (see `status::report_run_if_resolved`). The embedded queue and manual exports: nothing.
    pub async fn after_export(&self, task: &crate::model::ExportTask) {
        if self.local_mode || task.run_id == crate::model::RunId::manual() {
            return;
        }
        self.report_run_if_resolved(&task.run_id, task.run_date).await;
    }

    async fn report_run_if_resolved(&self, run_id: &crate::model::RunId, run_date: RunDate) {
        let (store, notifiers) = (&self.service.store, &self.service.notifiers);
        match crate::runs::completion::report_run_if_resolved(store, notifiers, run_id, run_date).await {
            Ok(Some(_)) => self.status.invalidate().await,
            Ok(None) => {}
            Err(e) => tracing::warn!(run.id = %run_id, error = %e, "run summary not checked: {e}"),
        }
    }

    /// Discovery metrics of one run: for a `gcp` source every request sent to a Google API, by
    /// API, method and error; for a server one call per run, an error when it could not be (fully)
    /// listed.
    fn count_discovery(&self, summary: &ScheduleSummary) {
        for (source, c) in &summary.api_calls {
            self.metrics.discovery_calls(source, &c.api, &c.method, c.error_type.as_deref(), c.count);
        }
        for source in &self.service.sources {
            if source.any_instance {
                continue;
            }
            let api = source.engine.as_str();
            let scope = format!("source:{}", source.name);
            let error = summary.errors.iter().find_map(|e| {
                if e.scope == scope {
                    Some("unavailable")
                } else if e.scope.starts_with(&format!("{scope}:")) {
                    Some("partial")
                } else {
                    None
                }
            });
            self.metrics.discovery_calls(source.name.as_str(), api, "list_databases", error, 1);
        }
    }

    /// Embedded queue: once every task is resolved (the queue is idle: exported, or failed and
    /// reported) or 24 hours have passed, sends the run's one summary through the notifiers.
    /// Overlapping runs wait for each other (the queue is idle only when all are resolved).
    /// Under `serve` (with `verify.after_run`), the run's drills follow: `Verifier::drill_due`.
    fn report_when_resolved(&self, summary: &ScheduleSummary, run_date: RunDate) {
        let Ok(run_id) = crate::model::RunId::parse(summary.run_id.clone()) else { return };
        let (queue, store, notifiers, status) =
            (self.queue.clone(), self.service.store.clone(), self.service.notifiers.clone(), self.status.clone());
        let drills = self.drills_after_run.then(|| self.verifier.clone());
        let task = tokio::spawn(async move {
            tokio::select! {
                () = queue.wait_idle() => {}
                () = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
            }
            if let Err(e) = crate::runs::completion::report_run(&store, &notifiers, &run_id, run_date).await {
                tracing::warn!(run.id = %run_id, error = %e, "run summary not sent: {e}");
            }
            status.invalidate().await;
            if let Some(verifier) = drills {
                match verifier.drill_due().await {
                    Ok(_) => {}
                    Err(crate::verify::VerifyError::Interrupted) => {
                        tracing::info!(run.id = %run_id, "the run's drills were interrupted: the service is stopping");
                    }
                    Err(e) => tracing::warn!(run.id = %run_id, error = %e, "the run's drills did not run: {e}"),
                }
                status.invalidate().await;
            }
        });
        let mut pending = self.run_reports.lock().expect("lock");
        pending.retain(|t| !t.is_finished());
        pending.push(task);
    }

    /// Waits for the run summaries still pending (the CLI's `schedule` calls it after the queue drained).
    pub async fn flush_run_reports(&self) {
        let pending: Vec<_> = std::mem::take(&mut *self.run_reports.lock().expect("lock"));
        for task in pending {
            let _ = task.await;
        }
    }
}
