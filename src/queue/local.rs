//! The embedded in-process queue: bounded workers call the export function directly.
//!
//! - At most `workers` exports run at once; a task already queued or running is not added twice.
//! - A transient failure (or a lease held by another export) is retried with exponential backoff and
//!   full jitter until `retry_max_duration` has passed; then, like a permanent failure at once, it is
//!   reported (once).
//! - `shutdown(grace)`: no new tasks are taken or retried; running exports get `grace` to finish and
//!   are then dropped, which kills their dump process and aborts their upload: their lease expires
//!   and nothing half-written becomes a backup.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Enqueued, QueueError, TaskQueue};
use crate::export::ExportOutcome;
use crate::export::run::log_failed_attempt;
use crate::export::service::ExportService;
use crate::model::ExportTask;
use crate::settings::QueueSettings;
use crate::util::backoff::Backoff;

struct Inner {
    service: Arc<ExportService>,
    settings: QueueSettings,
    /// Each task with the trace context of whoever enqueued it (its export span joins that trace).
    queued: Mutex<VecDeque<(ExportTask, opentelemetry::Context)>>,
    /// Ids of the tasks queued or running.
    held: Mutex<HashSet<String>>,
    wake: Notify,
    held_count: watch::Sender<usize>,
    closing: CancellationToken,
}

/// The embedded queue.
pub struct LocalQueue {
    inner: Arc<Inner>,
    workers: Mutex<Option<JoinSet<()>>>,
}

impl LocalQueue {
    /// Starts `settings.workers` workers exporting through `service`.
    #[must_use]
    pub fn start(service: Arc<ExportService>, settings: QueueSettings) -> Self {
        let inner = Arc::new(Inner {
            service,
            queued: Mutex::new(VecDeque::new()),
            held: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            held_count: watch::channel(0).0,
            closing: CancellationToken::new(),
            settings,
        });
        let mut set = JoinSet::new();
        for _ in 0..inner.settings.workers {
            set.spawn(worker(inner.clone()));
        }
        Self { inner, workers: Mutex::new(Some(set)) }
    }

    /// Stops taking work, lets running exports finish within `grace`, then abandons them.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closing.cancel();
        self.inner.wake.notify_waiters();
        let Some(mut set) = self.workers.lock().expect("lock").take() else { return };
        let drained = tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(running = set.len(), "grace period over: abandoning running exports (their leases expire)");
            set.shutdown().await;
        }
        let left = self.inner.queued.lock().expect("lock").len();
        if left > 0 {
            tracing::warn!(
                tasks = left,
                "queued tasks dropped at shutdown; the next /schedule run enqueues them again"
            );
        }
    }
}

fn release(inner: &Inner, task: &ExportTask) {
    let mut held = inner.held.lock().expect("lock");
    held.remove(&task.task_id());
    inner.held_count.send_replace(held.len());
    inner.service.metrics.set_queue_depth(held.len());
}

async fn worker(inner: Arc<Inner>) {
    loop {
        let next = inner.queued.lock().expect("lock").pop_front();
        let Some((task, parent)) = next else {
            tokio::select! {
                () = inner.wake.notified() => continue,
                () = inner.closing.cancelled() => return,
            }
        };
        if inner.closing.is_cancelled() {
            return;
        }
        let span = tracing::info_span!("deliver", db.path = %task.db, run.id = %task.run_id);
        crate::telemetry::join(&span, parent);
        run_with_retries(&inner, &task).instrument(span).await;
        release(&inner, &task);
        if inner.closing.is_cancelled() {
            return;
        }
    }
}

/// Backoff before retry number `attempt` (1-based): initial × 2^(attempt−1), capped, jitter over
/// its upper half so that retries of many tasks spread out.
fn backoff(settings: &QueueSettings, attempt: u32) -> Duration {
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    Backoff::new(secs(settings.retry_initial_secs), 30).capped_at(secs(settings.retry_max_delay_secs)).delay(attempt)
}

async fn run_with_retries(inner: &Inner, task: &ExportTask) {
    let started = Instant::now();
    let max = Duration::from_secs(inner.settings.retry_max_duration_secs);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let delay = match inner.service.export(task).await {
            Ok(ExportOutcome::Exported(m)) => {
                tracing::info!(db.path = %task.db, run.date = %task.run_date, key = %m.key, bytes = m.bytes, "exported");
                return;
            }
            Ok(ExportOutcome::AlreadyExported(_)) => return,
            Ok(ExportOutcome::LeaseHeld { retry_after }) => {
                tracing::info!(db.path = %task.db, "another export holds the lease; retrying later");
                retry_after
            }
            Err(e) => {
                log_failed_attempt(task, attempt, &e);
                // A running Cloud SQL operation or a busy instance says when to come back.
                let delay = e.retry_after().unwrap_or_else(|| backoff(&inner.settings, attempt));
                if !e.is_transient() || started.elapsed() + delay > max {
                    inner.service.report(task, attempt, &e).await;
                    return;
                }
                delay
            }
        };
        inner.service.metrics.queue_retry();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = inner.closing.cancelled() => {
                tracing::warn!(db.path = %task.db, "shutting down: retry abandoned; the next run tries again");
                return;
            }
        }
    }
}

#[async_trait]
impl TaskQueue for LocalQueue {
    async fn enqueue(&self, task: ExportTask) -> Result<Enqueued, QueueError> {
        if self.inner.closing.is_cancelled() {
            return Err(QueueError::Closed);
        }
        {
            let mut held = self.inner.held.lock().expect("lock");
            if !held.insert(task.task_id()) {
                return Ok(Enqueued::AlreadyQueued);
            }
            self.inner.held_count.send_replace(held.len());
            self.inner.service.metrics.set_queue_depth(held.len());
        }
        self.inner.queued.lock().expect("lock").push_back((task, crate::telemetry::current_context()));
        self.inner.wake.notify_one();
        Ok(Enqueued::Enqueued)
    }

    async fn wait_idle(&self) {
        let mut rx = self.inner.held_count.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let s = QueueSettings { retry_initial_secs: 1.0, retry_max_delay_secs: 10.0, ..QueueSettings::default() };
        for (attempt, hi) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (40, 10.0)] {
            let d = backoff(&s, attempt).as_secs_f64();
            assert!(d >= hi / 2.0 && d <= hi, "attempt {attempt}: {d}");
        }
    }
}
