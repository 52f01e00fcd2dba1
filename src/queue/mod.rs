//! `TaskQueue`: how export tasks reach `POST /export`'s function.
//!
//! Contract: `enqueue` is idempotent per task id (`ExportTask::task_id`): enqueueing a task that is
//! already queued or running answers `AlreadyQueued`, not an error. Delivery is at least once; the
//! export itself is idempotent, so a duplicate delivery costs one manifest read.
//!
//! A queue that [`TaskQueue::follows_up`] also takes follow-up checks of a task
//! ([`TaskQueue::enqueue_follow_up`]): check `n` of a task is named after the task and `n`, so
//! asking for the same check twice (a duplicate delivery) answers `AlreadyQueued` and creates
//! nothing; it is delivered no sooner than its time. A queue that does not follow up (the embedded
//! one retries by itself) refuses them.

pub mod cloud_tasks;
pub mod local;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::ExportTask;

/// Answer of `enqueue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The task was added.
    Enqueued,
    /// The same task was already queued or running.
    AlreadyQueued,
}

/// Errors of `enqueue`.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue no longer takes work (the service is shutting down).
    #[error("the queue is shutting down and takes no new tasks")]
    Closed,
    /// The remote queue could not be reached or kept failing (429/5xx after the retries).
    #[error("the task could not be created: {0}")]
    Unavailable(String),
    /// The remote queue refused the task (permission, missing queue, invalid task).
    #[error("the queue refused the task: {0}")]
    Refused(String),
}

impl QueueError {
    /// True when retrying may help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Refused(_))
    }
}

/// Delivers export tasks.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Adds a task (idempotent per task id).
    async fn enqueue(&self, task: ExportTask) -> Result<Enqueued, QueueError>;
    /// Waits until nothing is queued or running (the CLI uses it; remote queues answer at once).
    async fn wait_idle(&self);
    /// How many `enqueue` calls a schedule run may have in flight at once (1: in order).
    fn max_in_flight(&self) -> usize {
        1
    }
    /// Whether an export that is not done yet is checked again by a follow-up task (else the
    /// delivery is retried, `503` + `Retry-After`).
    fn follows_up(&self) -> bool {
        false
    }
    /// Adds check number `check` of `task`, delivered no sooner than `at` (idempotent per task and
    /// check).
    async fn enqueue_follow_up(
        &self,
        _task: &ExportTask,
        _check: u32,
        _at: DateTime<Utc>,
    ) -> Result<Enqueued, QueueError> {
        Err(QueueError::Refused("this queue does not take follow-up checks".to_owned()))
    }

    /// Enqueues the off-site copy of `task`'s backup (`[[copies]]`, ADR 0023) as its own task, named
    /// after the task (`<task id>-copy`), so a duplicate delivery creates nothing. A queue that runs
    /// copies in the exporting process (the embedded one) refuses.
    async fn enqueue_copy(&self, _task: &ExportTask) -> Result<Enqueued, QueueError> {
        Err(QueueError::Refused("this queue does not take copy tasks".to_owned()))
    }
}
