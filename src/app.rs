//! `Application`: builds the services from `Settings`, binds, serves, and shuts down gracefully.
//! Production and tests use the same `build` (tests bind port 0 and read `port()`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveTime, Utc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::discovery::Exclusions;
use crate::export::{ExportService, Source};
use crate::model::RunDate;
use crate::notify::{LogNotifier, Notifier, WebhookNotifier};
use crate::queue::TaskQueue;
use crate::queue::local::LocalQueue;
use crate::schedule::ScheduleSummary;
use crate::settings::{Settings, SettingsError};
use crate::store::{BackupStore, StoreError};

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Invalid settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

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
    pub auth: Arc<crate::auth::Authenticator>,
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
    pub status: Arc<crate::status::StatusService>,
    /// Whether tasks go to the embedded queue (then this process sends each run's summary).
    local_mode: bool,
    /// Whether each run's drills follow its summary (`serve` with `verify.after_run`, embedded queue).
    drills_after_run: bool,
    /// Run summaries waiting for their run's tasks (see [`AppState::schedule`]).
    run_reports: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl AppState {
    /// Builds every service from the settings (opens the store, starts the queue's workers).
    pub async fn build(settings: &Settings) -> Result<Self, BuildError> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::metrics::TracedBucket::wrap(&BackupStore::open(settings).await?);
        let mut notifiers: Vec<Arc<dyn Notifier>> = vec![Arc::new(LogNotifier)];
        if let Some(url) = &settings.notify.webhook_url {
            notifiers.push(Arc::new(WebhookNotifier::new(url.clone(), settings.notify.webhook_attempts)));
        }
        if let Some(topic) = &settings.notify.pubsub_topic {
            let notifier = crate::notify::PubSubNotifier::new(
                topic,
                &settings.gcp,
                settings.notify.webhook_attempts,
                settings.notify.pubsub_success,
            )
            .map_err(|reason| SettingsError { key: "notify.pubsub_topic".into(), reason })?;
            notifiers.push(Arc::new(notifier));
        }
        let service = Arc::new(ExportService {
            store,
            sources: Source::from_settings(settings),
            lease_ttl: Duration::from_secs(settings.export.lease_ttl_secs),
            notifiers,
            metrics: metrics.clone(),
            report_after_retries: settings.export.report_after_retries,
            retention_lock: match settings.retention.lock {
                crate::settings::RetentionLock::Off => None,
                lock => Some((
                    Arc::new(crate::retention::RetentionPolicy::from_settings(settings)?),
                    lock == crate::settings::RetentionLock::Locked,
                )),
            },
        });
        let local_queue = Arc::new(LocalQueue::start(service.clone(), settings.queue.clone()));
        let exclusions = Exclusions::new(&settings.exclude.patterns)
            .map_err(|e| SettingsError { key: "exclude.patterns".into(), reason: e.to_string() })?;
        let verifier =
            Arc::new(crate::verify::Verifier::new(service.store.clone(), settings, service.notifiers.clone()));
        let status = Arc::new(crate::status::StatusService::new(
            service.store.clone(),
            settings.status.clone(),
            metrics.clone(),
        ));
        Ok(Self {
            service,
            queue: match settings.queue.kind {
                crate::settings::QueueKind::Local => local_queue.clone(),
                crate::settings::QueueKind::CloudTasks => {
                    // Cloud Tasks waits for /export's answer: the export's wait plus two minutes.
                    Arc::new(
                        crate::queue::cloud_tasks::CloudTasksQueue::new(&settings.queue, &settings.gcp)
                            .with_dispatch_deadline(Duration::from_secs(settings.export.wait_secs + 120)),
                    )
                }
            },
            local_queue,
            exclusions,
            auth: Arc::new(crate::auth::Authenticator::from_settings(&settings.auth)?),
            http: settings.http.clone(),
            grace: Duration::from_secs(settings.queue.shutdown_grace_secs),
            settings: Arc::new(settings.clone()),
            retention: Arc::new(crate::retention::RetentionPolicy::from_settings(settings)?),
            verifier,
            status,
            metrics,
            local_mode: settings.queue.kind == crate::settings::QueueKind::Local,
            drills_after_run: false,
            run_reports: Arc::default(),
        })
    }

    /// Runs one schedule for `run_date`; then, when `retention.prune_after_schedule` is set and
    /// this is no dry run, one prune as of `run_date` (see `retention::prune_after_schedule`).
    pub async fn schedule(&self, run_date: RunDate, dry_run: bool) -> ScheduleSummary {
        let summary = crate::schedule::schedule(
            &self.service.sources,
            &self.exclusions,
            &self.service.store,
            &self.queue,
            run_date,
            dry_run,
        )
        .await;
        if !dry_run && self.retention.prune_after_schedule() {
            crate::retention::prune_after_schedule(&self.service.store, &self.retention, run_date, &summary.run_id)
                .await;
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
                if let Err(e) = crate::status::report_overdue_runs(store, notifiers, Utc::now()).await {
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
        match crate::status::report_run_if_resolved(store, notifiers, run_id, run_date).await {
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
            if let Err(e) = crate::status::report_run(&store, &notifiers, &run_id, run_date).await {
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

/// The HTTP service, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    daily_at: Option<NaiveTime>,
}

impl Application {
    /// Builds the services and binds the configured address (port 0 picks a free port).
    pub async fn build(settings: &Settings) -> Result<Self, BuildError> {
        let listener = TcpListener::bind(settings.bind)
            .await
            .map_err(|source| BuildError::Bind { addr: settings.bind, source })?;
        let mut state = AppState::build(settings).await?;
        state.drills_after_run = settings.verify.after_run && state.local_mode;
        if !state.auth.is_enabled() {
            tracing::warn!(bind = %settings.bind, "no authentication configured: anyone who can reach this address may call the service");
        }
        Ok(Self { listener, state, daily_at: settings.schedule.daily_at()? })
    }

    /// The bound port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The services (tests use them to wait for the queue).
    #[must_use]
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; then stops taking requests and tasks, gives running
    /// requests and exports the grace period, and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let token = CancellationToken::new();
        let local = self.listener.local_addr()?;
        let router = crate::http::router(self.state.clone(), local);
        tracing::info!(addr = %local, "listening");
        let limits = crate::http::server::ConnectionLimits::from_settings(&self.state.http);
        let server = tokio::spawn(crate::http::server::serve(self.listener, router, limits, token.clone()));
        let timer = self.daily_at.map(|at| tokio::spawn(nightly(self.state.clone(), at, token.clone())));
        shutdown.await;
        tracing::info!(grace_secs = self.state.grace.as_secs(), "shutting down");
        if let Some(t) = timer {
            t.abort();
        }
        token.cancel();
        // Running drills stop their scratch servers and record nothing.
        self.state.verifier.interrupt();
        let grace = self.state.grace;
        let (_, served) = tokio::join!(self.state.local_queue.shutdown(grace), tokio::time::timeout(grace, server));
        if tokio::time::timeout(grace, self.state.verifier.stopped()).await.is_err() {
            tracing::warn!("grace period over: drills still stopping were abandoned (their servers are killed)");
        }
        self.state.metrics.shutdown();
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => {
                tracing::warn!("grace period over: requests still running were abandoned");
                Ok(())
            }
        }
    }
}

/// The embedded timer: one schedule run every day at `at` (UTC), until `stop`.
async fn nightly(state: AppState, at: NaiveTime, stop: CancellationToken) {
    loop {
        let now = Utc::now();
        let mut next = now.date_naive().and_time(at).and_utc();
        if next <= now {
            next += chrono::Duration::days(1);
        }
        tracing::info!(next = %next, "next nightly schedule run");
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        state.schedule(RunDate::from_date(next.date_naive()), false).await;
    }
}

/// Completes on the next delivery of `signal`; never, when its handler could not be installed.
#[cfg(unix)]
async fn next_signal(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: called before the server starts, a SIGTERM that arrives as soon as the
/// first request is answered (a loaded machine may not have polled the future yet) shuts down
/// gracefully instead of killing the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (term, int) = handlers;
            tokio::select! {
                () = next_signal(term) => {},
                () = next_signal(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
