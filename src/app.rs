//! The wiring: builds the services from `Settings` ([`AppState::build`]), binds, serves (the HTTP
//! service and the nightly timer of `nightly.rs`), and shuts down gracefully ([`Application`]).
//! Production and tests use the same `build` (tests bind port 0 and read `port()`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveTime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::copy::CopyService;
use crate::discovery::Exclusions;
use crate::export::service::ExportService;
use crate::export::source::Source;
use crate::http::auth::Authenticator;
use crate::http::state::AppState;
use crate::notify::webhook::WebhookNotifier;
use crate::notify::{LogNotifier, Notifier};
use crate::queue::local::LocalQueue;
use crate::settings::{Settings, SettingsError};
use crate::store::{BackupStore, StoreError};

/// The off-site copies that follow every dated backup (`[[copies]]`, ADR 0023): with the embedded
/// queue they run right after the export, in the process that made (or found) the backup; with
/// `cloud_tasks` a copy task is enqueued (`<task id>-copy`), and run here only when it cannot be.
/// `None` without copies.
fn copies_after_backup(
    copies: Option<&Arc<CopyService>>,
    remote: Option<Arc<dyn crate::queue::TaskQueue>>,
) -> Option<crate::export::service::AfterBackup> {
    let copies = copies?.clone();
    Some(Arc::new(move |task, manifest| {
        let (copies, remote) = (copies.clone(), remote.clone());
        Box::pin(async move {
            if let Some(queue) = remote {
                match queue.enqueue_copy(&task).await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(
                        db.path = %task.db,
                        error = %e,
                        "the copy task could not be created; copying in this request instead"
                    ),
                }
            }
            copies.copy_backup(&task, &manifest).await;
        })
    }))
}

/// Why the application could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Invalid settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    /// An off-site copy could not be opened.
    #[error(transparent)]
    Copies(#[from] crate::copy::OpenError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl AppState {
    /// Builds every service from the settings (opens the store, starts the queue's workers).
    pub async fn build(settings: &Settings) -> Result<Self, BuildError> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::metrics::TracedBucket::wrap(&BackupStore::open(settings).await?);
        if settings.retention.lock != crate::settings::RetentionLock::Off {
            crate::store::ensure_retention(store.bucket().as_ref(), "retention.lock").await?;
        }
        let mut notifiers: Vec<Arc<dyn Notifier>> = vec![Arc::new(LogNotifier)];
        if let Some(url) = &settings.notify.webhook_url {
            notifiers.push(Arc::new(WebhookNotifier::new(url.clone(), settings.notify.webhook_attempts)));
        }
        if let Some(topic) = &settings.notify.pubsub_topic {
            let notifier = crate::notify::pubsub::PubSubNotifier::new(
                topic,
                &settings.gcp,
                settings.notify.webhook_attempts,
                settings.notify.pubsub_success,
            )
            .map_err(|reason| SettingsError { key: "notify.pubsub_topic".into(), reason })?;
            notifiers.push(Arc::new(notifier));
        }
        let copies = if settings.copies.is_empty() {
            None
        } else {
            Some(Arc::new(CopyService::open(settings, store.clone(), notifiers.clone()).await?))
        };
        let cloud_tasks: Option<Arc<dyn crate::queue::TaskQueue>> = match settings.queue.kind {
            crate::settings::QueueKind::Local => None,
            // Cloud Tasks waits for /export's answer: the export's wait plus two minutes.
            crate::settings::QueueKind::CloudTasks => Some(Arc::new(
                crate::queue::cloud_tasks::CloudTasksQueue::new(&settings.queue, &settings.gcp)
                    .with_dispatch_deadline(Duration::from_secs(settings.export.wait_secs + 120))
                    .with_follow_up(settings.export.follow_up),
            )),
        };
        let after_backup = copies_after_backup(copies.as_ref(), cloud_tasks.clone());
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
            after_backup,
        });
        let local_queue = Arc::new(LocalQueue::start(service.clone(), settings.queue.clone()));
        let exclusions = Exclusions::new(&settings.exclude.patterns)
            .map_err(|e| SettingsError { key: "exclude.patterns".into(), reason: e.to_string() })?;
        let verifier = crate::verify::Verifier::new(service.store.clone(), settings, service.notifiers.clone())
            .with_copies(copies.as_ref().map(|c| c.stores()).unwrap_or_default());
        let verifier = Arc::new(verifier);
        let status_copies = copies
            .as_ref()
            .map(|c| {
                c.stores()
                    .into_iter()
                    .filter_map(|(name, store)| {
                        let settings = settings.copies.iter().find(|s| s.name == name)?.clone();
                        Some(crate::status::copies::StatusCopy { settings, store })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = Arc::new(
            crate::status::service::StatusService::new(service.store.clone(), settings.status.clone(), metrics.clone())
                .with_copies(status_copies),
        );
        Ok(Self {
            service,
            queue: match cloud_tasks {
                Some(queue) => queue,
                None => local_queue.clone(),
            },
            local_queue,
            exclusions,
            auth: Arc::new(Authenticator::from_settings(&settings.auth)?),
            http: settings.http.clone(),
            grace: Duration::from_secs(settings.queue.shutdown_grace_secs),
            settings: Arc::new(settings.clone()),
            retention: Arc::new(crate::retention::RetentionPolicy::from_settings(settings)?),
            verifier,
            status,
            metrics,
            jobs: crate::export::job::JobExports::from_settings(&settings.export, &settings.gcp)
                .map_err(|reason| SettingsError { key: "export.job".into(), reason })?
                .map(Arc::new),
            local_mode: settings.queue.kind == crate::settings::QueueKind::Local,
            drills_after_run: false,
            run_reports: Arc::default(),
            copies,
        })
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
        let timer = self.daily_at.map(|at| tokio::spawn(crate::nightly::run(self.state.clone(), at, token.clone())));
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
